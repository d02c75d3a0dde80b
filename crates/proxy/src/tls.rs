//! TLS termination: SNI → certificate, built from the IR's PEM material and swapped
//! atomically on every config (certificate rotation needs no rebind).
//!
//! Each HTTPS listener gets an OpenSSL acceptor (Mozilla intermediate settings, ALPN
//! h2 then http/1.1) whose SNI callback picks the server the SNI selects on that
//! listener (exact name, longest wildcard, server without hostname; like routing),
//! then the first of its certificates whose names cover the SNI, else its first.

use crate::router::HostIndex;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::Stream;
use pingora_core::tls::pkey::PKey;
use pingora_core::tls::ssl::{
    select_next_proto, AlpnError, NameType, SniError, SslAcceptor, SslAcceptorBuilder, SslContext,
    SslMethod, SslRef, SslVerifyMode,
};
use pingora_core::tls::x509::X509;
use sluice_ir as ir;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";

/// The certificate tables of all HTTPS listeners.
#[derive(Default)]
pub(crate) struct TlsState {
    tables: ArcSwap<HashMap<SocketAddr, ListenerCerts>>,
}

#[derive(Default)]
struct ListenerCerts {
    index: HostIndex,
    /// Per server (by index in `index`).
    servers: Vec<ServerCerts>,
}

struct ServerCerts {
    /// Certificates, in IR order.
    entries: Vec<Arc<CertEntry>>,
    /// Client certificate checks of the server.
    client: ClientCheck,
}

/// How the client certificates of a server are checked.
enum ClientCheck {
    /// No client certificate is requested.
    None,
    /// Client certificates are requested and verified against `cas`.
    Verify {
        cas: Vec<X509>,
        mode: ir::ClientCertMode,
        depth: Option<u32>,
    },
    /// The validation settings could not be loaded: every handshake fails (fail
    /// closed rather than accept clients the config meant to reject).
    Broken,
}

struct CertEntry {
    /// DNS names the certificate covers (SANs, else CN), lower case.
    names: Vec<String>,
    ctx: SslContext,
}

/// A TLS acceptor for one listener.
pub(crate) struct TlsAcceptor {
    acceptor: SslAcceptor,
}

impl TlsAcceptor {
    /// Handshakes and returns the TLS stream for the HTTP application. The SNI the
    /// client sent is kept in the connection's TLS digest as [`Sni`].
    pub(crate) async fn handshake(&self, l4: L4Stream) -> pingora_error::Result<Stream> {
        let tls = handshake_with_callback(&self.acceptor, l4, &KeepSni).await?;
        Ok(Box::new(tls))
    }
}

/// The SNI of a TLS connection (lower case), stored in the TLS digest's extension so
/// the HTTP layer can detect misdirected requests.
#[derive(Debug, Clone)]
pub(crate) struct Sni(pub(crate) String);

struct KeepSni;

#[async_trait]
impl TlsAccept for KeepSni {
    async fn handshake_complete_callback(
        &self,
        ssl: &SslRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let sni = ssl.servername(NameType::HOST_NAME)?;
        Some(Arc::new(Sni(sni.to_ascii_lowercase())))
    }
}

impl TlsState {
    /// Rebuilds the certificate tables from `config`; returns what could not be loaded.
    pub(crate) fn update(&self, config: &ir::Config) -> Vec<String> {
        let mut errors = Vec::new();
        let mut loaded: HashMap<&str, Option<Arc<CertEntry>>> = HashMap::new();
        let mut tables = HashMap::new();
        for l in config
            .listeners
            .iter()
            .filter(|l| l.protocol == ir::Protocol::Https)
        {
            let mut certs = ListenerCerts::default();
            for s in &l.servers {
                let mut entries = Vec::new();
                for name in s.tls.iter().flat_map(|t| t.certificates.iter()) {
                    let entry = loaded.entry(name.as_str()).or_insert_with(|| {
                        match config.certificates.get(name) {
                            None => {
                                errors
                                    .push(format!("server {}: unknown certificate {name}", s.name));
                                None
                            }
                            Some(c) => match load(c) {
                                Ok(e) => Some(Arc::new(e)),
                                Err(e) => {
                                    errors.push(format!("certificate {name}: {e}"));
                                    None
                                }
                            },
                        }
                    });
                    if let Some(e) = entry {
                        entries.push(e.clone());
                    }
                }
                if !entries.is_empty() {
                    let client = match s.tls.as_ref().and_then(|t| t.client_validation.as_ref()) {
                        None => ClientCheck::None,
                        Some(cv) => match X509::stack_from_pem(cv.ca_pem.as_bytes()) {
                            Ok(cas) if !cas.is_empty() => ClientCheck::Verify {
                                cas,
                                mode: cv.mode,
                                depth: cv.verify_depth,
                            },
                            Ok(_) => {
                                errors.push(format!("server {}: no CA certificate in the client validation bundle; handshakes fail", s.name));
                                ClientCheck::Broken
                            }
                            Err(e) => {
                                errors.push(format!(
                                    "server {}: bad client CA PEM ({e}); handshakes fail",
                                    s.name
                                ));
                                ClientCheck::Broken
                            }
                        },
                    };
                    certs.index.insert(s.hostname.as_ref(), certs.servers.len());
                    certs.servers.push(ServerCerts { entries, client });
                }
            }
            tables.insert(SocketAddr::new(l.address, l.port), certs);
        }
        for e in &errors {
            tracing::error!("{e}");
        }
        self.tables.store(Arc::new(tables));
        errors
    }

