//! Per-request state carried through the Pingora phases.

use crate::router::{
    CompiledAction, CompiledBackend, CompiledRoute, ForwardAction, RouteRef, Router,
};
use std::sync::Arc;
use std::time::Instant;

/// State of one request: the router snapshot it started with and what was selected.
#[derive(Debug)]
pub struct RequestCtx {
    /// Router snapshot, loaded once when the request starts.
    pub router: Arc<Router>,
    /// When the request started.
    pub start: Instant,
    /// Listener index in `router`.
    pub listener: Option<usize>,
    /// Selected route.
    pub route: Option<RouteRef>,
    /// Selected backend index in the route's forward action.
    pub backend: Option<usize>,
    /// The connection is TLS.
    pub tls: bool,
    /// Connect failures retried so far.
    pub connect_retries: usize,
    /// Upstream attempts so far (`upstream_peer` calls).
    pub attempts: u32,
    /// Backends (bit = index) an attempt failed on, avoided by retries.
    pub failed_backends: u64,
    /// Headers added to the answer (CORS).
    pub extra_response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl RequestCtx {
    /// A fresh context on `router`.
    pub fn new(router: Arc<Router>) -> Self {
        RequestCtx {
            router,
            start: Instant::now(),
            listener: None,
            route: None,
            backend: None,
            tls: false,
            connect_retries: 0,
            attempts: 0,
            failed_backends: 0,
            extra_response_headers: Vec::new(),
        }
    }

    /// The selected route.
    pub fn route(&self) -> Option<&CompiledRoute> {
        self.route.map(|r| self.router.route(r))
    }

    /// Retries the route's policy still allows.
    pub fn retries_left(&self) -> bool {
        self.route()
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|p| self.attempts <= p.attempts)
    }

    /// The selected route's forward action and backend.
    pub fn backend(&self) -> Option<(&ForwardAction, &CompiledBackend)> {
        let route = self.route()?;
        let CompiledAction::Forward(fwd) = &route.action else {
            return None;
        };
        Some((fwd, fwd.backends.get(self.backend?)?))
    }
}
