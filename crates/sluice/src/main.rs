//! The `sluice` binary: CLI, wiring of controller and proxy, admin server.
//!
//! ```text
//! manifests folder | Kubernetes API ──► sluice-controller (store, translate, statuses)
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

/// What a source gives the rest of the binary.
struct Source {
    config: tokio::sync::watch::Receiver<Arc<sluice_ir::Config>>,
    status: tokio::sync::watch::Receiver<Arc<sluice_controller::StatusReport>>,
    reloads: Arc<std::sync::atomic::AtomicU64>,
    first_generation: u64,
    description: String,
    cluster: Option<admin::ClusterState>,
}

async fn run(args: cli::RunArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    // The controller needs the proxy's feedback and the proxy needs the controller's
    // config: relay the proxy's `Applied` into a channel the controller owns.
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(sluice_ir::Applied::default());
    let source = match args.manifests.clone() {
        Some(dir) => {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("manifests folder {}", dir.display()))?;
            let folder =
                sluice_controller::source::folder::run_folder(dir.clone(), settings, applied_rx)
                    .await
                    .with_context(|| format!("loading manifests from {}", dir.display()))?;
            let first_generation = folder.config.borrow().generation;
            Source {
                config: folder.config,
                status: folder.status,
                reloads: folder.reloads,
                first_generation,
                description: format!("manifests {}", dir.display()),
                cluster: None,
            }
        }
        None => cluster(&args, settings, applied_rx).await?,
    };

    let proxy = sluice_proxy::start(
        source.config.clone(),
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
        config: source.config.clone(),
        status: source.status.clone(),
        applied: proxy.applied.clone(),
        reloads: source.reloads.clone(),
        metrics: proxy.metrics.clone(),
        first_generation: source.first_generation,
        cluster: source.cluster,
    });
    let admin_addr = args.admin_addr;
    let admin = admin::serve(admin_addr, state)
        .await
        .with_context(|| format!("binding the admin server on {admin_addr}"))?;
    tracing::info!(
        source = %source.description,
        admin = %admin,
        generation = source.first_generation,
        "sluice started"
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// Cluster mode: watchers, leader election, status writes to the API server.
async fn cluster(
    args: &cli::RunArgs,
    settings: sluice_controller::Settings,
    applied_rx: tokio::sync::watch::Receiver<sluice_ir::Applied>,
) -> anyhow::Result<Source> {
    use sluice_controller::status::sink::{ApiServerSink, ApiServerSinkConfig, EventSink};
    let identity = sluice_controller::leader::default_identity();
    let user_agent = format!("sluice/{} ({identity})", env!("CARGO_PKG_VERSION"));
    let client = sluice_controller::source::kube::client(&user_agent)
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let controller_name = settings.controller_name.clone();
    let kube = sluice_controller::source::kube::run_kube(
        client.clone(),
        settings,
        sluice_controller::source::kube::KubeOptions {
            watch_namespaces: args.watch_namespaces.clone(),
            gateway_bind_address: args.gateway_bind_address,
        },
        applied_rx,
    )
    .await
    .context("starting the Kubernetes watchers")?;
    let lease_ns = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "sluice-system".to_string());
    let leader = sluice_controller::leader::spawn(
        client.clone(),
        sluice_controller::leader::LeaseConfig::new(&lease_ns, &identity),
    );
    let sink = ApiServerSink::spawn(
        client.clone(),
        ApiServerSinkConfig::new(&controller_name),
        leader.clone(),
    );
    sink.follow(kube.status.clone());
    let cluster_state = admin::ClusterState {
        status_writes: sink.metrics.clone(),
        leader: leader.clone(),
    };
    let events = EventSink::spawn(client, "sluice", &identity, leader);
    let mut notices = kube.notices.clone();
    tokio::spawn(async move {
        loop {
            events.publish(notices.borrow_and_update().clone());
            if notices.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(Source {
        config: kube.config,
        status: kube.status,
        reloads: kube.reloads,
        // Nothing is published before the first full sync, whose config is generation 1.
        first_generation: 1,
        description: format!("cluster (identity {identity}, lease {lease_ns}/sluice-leader)"),
        cluster: Some(cluster_state),
    })
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
