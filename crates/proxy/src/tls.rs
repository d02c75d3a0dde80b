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
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::Stream;
use pingora_core::tls::pkey::PKey;
use pingora_core::tls::ssl::{
    select_next_proto, AlpnError, NameType, SniError, SslAcceptor, SslAcceptorBuilder, SslContext,
    SslMethod, SslRef,
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
    /// Per server (by index in `index`): its certificates, in IR order.
    servers: Vec<Vec<Arc<CertEntry>>>,
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
                    certs.index.insert(s.hostname.as_ref(), certs.servers.len());
                    certs.servers.push(entries);
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
        let Some(entries) = certs.servers.get(server) else {
            tracing::debug!(%addr, sni, "no certificate for this listener");
            return Err(SniError::ALERT_FATAL);
        };
        let entry = entries
            .iter()
            .find(|e| e.names.iter().any(|n| covers(n, &sni)))
            .or(entries.first())
            .ok_or(SniError::ALERT_FATAL)?;
        ssl.set_ssl_context(&entry.ctx)
            .map_err(|_| SniError::ALERT_FATAL)
    }
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
