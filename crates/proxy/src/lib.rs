//! # sluice-proxy: the data plane
//!
//! Compiles each [`sluice_ir::Config`] into a [`router::Router`], swaps it in with
//! `ArcSwap`, keeps the bound listeners equal to the IR's, and serves HTTP with
//! Pingora's proxy engine.
//!
//! | Pingora phase             | What Sluice does there                                              |
//! |---------------------------|---------------------------------------------------------------------|
//! | `new_ctx`                 | loads the current router once (in-flight requests keep their snapshot) |
//! | `request_filter`          | route selection; 404; 421 (TLS SNI/Host mismatch); redirects and direct answers; CORS preflights; fail-closed filters; weighted backend pick (500 / 503) |
//! | `upstream_peer`           | round robin across the backend's endpoints; HTTP/1.1 keep-alive pool, h2c, HTTPS (verification, client certificate); timeouts; retries re-pick the backend after the backoff |
//! | `fail_to_connect`, `error_while_proxy`, `upstream_response_filter` | retries: next endpoint on connect failure, route retry policy (codes, connection errors) |
//! | `upstream_request_filter` | X-Forwarded-For/-Proto/-Host; request header filters; URL rewrite; mirrors |
//! | `response_filter`         | response header filters; CORS headers                               |
//! | `fail_to_proxy`           | upstream read timeouts → 504, unreachable upstream → 503, other upstream failures → 502 |
//! | `logging`                 | requests by route and status, latency histogram, debug line         |
//!
//! Listeners are owned here, not by Pingora's `Server` (which binds only at startup):
//! see the `listeners` module for the accept loops that feed Pingora's HTTP app.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod bufstream;
mod config;
mod ctx;
pub mod filters;
mod listeners;
pub mod metrics;
mod mirror;
pub mod passthrough;
pub mod router;
mod service;
mod tls;
pub mod upstream;

pub use metrics::Metrics;
pub use service::Gateway;

use std::sync::Arc;
use tokio::sync::watch;

/// Errors of [`start`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The proxy runtime could not be created.
    #[error("cannot start the proxy runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Worker threads of the proxy's own runtime (default: available cores).
    pub threads: usize,
    /// Idle upstream connections kept per process (Pingora's pool size; default 128).
    pub upstream_keepalive_pool_size: usize,
    /// Accept HTTP/2 with prior knowledge on cleartext listeners (default: true).
    pub h2c: bool,
    /// Upstream connect timeout for routes that set none (default: 10 s, as Envoy).
    pub connect_timeout: std::time::Duration,
    /// Set `IP_FREEBIND` on listeners, so an address that is not (yet) on an interface
    /// still binds (default: false: such a bind fails and is reported in
    /// [`sluice_ir::Applied::listener_errors`]).
    pub freebind: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            upstream_keepalive_pool_size: 128,
            h2c: true,
            connect_timeout: std::time::Duration::from_secs(10),
            freebind: false,
        }
    }
}

/// What [`start`] returns.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    /// The last applied generation and its listener bind errors.
    pub applied: watch::Receiver<sluice_ir::Applied>,
    /// Proxy metrics.
    pub metrics: Arc<Metrics>,
}

/// Starts the proxy on its own runtime (`opts.threads` workers) and serves every
/// config published on `config`, starting with the current one. Each config is
/// compiled off the hot path, swapped in, the listeners are reconciled, then
/// `applied` is updated. When the sender is dropped the proxy keeps serving the last
/// config.
pub fn start(
    config: watch::Receiver<Arc<sluice_ir::Config>>,
    opts: ProxyOptions,
) -> Result<ProxyHandle, Error> {
    config::start(config, opts)
}
