//! Upstream choice: weighted backend pick, round-robin endpoint, `HttpPeer`.

use crate::router::{CompiledBackendKind, ForwardAction};
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use rand::Rng;
use sluice_ir::{Timeouts, UpstreamProtocol};
use std::net::SocketAddr;
use std::time::Duration;

/// Why a forward action cannot be served, as the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    /// No backend, or all weights 0: 500.
    NoBackend,
    /// The picked backend is unresolved: its status (500).
    Invalid(u16),
    /// The picked backend has no endpoint: 503.
    NoEndpoint,
}

impl PickError {
    /// Status code to answer.
    pub fn status(self) -> u16 {
        match self {
            PickError::NoBackend => 500,
            PickError::Invalid(s) => s,
            PickError::NoEndpoint => 503,
        }
    }
}

/// Picks a backend with probability `weight / total`.
pub fn pick_backend(fwd: &ForwardAction) -> Result<usize, PickError> {
    if fwd.total_weight == 0 {
        return Err(PickError::NoBackend);
    }
    let ticket = if fwd.backends.len() == 1 {
        0
    } else {
        rand::rng().random_range(0..fwd.total_weight)
    };
    let i = fwd.pick(ticket).ok_or(PickError::NoBackend)?;
    match &fwd.backends[i].kind {
        CompiledBackendKind::Invalid { status, .. } => Err(PickError::Invalid(*status)),
        CompiledBackendKind::Endpoints { endpoints, .. } if endpoints.is_empty() => {
            Err(PickError::NoEndpoint)
        }
        CompiledBackendKind::Endpoints { .. } => Ok(i),
    }
}

/// Builds the peer for `addr`: HTTP/1.1 (pooled keep-alive), h2c with prior
/// knowledge, or HTTPS (no certificate verification: the IR carries no CA yet).
/// Without a route connect timeout, `default_connect` applies.
pub fn peer(
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    sni: &str,
    t: &Timeouts,
    default_connect: Duration,
) -> HttpPeer {
    let tls = protocol == UpstreamProtocol::Https;
    let mut peer = HttpPeer::new(addr, tls, if tls { sni.to_string() } else { String::new() });
    let o = &mut peer.options;
    match protocol {
        UpstreamProtocol::Http1 => o.alpn = ALPN::H1,
        UpstreamProtocol::H2c => {
            o.alpn = ALPN::H2;
            o.max_h2_streams = 100;
        }
        UpstreamProtocol::Https => {
            o.alpn = ALPN::H1;
            o.verify_cert = false;
            o.verify_hostname = false;
        }
    }
    // One attempt may not stay silent longer than the backend (or what is left of the
    // whole request) timeout: the closest Pingora offers to an attempt deadline.
    let attempt = match (t.backend_request_ms, t.request_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .map(Duration::from_millis);
    o.connection_timeout = Some(match t.connect_ms {
        Some(ms) => Duration::from_millis(ms),
        None => attempt.map_or(default_connect, |a| a.min(default_connect)),
    });
    if let Some(d) = attempt {
        o.read_timeout = Some(d);
        o.write_timeout = Some(d);
    }
    peer
}
