//! Cross-field invariants of a [`Config`](crate::Config). Shape invariants are in the
//! types; these are the ones a type cannot express. Every failure is reported, not
//! only the first.

use crate::{Action, Config};
use std::collections::BTreeSet;

/// One broken invariant, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Two listeners bind the same address and port.
    #[error("listeners {0} and {1} bind the same address and port")]
    DuplicateListener(String, String),
    /// A server names a certificate that is not in `Config::certificates`.
    #[error("server {server} references unknown certificate {certificate}")]
    UnknownCertificate {
        /// Server name.
        server: String,
        /// Certificate name.
        certificate: String,
    },
    /// An HTTPS server has no certificate, or an HTTP server has TLS settings.
    #[error("server {0}: TLS settings do not fit the listener protocol")]
    TlsMismatch(String),
    /// A redirect has a status that is not a redirect code.
    #[error("route {route}: redirect status {status} is not one of 301, 302, 303, 307, 308")]
    BadRedirectStatus {
        /// Route name.
        route: String,
        /// The status.
        status: u16,
    },
}

impl Config {
    /// Checks the cross-field invariants; returns every failure.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        for l in &self.listeners {
            if let Some(prev) = seen.insert((l.address, l.port), l.name.clone()) {
                errors.push(ValidationError::DuplicateListener(prev, l.name.clone()));
            }
            let https = l.protocol == crate::Protocol::Https;
            for s in &l.servers {
                match &s.tls {
                    Some(tls) => {
                        if !https || tls.certificates.is_empty() {
                            errors.push(ValidationError::TlsMismatch(s.name.clone()));
                        }
                        let known: BTreeSet<&String> = self.certificates.keys().collect();
                        for c in &tls.certificates {
                            if !known.contains(c) {
                                errors.push(ValidationError::UnknownCertificate {
                                    server: s.name.clone(),
                                    certificate: c.clone(),
                                });
                            }
                        }
                    }
                    None if https => errors.push(ValidationError::TlsMismatch(s.name.clone())),
                    None => {}
                }
                for vh in &s.virtual_hosts {
                    for r in &vh.routes {
                        if let Action::Redirect(rd) = &r.action {
                            if ![301, 302, 303, 307, 308].contains(&rd.status) {
                                errors.push(ValidationError::BadRedirectStatus {
                                    route: r.name.clone(),
                                    status: rd.status,
                                });
                            }
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
