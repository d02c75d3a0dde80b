//! Logging setup: `tracing` with structured fields, text or JSON.

use crate::cli::LogFormat;
use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, default_filter: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("SLUICE_LOG") {
        Ok(f) if !f.is_empty() => {
            EnvFilter::try_new(&f).with_context(|| format!("SLUICE_LOG={f}"))?
        }
        // kube-client logs an ERROR for every failed connection attempt; Sluice's
        // watchers already report outages (rate limited), so that one is muted.
        _ => EnvFilter::try_new(format!("{default_filter},kube_client::client::builder=off"))
            .with_context(|| format!("--log-level {default_filter}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