    /// An acceptor for the HTTPS listener bound to `addr`; it reads the current tables
    /// at every handshake.
    pub(crate) fn acceptor(self: &Arc<Self>, addr: SocketAddr) -> Result<TlsAcceptor, String> {
        let mut b = base_builder().map_err(|e| e.to_string())?;
        let state = self.clone();
        b.set_servername_callback(move |ssl, _alert| state.select(addr, ssl));
        Ok(TlsAcceptor {
            acceptor: b.build(),
        })
    }

    fn select(&self, addr: SocketAddr, ssl: &mut SslRef) -> Result<(), SniError> {
        let sni = ssl
            .servername(NameType::HOST_NAME)
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let tables = self.tables.load();
        let Some(certs) = tables.get(&addr) else {
            return Err(SniError::ALERT_FATAL);
        };
        let server = certs.index.first(&sni).unwrap_or(0);
        let Some(server) = certs.servers.get(server) else {
            tracing::debug!(%addr, sni, "no certificate for this listener");
            return Err(SniError::ALERT_FATAL);
        };
        let entry = server
            .entries
            .iter()
            .find(|e| e.names.iter().any(|n| covers(n, &sni)))
            .or(server.entries.first())
            .ok_or(SniError::ALERT_FATAL)?;
        ssl.set_ssl_context(&entry.ctx)
            .map_err(|_| SniError::ALERT_FATAL)?;
        match &server.client {
            ClientCheck::None => Ok(()),
            ClientCheck::Broken => Err(SniError::ALERT_FATAL),
            ClientCheck::Verify { cas, mode, depth } => {
                request_client_cert(ssl, cas, *mode, *depth).map_err(|e| {
                    tracing::warn!(error = %e, "cannot set up client certificate checks");
                    SniError::ALERT_FATAL
                })
            }
        }
    }
}

/// Asks the client for a certificate chaining to `cas`, as `mode` says.
fn request_client_cert(
    ssl: &mut SslRef,
    cas: &[X509],
    mode: ir::ClientCertMode,
    depth: Option<u32>,
) -> Result<(), pingora_core::tls::error::ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    let mut names = Stack::new()?;
    for ca in cas {
        store.add_cert(ca.clone())?;
        names.push(ca.subject_name().to_owned()?)?;
    }
    ssl.set_verify_cert_store(store.build())?;
    ssl.set_client_ca_list(names);
    if let Some(d) = depth {
        ssl.param_mut()
            .set_depth(i32::try_from(d).unwrap_or(i32::MAX));
    }
    match mode {
        ir::ClientCertMode::Require => {
            ssl.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT)
        }
        ir::ClientCertMode::Optional => ssl.set_verify(SslVerifyMode::PEER),
        ir::ClientCertMode::RequestOnly => {
            ssl.set_verify_callback(SslVerifyMode::PEER, |_, _| true)
        }
    }
    Ok(())
}

fn base_builder() -> Result<SslAcceptorBuilder, pingora_core::tls::error::ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    b.set_alpn_select_callback(|_, client| {
        select_next_proto(ALPN_H2_H1, client).ok_or(AlpnError::NOACK)
    });
    Ok(b)
}

/// Loads a PEM chain and key into a context of its own.
fn load(c: &ir::Certificate) -> Result<CertEntry, String> {
    let chain = X509::stack_from_pem(c.cert_pem.as_bytes())
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    let mut chain = chain.into_iter();
    let leaf = chain.next().ok_or("no certificate in PEM")?;
    let key = PKey::private_key_from_pem(c.key_pem.as_bytes())
        .map_err(|e| format!("bad key PEM: {e}"))?;
    let mut b = base_builder().map_err(|e| e.to_string())?;
    b.set_certificate(&leaf).map_err(|e| e.to_string())?;
    for extra in chain {
        b.add_extra_chain_cert(extra).map_err(|e| e.to_string())?;
    }
    b.set_private_key(&key).map_err(|e| e.to_string())?;
    b.check_private_key()
        .map_err(|e| format!("key does not match certificate: {e}"))?;
    let mut names: Vec<String> = leaf
        .subject_alt_names()
        .into_iter()
        .flatten()
        .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
        .collect();
    if names.is_empty() {
        names = leaf
            .subject_name()
            .entries_by_nid(pingora_core::tls::nid::Nid::COMMONNAME)
            .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
            .collect();
    }
    Ok(CertEntry {
        names,
        ctx: b.build().into_context(),
    })
}

/// Does certificate name `name` (possibly `*.suffix`, one label) cover `host`?
fn covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => name == host,
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    /// Certificate wildcards cover exactly one label.
    #[test]
    fn wildcard_names() {
        assert!(covers("a.example.com", "a.example.com"));
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
    }
}
