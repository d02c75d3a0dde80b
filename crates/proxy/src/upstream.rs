//! Upstream choice: weighted backend pick, round-robin endpoint, `HttpPeer`.

use crate::router::{CompiledBackendKind, ForwardAction};
use pingora_core::protocols::tls::CaType;
use pingora_core::protocols::ALPN;
use pingora_core::tls::pkey::PKey;
use pingora_core::tls::x509::X509;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::CertKey;
use rand::Rng;
use sluice_ir as ir;
use sluice_ir::{Timeouts, UpstreamProtocol};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
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
    pick_backend_excluding(fwd, 0)
}

/// Like [`pick_backend`], leaving out the backends whose bit is set in `exclude`
/// (those a retry already failed on) unless that leaves nothing with weight.
pub fn pick_backend_excluding(fwd: &ForwardAction, exclude: u64) -> Result<usize, PickError> {
    if fwd.total_weight == 0 {
        return Err(PickError::NoBackend);
    }
    let excluded = |i: usize| i < 64 && exclude & (1 << i) != 0;
    let remaining: u64 = fwd
        .backends
        .iter()
        .enumerate()
        .filter(|(i, _)| !excluded(*i))
        .map(|(_, b)| u64::from(b.weight))
        .sum();
    let i = if remaining == 0 || remaining == fwd.total_weight {
        let ticket = if fwd.backends.len() == 1 {
            0
        } else {
            rand::rng().random_range(0..fwd.total_weight)
        };
        fwd.pick(ticket).ok_or(PickError::NoBackend)?
    } else {
        let mut ticket = rand::rng().random_range(0..remaining);
        let mut chosen = None;
        for (i, b) in fwd.backends.iter().enumerate() {
            if excluded(i) {
                continue;
            }
            let w = u64::from(b.weight);
            if ticket < w {
                chosen = Some(i);
                break;
            }
            ticket -= w;
        }
        chosen.ok_or(PickError::NoBackend)?
    };
    match &fwd.backends[i].kind {
        CompiledBackendKind::Invalid { status, .. } => Err(PickError::Invalid(*status)),
        CompiledBackendKind::Endpoints { endpoints, .. } if endpoints.is_empty() => {
            Err(PickError::NoEndpoint)
        }
        CompiledBackendKind::Endpoints { .. } => Ok(i),
    }
}

/// Upstream TLS settings, parsed once per config.
#[derive(Debug)]
pub struct UpstreamTlsConf {
    sni: String,
    verify: bool,
    ca: Option<Arc<CaType>>,
    alternative_name: Option<String>,
    client: Option<Arc<CertKey>>,
    /// Pingora's connection pool key leaves the trusted CAs out: connections are
    /// grouped by this hash of the whole TLS setting, so a connection verified against
    /// one CA is never reused for a backend that trusts another.
    group_key: u64,
}

impl UpstreamTlsConf {
    /// Parses `t`; client certificates are looked up in `certificates`.
    pub fn compile(
        t: &ir::UpstreamTls,
        certificates: &BTreeMap<String, ir::Certificate>,
    ) -> Result<Self, String> {
        let ca = match &t.ca_pem {
            None => None,
            Some(pem) => {
                let cas =
                    X509::stack_from_pem(pem.as_bytes()).map_err(|e| format!("bad CA PEM: {e}"))?;
                if cas.is_empty() {
                    return Err("no certificate in the CA bundle".into());
                }
                Some(Arc::new(cas.into_boxed_slice()))
            }
        };
        let client = match &t.client_certificate {
            None => None,
            Some(name) => {
                let c = certificates
                    .get(name)
                    .ok_or_else(|| format!("unknown client certificate {name}"))?;
                let chain = X509::stack_from_pem(c.cert_pem.as_bytes())
                    .map_err(|e| format!("client certificate {name}: {e}"))?;
                let key = PKey::private_key_from_pem(c.key_pem.as_bytes())
                    .map_err(|e| format!("client key {name}: {e}"))?;
                if chain.is_empty() {
                    return Err(format!("client certificate {name}: no certificate"));
                }
                Some(Arc::new(CertKey::new(chain, key)))
            }
        };
        // Pingora checks the SNI plus one alternative name: with explicit subject
        // names the first one is that alternative.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &t.server_name,
            t.verify,
            &t.ca_pem,
            &t.subject_alt_names,
            &t.client_certificate,
        )
            .hash(&mut h);
        if let Some(c) = t
            .client_certificate
            .as_ref()
            .and_then(|n| certificates.get(n))
        {
            c.cert_pem.hash(&mut h);
        }
        Ok(UpstreamTlsConf {
            group_key: h.finish(),
            sni: t.server_name.clone(),
            verify: t.verify,
            ca,
            alternative_name: t.subject_alt_names.first().cloned(),
            client,
        })
    }
}

/// Builds the peer for `addr`: HTTP/1.1 (pooled keep-alive), h2c with prior
/// knowledge, or HTTPS (with `tls` settings when the IR gives them; else SNI `sni`
/// and no certificate verification). Without a route connect timeout,
/// `default_connect` applies.
pub fn peer(
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    tls: Option<&UpstreamTlsConf>,
    sni: &str,
    t: &Timeouts,
    default_connect: Duration,
) -> HttpPeer {
    let https = protocol == UpstreamProtocol::Https;
    let sni = match (https, tls) {
        (false, _) => String::new(),
        (true, Some(conf)) => conf.sni.clone(),
        (true, None) => sni.to_string(),
    };
    let mut peer = HttpPeer::new(addr, https, sni);
    match protocol {
        UpstreamProtocol::Http1 => peer.options.alpn = ALPN::H1,
        UpstreamProtocol::H2c => {
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = 100;
        }
        UpstreamProtocol::Https => {
            peer.options.alpn = ALPN::H1;
            match tls {
                None => {
                    peer.options.verify_cert = false;
                    peer.options.verify_hostname = false;
                }
                Some(conf) => {
                    peer.options.verify_cert = conf.verify;
                    peer.options.verify_hostname = conf.verify;
                    peer.options.alternative_cn = conf.alternative_name.clone();
                    peer.options.ca = conf.ca.clone();
                    peer.client_cert_key = conf.client.clone();
                    peer.group_key = conf.group_key;
                }
            }
        }
    }
    let o = &mut peer.options;
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
