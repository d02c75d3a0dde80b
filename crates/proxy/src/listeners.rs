//! Listener set reconciliation: the bound sockets follow the IR without a restart.
//!
//! Pingora's `Server` binds its listeners once, at startup, so Sluice owns the accept
//! loops and hands each accepted connection to the Pingora HTTP application exactly as
//! `pingora_core::services::listening::Service` does (socket digest with the peer
//! address, TLS handshake when needed, then `ServerApp::process_new` until the
//! connection is not reusable).
//!
//! Differences from Pingora's own loop, both because the pieces are crate-private:
//! the L4 stream keeps the zero-capacity buffers of `Stream::from(TcpStream)` (Pingora's
//! `set_buffer` is `pub(crate)`; its HTTP/1 code reads into its own buffer anyway), and
//! the TLS handshake goes through `protocols::tls::server::handshake_with_callback` with
//! an acceptor of ours instead of the crate-private `Acceptor`.
//!
//! A listener is rebound only when its protocol changes; certificate changes are a swap
//! of the certificate tables (see [`crate::tls`]).

use crate::passthrough::{self, PassthroughState};
use crate::tls::{TlsAcceptor, TlsState};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use sluice_ir as ir;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const BACKLOG: u32 = 4096;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The bound listeners and their accept loops.
pub(crate) struct ListenerSet<A> {
    app: Arc<A>,
    tls: Arc<TlsState>,
    /// Routing tables of the TLS passthrough listeners (see [`crate::passthrough`]).
    passthrough: Arc<PassthroughState>,
    bound: HashMap<SocketAddr, Bound>,
    freebind: bool,
}

struct Bound {
    name: String,
    protocol: ir::Protocol,
    task: JoinHandle<()>,
    /// Set to `true` when the listener is removed: connections finish their in-flight
    /// request and are not kept alive.
    shutdown: watch::Sender<bool>,
}

impl<A: ServerApp + Send + Sync + 'static> ListenerSet<A> {
    /// `freebind`: set `IP_FREEBIND`, so addresses not (yet) on an interface bind.
    pub(crate) fn new(app: Arc<A>, tls: Arc<TlsState>, freebind: bool) -> Self {
        ListenerSet {
            app,
            tls,
            passthrough: Arc::default(),
            bound: HashMap::new(),
            freebind,
        }
    }

    /// Makes the bound set equal to `listeners`: unbinds removed ones and ones whose
    /// protocol changed, binds new ones, keeps the rest. Returns bind errors by
    /// listener name.
    pub(crate) async fn reconcile(
        &mut self,
        listeners: &[ir::Listener],
    ) -> BTreeMap<String, String> {
        self.passthrough.update(listeners);
        let desired: HashMap<SocketAddr, &ir::Listener> = listeners
            .iter()
            .map(|l| (SocketAddr::new(l.address, l.port), l))
            .collect();
        let stale: Vec<SocketAddr> = self
            .bound
            .iter()
            .filter(|(addr, b)| desired.get(addr).is_none_or(|l| l.protocol != b.protocol))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in stale {
            if let Some(b) = self.bound.remove(&addr) {
                tracing::info!(listener = %b.name, %addr, "closing listener");
                let _ = b.shutdown.send(true);
                b.task.abort();
                // Wait until the socket is closed, so it can be bound again at once.
                let _ = b.task.await;
            }
        }
        let mut errors = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for l in listeners {
            let addr = SocketAddr::new(l.address, l.port);
            if !seen.insert(addr) {
                errors.insert(
                    l.name.clone(),
                    format!("{addr} is already used by another listener"),
                );
                continue;
            }
            if let Some(b) = self.bound.get_mut(&addr) {
                b.name.clone_from(&l.name);
                continue;
            }
            let tls = match l.protocol {
                ir::Protocol::Http | ir::Protocol::TlsPassthrough => None,
                ir::Protocol::Https => match self.tls.acceptor(addr) {
                    Ok(a) => Some(Arc::new(a)),
                    Err(e) => {
                        tracing::error!(listener = %l.name, error = %e, "cannot set up TLS");
                        errors.insert(l.name.clone(), format!("cannot set up TLS: {e}"));
                        continue;
                    }
                },
            };
            match bind(addr, self.freebind) {
                Ok(listener) => {
                    let local = listener.local_addr().unwrap_or(addr);
                    tracing::info!(listener = %l.name, %local, protocol = ?l.protocol, "listening");
                    let (tx, rx) = watch::channel(false);
                    let task = if l.protocol == ir::Protocol::TlsPassthrough {
                        let state = self.passthrough.clone();
                        tokio::spawn(passthrough::accept_loop(listener, state, addr))
                    } else {
                        tokio::spawn(accept_loop(listener, self.app.clone(), tls, rx))
                    };
                    self.bound.insert(
                        addr,
                        Bound {
                            name: l.name.clone(),
                            protocol: l.protocol,
                            task,
                            shutdown: tx,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(listener = %l.name, %addr, error = %e, "cannot bind listener");
                    errors.insert(l.name.clone(), format!("cannot bind {addr}: {e}"));
                }
            }
        }
        errors
    }
}

impl<A> Drop for ListenerSet<A> {
    fn drop(&mut self) {
        for b in self.bound.values() {
            let _ = b.shutdown.send(true);
            b.task.abort();
        }
    }
}

/// Binds with `SO_REUSEADDR` (a closed listener's port can be bound again at once).
/// Any 127.0.0.0/8 address binds on Linux without configuration.
fn bind(addr: SocketAddr, freebind: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if freebind {
        let s = socket2::SockRef::from(&socket);
        match addr {
            SocketAddr::V4(_) => s.set_freebind_v4(true)?,
            SocketAddr::V6(_) => s.set_freebind_v6(true)?,
        }
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn accept_loop<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    app: Arc<A>,
    tls: Option<Arc<TlsAcceptor>>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(serve(tcp, peer, app.clone(), tls.clone(), shutdown.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // EMFILE and friends return at once: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One downstream connection, as Pingora's listening service handles it.
async fn serve<A: ServerApp + Send + Sync + 'static>(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Arc<A>,
    tls: Option<Arc<TlsAcceptor>>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let mut l4: L4Stream = tcp.into();
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
    l4.set_socket_digest(digest);
    let stream: Stream = match tls {
        None => Box::new(crate::bufstream::BufferedStream::new(l4)),
        Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(l4)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let mut next = app.process_new(stream, &shutdown).await;
    while let Some(stream) = next {
        next = app.process_new(stream, &shutdown).await;
    }
}
