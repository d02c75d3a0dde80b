//! The compiled router: a [`sluice_ir::Config`] turned into lookup tables.
//!
//! No Pingora types here, so matching is tested and benchmarked without a proxy.
//!
//! ```text
//! Router ─ listeners (by socket address)
//!            └ servers: HostIndex, exclusive (exact → longest wildcard → default)
//!                └ virtual hosts: HostIndex, tried in order until a route matches
//!                    └ routes: CompiledMatch in IR order, first match wins
//! ```

mod compile;
mod host;
mod select;

pub use compile::{compile, CompileError};
pub use host::{normalize_host, HostIndex};
pub(crate) use select::prefix_matches;
pub use select::{RequestView, RouteRef};

use crate::metrics::RouteStats;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use regex::Regex;
use sluice_ir as ir;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A compiled [`ir::Config`]. Immutable once built; swapped as a whole.
#[derive(Debug, Default)]
pub struct Router {
    /// Generation of the config this router was compiled from.
    pub generation: u64,
    pub(crate) listeners: Vec<ListenerTable>,
    pub(crate) by_addr: HashMap<SocketAddr, usize>,
}

/// The servers of one listener.
#[derive(Debug)]
pub struct ListenerTable {
    /// [`ir::Listener::name`].
    pub name: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// Protocol spoken on the socket.
    pub protocol: ir::Protocol,
    pub(crate) server_index: HostIndex,
    pub(crate) servers: Vec<ServerTable>,
}

/// The virtual hosts of one server.
#[derive(Debug)]
pub struct ServerTable {
    /// [`ir::Server::name`].
    pub name: String,
    pub(crate) vhost_index: HostIndex,
    pub(crate) vhosts: Vec<VhostTable>,
}

/// The routes of one virtual host.
#[derive(Debug)]
pub struct VhostTable {
    pub(crate) routes: Vec<CompiledRoute>,
}

/// A route ready to match and serve.
#[derive(Debug)]
pub struct CompiledRoute {
    /// [`ir::Route::name`], the metrics label.
    pub name: Arc<str>,
    pub(crate) matcher: CompiledMatch,
    /// Route filters, in order.
    pub filters: Vec<CompiledFilter>,
    /// What to do with a matching request.
    pub action: CompiledAction,
    /// Timeouts of the route.
    pub timeouts: ir::Timeouts,
    /// Retry policy (`None`: only connect failures move to the next endpoint).
    pub retry: Option<ir::Retry>,
    /// Counters of this route.
    pub stats: Arc<RouteStats>,
}

#[derive(Debug)]
pub(crate) struct CompiledMatch {
    pub(crate) path: PathMatcher,
    pub(crate) headers: Box<[(HeaderName, ValueMatcher)]>,
    pub(crate) query: Box<[(Box<str>, ValueMatcher)]>,
    pub(crate) method: Option<Method>,
}

#[derive(Debug)]
pub(crate) enum PathMatcher {
    Exact(Box<str>),
    /// Prefix without trailing slash; empty for `/`.
    Prefix(Box<str>),
    Regex(Regex),
    /// The match could not be compiled: never matches (fail closed).
    Never,
}

#[derive(Debug)]
pub(crate) enum ValueMatcher {
    Exact(Box<str>),
    Regex(Regex),
}

impl ValueMatcher {
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatcher::Exact(v) => &**v == value,
            ValueMatcher::Regex(re) => re.is_match(value),
        }
    }
}

/// A filter with its header names and values already parsed.
#[derive(Debug)]
pub enum CompiledFilter {
    /// Change request headers before proxying.
    RequestHeaders(HeaderMods),
    /// Change response headers before answering.
    ResponseHeaders(HeaderMods),
    /// Rewrite host and/or path.
    UrlRewrite {
        /// New `Host`.
        hostname: Option<HeaderValue>,
        /// Path change.
        path: Option<ir::PathRewrite>,
    },
    /// Send a copy of the request to another backend; its answer is discarded.
    Mirror(Arc<MirrorTarget>),
    /// CORS: preflights answered by the proxy, headers added to answers.
    Cors(Arc<crate::filters::cors::CorsPolicy>),
    /// Answer this status instead of serving the route (fail closed).
    InternalError(u16),
}

/// Where a mirror sends copies, and how often.
#[derive(Debug)]
pub struct MirrorTarget {
    /// The mirror backend (its weight is ignored).
    pub backend: CompiledBackend,
    /// Share of requests mirrored: `numerator / denominator`.
    pub numerator: u32,
    /// Denominator of the share (> 0).
    pub denominator: u32,
}

