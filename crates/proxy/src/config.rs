//! The config watcher: IR snapshots in, compiled router and listeners out.

use crate::listeners::ListenerSet;
use crate::metrics::Metrics;
use crate::router::{compile, Router};
use crate::service::Gateway;
use crate::tls::TlsState;
use crate::{Error, ProxyHandle, ProxyOptions};
use arc_swap::ArcSwap;
use pingora_core::apps::{HttpServerOptions, ServerApp};
use pingora_core::server::configuration::ServerConf;
use sluice_ir::{Applied, Config};
use std::sync::Arc;
use tokio::sync::watch;

/// How often binds that failed are tried again.
const BIND_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) fn start(
    config: watch::Receiver<Arc<Config>>,
    opts: ProxyOptions,
) -> Result<ProxyHandle, Error> {
    let metrics = Arc::new(Metrics::default());
    let (applied_tx, applied_rx) = watch::channel(Applied::default());
    let threads = opts.threads.max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("sluice-proxy")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let m = metrics.clone();
    std::thread::Builder::new()
        .name("sluice-proxy-main".into())
        .spawn(move || {
            rt.block_on(async move {
                let router = Arc::new(ArcSwap::from_pointee(Router::default()));
                let conf = Arc::new(ServerConf {
                    threads,
                    upstream_keepalive_pool_size: opts.upstream_keepalive_pool_size,
                    ..ServerConf::default()
                });
                let mut proxy = pingora_proxy::http_proxy(
                    &conf,
                    Gateway::new(router.clone(), m.clone(), opts.connect_timeout),
                );
                let mut server_options = HttpServerOptions::default();
                server_options.h2c = opts.h2c;
                proxy.server_options = Some(server_options);
                let tls = Arc::new(TlsState::default());
                let listeners = ListenerSet::new(Arc::new(proxy), tls.clone(), opts.freebind);
                let watcher = Watcher {
                    router,
                    tls,
                    metrics: m,
                    listeners,
                    applied: applied_tx,
                };
                watcher.run(config).await;
                tracing::info!("config channel closed; serving the last config");
                std::future::pending::<()>().await;
            })
        })
        .map_err(Error::Runtime)?;
    Ok(ProxyHandle {
        applied: applied_rx,
        metrics,
    })
}

struct Watcher<A> {
    router: Arc<ArcSwap<Router>>,
    tls: Arc<TlsState>,
    metrics: Arc<Metrics>,
    listeners: ListenerSet<A>,
    applied: watch::Sender<Applied>,
}

impl<A: ServerApp + Send + Sync + 'static> Watcher<A> {
    /// Applies every config; while some listener of the current one could not be
    /// bound, tries again every [`BIND_RETRY`] (the port may be released later) and
    /// reports the new state.
    async fn run(mut self, mut config: watch::Receiver<Arc<Config>>) {
        let mut current = config.borrow_and_update().clone();
        self.apply(current.clone()).await;
        loop {
            let failing = !self.applied.borrow().listener_errors.is_empty();
            tokio::select! {
                changed = config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    current = config.borrow_and_update().clone();
                    self.apply(current.clone()).await;
                }
                _ = tokio::time::sleep(BIND_RETRY), if failing => {
                    let listener_errors = self.listeners.reconcile(&current.listeners).await;
                    if listener_errors != self.applied.borrow().listener_errors {
                        tracing::info!(
                            generation = current.generation,
                            bind_errors = listener_errors.len(),
                            "listener binds retried"
                        );
                        self.applied.send_replace(Applied {
                            generation: current.generation,
                            listener_errors,
                        });
                    }
                }
            }
        }
    }

    /// Compile (on a blocking thread), swap, reconcile listeners, report.
    async fn apply(&mut self, config: Arc<Config>) {
        let generation = config.generation;
        let (metrics, tls, c) = (self.metrics.clone(), self.tls.clone(), config.clone());
        let compiled = tokio::task::spawn_blocking(move || {
            let (router, errors) = compile(&c, &metrics);
            let tls_errors = tls.update(&c);
            (router, errors, tls_errors)
        })
        .await;
        let (router, errors, tls_errors) = match compiled {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(generation, error = %e, "config compilation panicked; keeping the previous one");
                return;
            }
        };
        self.router.store(Arc::new(router));
        let listener_errors = self.listeners.reconcile(&config.listeners).await;
        tracing::info!(
            generation,
            listeners = config.listeners.len(),
            compile_errors = errors.len(),
            tls_errors = tls_errors.len(),
            bind_errors = listener_errors.len(),
            "config applied"
        );
        self.applied.send_replace(Applied {
            generation,
            listener_errors,
        });
    }
}
