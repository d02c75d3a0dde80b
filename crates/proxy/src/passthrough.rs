//! TLS passthrough: SNI-routed TCP splicing on [`ir::Protocol::TlsPassthrough`]
//! listeners.
//!
//! Per connection: read the TLS ClientHello without terminating TLS (at most
//! [`MAX_HELLO`] bytes, within [`HELLO_TIMEOUT`]), take its SNI, select the server
//! (exact name, then the longest wildcard, then the server without hostname; no
//! fall-through to another server), then the most specific passthrough route of that
//! server, pick a backend by weight and one of its endpoints, connect, replay the bytes
//! already read and splice both directions until either side closes.
//!
//! Fail closed: no SNI, an SNI nothing matches, a malformed ClientHello, an `Invalid`
//! backend, a backend without endpoints or a failed connect close the connection.
//!
//! The routing tables live in an `ArcSwap` keyed by listener address, rebuilt from
//! every IR snapshot ([`PassthroughState::update`]): route changes apply to new
//! connections without rebinding; spliced connections keep going.
use arc_swap::ArcSwap;
use rand::Rng;
use sluice_ir as ir;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest ClientHello accepted, records included. Real ones are well under 2 KiB;
/// post-quantum key shares and many extensions stay under 8 KiB.
pub const MAX_HELLO: usize = 16 * 1024 + 5;
/// How long a client may take to send its ClientHello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connect timeout towards a backend endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// === ClientHello parsing ===

/// Progress of [`parse_client_hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// The whole ClientHello was read.
    Complete {
        /// The `host_name` of its `server_name` extension (lower case, without a
        /// trailing dot), if it has one.
        sni: Option<String>,
    },
}

/// Why bytes are not a usable ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The first record is not a TLS handshake record.
    #[error("not a TLS handshake")]
    NotTls,
    /// A TLS handshake, but not a well-formed ClientHello.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

/// Parses the start of a TLS connection: the ClientHello, possibly split over several
/// handshake records. Returns [`Hello::Incomplete`] until `buf` holds all of it.
pub fn parse_client_hello(buf: &[u8]) -> Result<Hello, HelloError> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + 5) else {
            if pos == 0 && buf.first().is_some_and(|b| *b != 22) {
                return Err(HelloError::NotTls);
            }
            return Ok(Hello::Incomplete);
        };
        if header[0] != 22 || header[1] != 3 {
            return Err(if pos == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed("record is not a TLS handshake record")
            });
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 {
            return Err(HelloError::Malformed("bad record length"));
        }
        let Some(payload) = buf.get(pos + 5..pos + 5 + len) else {
            return Ok(Hello::Incomplete);
        };
        handshake.extend_from_slice(payload);
        pos += 5 + len;
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Err(HelloError::Malformed(
                    "first handshake message is not a ClientHello",
                ));
            }
            let mlen = (usize::from(handshake[1]) << 16)
                | (usize::from(handshake[2]) << 8)
                | usize::from(handshake[3]);
            if let Some(body) = handshake.get(4..4 + mlen) {
                return client_hello_sni(body).map(|sni| Hello::Complete { sni });
            }
        }
    }
}

/// A bounds-checked reader over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed("truncated ClientHello"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// A vector with a 1-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(n)
    }
    /// A vector with a 2-byte length prefix.
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// The SNI of a ClientHello body (RFC 8446 4.1.2, RFC 6066 section 3).
fn client_hello_sni(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        if ty != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                return host_name(name).map(Some);
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// Validates a `host_name`: ASCII letters, digits, `-`, `_` and `.`, 1 to 253 bytes.
fn host_name(raw: &[u8]) -> Result<String, HelloError> {
    let name = raw.strip_suffix(b".").unwrap_or(raw);
    if name.is_empty()
        || name.len() > 253
        || !name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(HelloError::Malformed("bad SNI host name"));
    }
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

// === Routing tables ===

/// The compiled passthrough listeners, by bound address.
#[derive(Default)]
pub(crate) struct PassthroughState {
    tables: ArcSwap<HashMap<SocketAddr, Arc<Table>>>,
}

/// One listener's servers, in IR order.
#[derive(Debug, Default)]
struct Table {
    servers: Vec<ServerEntry>,
}

#[derive(Debug)]
struct ServerEntry {
    hostname: Option<ir::HostMatch>,
    routes: Vec<RouteEntry>,
}

#[derive(Debug)]
struct RouteEntry {
    name: String,
    hostname: Option<ir::HostMatch>,
    backends: Vec<ir::Backend>,
    total_weight: u64,
}

/// Why a connection is not spliced.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// No server of the listener matches the SNI.
    NoServer,
    /// The selected server has no route for the SNI.
    NoRoute,
    /// No backend, or all weights 0.
    NoBackend,
    /// The picked backend is unresolved (why).
    Invalid(String),
    /// The picked backend has no endpoint (its name).
    NoEndpoint(String),
}

impl PassthroughState {
    /// Rebuilds the tables of the `TLS_PASSTHROUGH` listeners of `listeners`.
    pub(crate) fn update(&self, listeners: &[ir::Listener]) {
        let tables = listeners
            .iter()
            .filter(|l| l.protocol == ir::Protocol::TlsPassthrough)
            .map(|l| (SocketAddr::new(l.address, l.port), Arc::new(compile(l))))
            .collect();
        self.tables.store(Arc::new(tables));
    }

    fn table(&self, addr: SocketAddr) -> Option<Arc<Table>> {
        self.tables.load().get(&addr).cloned()
    }
}

