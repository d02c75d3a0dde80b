//! The `sluice` binary: CLI, wiring of controller and proxy, admin server.
//!
//! ```text
//! manifests folder ──► sluice-controller (store, translate, statuses)
//!                          │ watch<Arc<ir::Config>>          ▲ watch<ir::Applied>
//!                          ▼                                 │
//!                      sluice-proxy (router via ArcSwap, listeners, Pingora)
//! admin server: /status /readyz /healthz /config /metrics
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod admin;
mod cli;
mod logging;

use anyhow::Context as _;
use clap::Parser as _;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => {
            logging::init(args.log_format, &args.log_level)?;
            // The proxy runs on its own runtime (`--threads` workers); this one carries
            // the controller, the file watcher and the admin server.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .thread_name("sluice")
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(run(args))
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

async fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let Some(dir) = args.manifests.clone() else {
        anyhow::bail!(
            "cluster mode (without --manifests) is not available in this build yet; \
             run with --manifests DIR"
        );
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("manifests folder {}", dir.display()))?;

    // The controller needs the proxy's feedback and the proxy needs the controller's
    // config: relay the proxy's `Applied` into a channel the controller owns.
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(sluice_ir::Applied::default());
    let folder = sluice_controller::source::folder::run_folder(dir.clone(), settings, applied_rx)
        .await
        .with_context(|| format!("loading manifests from {}", dir.display()))?;
    let first_generation = folder.config.borrow().generation;

    let proxy = sluice_proxy::start(
        folder.config.clone(),
        sluice_proxy::ProxyOptions {
            threads: args.threads.unwrap_or_else(default_threads),
            ..Default::default()
        },
    )
    .context("starting the proxy")?;

    let mut proxy_applied = proxy.applied.clone();
    tokio::spawn(async move {
        loop {
            let applied = proxy_applied.borrow_and_update().clone();
            if applied_tx.send(applied).is_err() {
                return;
            }
            if proxy_applied.changed().await.is_err() {
                return;
            }
        }
    });

    let state = Arc::new(admin::AdminState {
        config: folder.config.clone(),
        status: folder.status.clone(),
        applied: proxy.applied.clone(),
        reloads: folder.reloads.clone(),
        metrics: proxy.metrics.clone(),
        first_generation,
    });
    let admin_addr = args.admin_addr;
    let admin = admin::serve(admin_addr, state)
        .await
        .with_context(|| format!("binding the admin server on {admin_addr}"))?;
    tracing::info!(
        manifests = %dir.display(),
        admin = %admin,
        generation = first_generation,
        "sluice started"
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
