//! `kubesim --addr 127.0.0.1:PORT --kubeconfig PATH`: a Kubernetes API simulator for
//! manual runs. Objects live in memory until the process ends (Ctrl-C).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sluice_kubesim::{Sim, SimOptions};

#[derive(Parser, Debug)]
#[command(name = "kubesim", about = "In-memory Kubernetes API server simulator")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: SocketAddr,
    /// Where to write a kubeconfig for kubectl and kube-rs clients.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Start without the Gateway API CRDs.
    #[arg(long)]
    no_gateway_api: bool,
    /// Interval of watch BOOKMARK events, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    bookmark_interval_ms: u64,
    /// Changes kept for watches resuming from a resourceVersion.
    #[arg(long, default_value_t = 10_000)]
    max_history: usize,
    /// YAML files of objects to load at start (multi-document files are fine).
    #[arg(long = "load")]
    load: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let opts = SimOptions {
        addr: args.addr,
        gateway_api: !args.no_gateway_api,
        max_history: args.max_history,
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms),
        kubeconfig: args.kubeconfig,
        ..SimOptions::default()
    };
    let sim = Sim::start(opts)?;
    for file in &args.load {
        let yaml = std::fs::read_to_string(file)?;
        let objs = sim.put_yaml(&yaml)?;
        tracing::info!("loaded {} objects from {}", objs.len(), file.display());
    }
    println!("kubesim listening on {}", sim.url());
    println!("kubeconfig: {}", sim.kubeconfig_path().display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}