fn compile(l: &ir::Listener) -> Table {
    Table {
        servers: l
            .servers
            .iter()
            .map(|s| ServerEntry {
                hostname: s.hostname.clone(),
                routes: s
                    .passthrough
                    .iter()
                    .map(|r| RouteEntry {
                        name: r.name.clone(),
                        hostname: r.hostname.clone(),
                        total_weight: r.backends.iter().map(|b| u64::from(b.weight)).sum(),
                        backends: r.backends.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Rank of a hostname pattern that matches `sni`, lower is more specific: exact,
/// then wildcards by decreasing suffix length, then no hostname.
fn rank(h: &Option<ir::HostMatch>, sni: &str) -> Option<(u8, std::cmp::Reverse<usize>)> {
    match h {
        None => Some((2, std::cmp::Reverse(0))),
        Some(m) if !m.matches(sni) => None,
        Some(ir::HostMatch::Exact(_)) => Some((0, std::cmp::Reverse(0))),
        Some(ir::HostMatch::Wildcard(s)) => Some((1, std::cmp::Reverse(s.len()))),
    }
}

/// The most specific entry whose hostname matches `sni`; the first one on ties (the
/// IR order), whatever order the IR came in otherwise.
fn most_specific<'a, T>(
    items: &'a [T],
    hostname: impl Fn(&T) -> &Option<ir::HostMatch>,
    sni: &str,
) -> Option<&'a T> {
    let mut best: Option<(&T, (u8, std::cmp::Reverse<usize>))> = None;
    for it in items {
        if let Some(r) = rank(hostname(it), sni) {
            if best.as_ref().is_none_or(|(_, b)| r < *b) {
                best = Some((it, r));
            }
        }
    }
    best.map(|(it, _)| it)
}

impl Table {
    /// The route serving `sni`: the server first (listener isolation), then its route.
    fn select(&self, sni: &str) -> Result<&RouteEntry, Refusal> {
        let server = most_specific(&self.servers, |s| &s.hostname, sni).ok_or(Refusal::NoServer)?;
        most_specific(&server.routes, |r| &r.hostname, sni).ok_or(Refusal::NoRoute)
    }
}

impl RouteEntry {
    /// Picks a backend by weight, then one of its endpoints at random.
    fn pick(&self, rng: &mut impl Rng) -> Result<SocketAddr, Refusal> {
        if self.total_weight == 0 {
            return Err(Refusal::NoBackend);
        }
        let mut n = rng.random_range(0..self.total_weight);
        let backend = self
            .backends
            .iter()
            .find(|b| {
                let w = u64::from(b.weight);
                if n < w {
                    true
                } else {
                    n -= w;
                    false
                }
            })
            .ok_or(Refusal::NoBackend)?;
        match &backend.kind {
            ir::BackendKind::Invalid { reason, .. } => Err(Refusal::Invalid(reason.clone())),
            ir::BackendKind::Endpoints(set) if set.endpoints.is_empty() => {
                Err(Refusal::NoEndpoint(backend.name.clone()))
            }
            ir::BackendKind::Endpoints(set) => {
                let ep = &set.endpoints[rng.random_range(0..set.endpoints.len())];
                Ok(SocketAddr::new(ep.address, ep.port))
            }
        }
    }
}

// === Connections ===

/// Accepts connections on the passthrough listener bound at `addr` until aborted.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<PassthroughState>,
    addr: SocketAddr,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(serve(tcp, peer, state.clone(), addr));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // EMFILE and friends return at once: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads from `tcp` into `buf` until it holds a whole ClientHello; returns its SNI.
async fn read_hello(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<String>, String> {
    let mut chunk = [0u8; 4096];
    loop {
        match parse_client_hello(buf) {
            Ok(Hello::Complete { sni }) => return Ok(sni),
            Ok(Hello::Incomplete) => {}
            Err(e) => return Err(e.to_string()),
        }
        if buf.len() >= MAX_HELLO {
            return Err(format!("ClientHello larger than {MAX_HELLO} bytes"));
        }
        let want = chunk.len().min(MAX_HELLO - buf.len());
        let n = tcp
            .read(&mut chunk[..want])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the ClientHello ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One downstream connection.
async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    state: Arc<PassthroughState>,
    addr: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let mut buf = Vec::with_capacity(2048);
    let sni = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut tcp, &mut buf)).await {
        Ok(Ok(Some(sni))) => sni,
        Ok(Ok(None)) => {
            tracing::debug!(%peer, listener = %addr, "TLS passthrough: no SNI; closing");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, listener = %addr, error = %e, "TLS passthrough: closing");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, listener = %addr, "TLS passthrough: ClientHello timed out");
            return;
        }
    };
    let Some(table) = state.table(addr) else {
        return;
    };
    let (route, endpoint) = match table
        .select(&sni)
        .and_then(|r| r.pick(&mut rand::rng()).map(|e| (r, e)))
    {
        Ok(x) => x,
        Err(why) => {
            tracing::debug!(%peer, listener = %addr, %sni, reason = ?why, "TLS passthrough: not routed; closing");
            return;
        }
    };
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await;
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, %sni, route = %route.name, %endpoint, error = %e, "TLS passthrough: connect failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, %sni, route = %route.name, %endpoint, "TLS passthrough: connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    tracing::debug!(%peer, %sni, route = %route.name, %endpoint, "TLS passthrough: spliced");
    if upstream.write_all(&buf).await.is_err() {
        return;
    }
    drop(buf);
    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
}

#[cfg(test)]
mod tests;