/// Parsed [`ir::HeaderModifier`].
#[derive(Debug, Default)]
pub struct HeaderMods {
    /// Replace.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Delete.
    pub remove: Vec<HeaderName>,
}

/// What a route does.
#[derive(Debug)]
pub enum CompiledAction {
    /// Proxy to a weighted backend.
    Forward(ForwardAction),
    /// Answer a redirect.
    Redirect(ir::Redirect),
    /// Answer directly.
    Respond {
        /// Status code.
        status: StatusCode,
        /// Body (text/plain), possibly empty.
        body: Bytes,
    },
}

/// Weighted backends of a route.
#[derive(Debug)]
pub struct ForwardAction {
    /// Backends in IR order.
    pub backends: Vec<CompiledBackend>,
    /// Sum of the weights (0: answer 500).
    pub total_weight: u64,
}

impl ForwardAction {
    /// Picks a backend by weight given a number in `0..total_weight`.
    pub fn pick(&self, ticket: u64) -> Option<usize> {
        let mut acc = 0u64;
        for (i, b) in self.backends.iter().enumerate() {
            acc += u64::from(b.weight);
            if ticket < acc {
                return Some(i);
            }
        }
        None
    }
}

/// A backend of a route.
#[derive(Debug)]
pub struct CompiledBackend {
    /// [`ir::Backend::name`].
    pub name: Arc<str>,
    /// Relative weight.
    pub weight: u32,
    /// Backend filters (after the route's).
    pub filters: Vec<CompiledFilter>,
    /// Where the traffic goes.
    pub kind: CompiledBackendKind,
}

/// Where a backend's traffic goes.
#[derive(Debug)]
pub enum CompiledBackendKind {
    /// Endpoints, round robin.
    Endpoints {
        /// Protocol towards the endpoints.
        protocol: ir::UpstreamProtocol,
        /// Endpoint addresses.
        endpoints: Box<[SocketAddr]>,
        /// Round-robin cursor.
        next: AtomicUsize,
        /// TLS settings towards the endpoints (HTTPS backends).
        tls: Option<Arc<crate::upstream::UpstreamTlsConf>>,
    },
    /// Unresolved reference: answer `status`.
    Invalid {
        /// Status to answer.
        status: u16,
        /// Why, for logs.
        reason: String,
    },
}

impl CompiledBackendKind {
    /// The next endpoint, round robin; `None` when there is none.
    pub fn next_endpoint(&self) -> Option<SocketAddr> {
        match self {
            CompiledBackendKind::Endpoints {
                endpoints, next, ..
            } => {
                if endpoints.is_empty() {
                    return None;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
                Some(endpoints[i])
            }
            CompiledBackendKind::Invalid { .. } => None,
        }
    }
}

// === impl Router ===

impl Router {
    /// The listener bound to `local` (the connection's local address): exact address,
    /// else the unspecified address of the same family and port.
    pub fn listener_for(&self, local: SocketAddr) -> Option<usize> {
        if let Some(i) = self.by_addr.get(&local) {
            return Some(*i);
        }
        let unspecified = match local.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(v6) => {
                // A v4 client on a dual-stack socket appears as ::ffff:a.b.c.d.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    let as_v4 = SocketAddr::new(IpAddr::V4(v4), local.port());
                    if let Some(i) = self.by_addr.get(&as_v4) {
                        return Some(*i);
                    }
                }
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            }
        };
        self.by_addr
            .get(&SocketAddr::new(unspecified, local.port()))
            .copied()
    }

    /// The server of listener `listener` that `host` selects (exact, longest wildcard,
    /// server without hostname).
    pub fn server_for(&self, listener: usize, host: &str) -> Option<usize> {
        self.listeners.get(listener)?.server_index.first(host)
    }

    /// The listener by index.
    pub fn listener(&self, i: usize) -> Option<&ListenerTable> {
        self.listeners.get(i)
    }

    /// The listener by name.
    pub fn listener_by_name(&self, name: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.name == name)
    }

    /// Number of listeners.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// The route a [`RouteRef`] points to.
    pub fn route(&self, r: RouteRef) -> &CompiledRoute {
        &self.listeners[r.listener as usize].servers[r.server as usize].vhosts[r.vhost as usize]
            .routes[r.route as usize]
    }
}
