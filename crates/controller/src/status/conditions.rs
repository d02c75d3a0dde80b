//! Condition vocabulary: reason constants and one constructor per condition.
//!
//! The internal [`Cond`] carries no timestamp and no generation: status computation
//! adds `observedGeneration`, the pipeline stamps `lastTransitionTime`.
//! Messages are capitalised and end with a period.

/// Maximum message length the API server accepts.
const MAX_MESSAGE: usize = 32_768;

/// A condition without timestamp or generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// A reason constant below.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

fn cond(
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: impl Into<String>,
) -> Cond {
    let mut message = message.into();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    Cond {
        type_,
        status,
        reason,
        message,
    }
}

/// Condition types.
pub mod types {
    /// Accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// Programmed.
    pub const PROGRAMMED: &str = "Programmed";
    /// ResolvedRefs.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Conflicted.
    pub const CONFLICTED: &str = "Conflicted";
    /// InsecureFrontendValidationMode (Gateway).
    pub const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";
}

/// Reasons, as the Gateway API spec names them.
pub mod reasons {
    /// Accepted.
    pub const ACCEPTED: &str = "Accepted";
    /// Programmed.
    pub const PROGRAMMED: &str = "Programmed";
    /// ResolvedRefs.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Invalid.
    pub const INVALID: &str = "Invalid";
    /// ListenersNotValid.
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// AddressNotAssigned.
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    /// UnsupportedAddress.
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    /// UnsupportedProtocol.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// PortUnavailable.
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    /// InvalidRouteKinds.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// InvalidCertificateRef.
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// RefNotPermitted.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// NoConflicts.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// HostnameConflict.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// ProtocolConflict.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// NotAllowedByListeners.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// NoMatchingParent.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// NoMatchingListenerHostname.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    /// InvalidParameters.
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    /// InvalidClientCertificateRef.
    pub const INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";
    /// InvalidCACertificateRef.
    pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
    /// InvalidCACertificateKind.
    pub const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
    /// NoValidCACertificate.
    pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
    /// UnsupportedValue.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// BackendNotFound.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// InvalidKind.
    pub const INVALID_KIND: &str = "InvalidKind";
    /// ConfigurationChanged.
    pub const CONFIGURATION_CHANGED: &str = "ConfigurationChanged";
    /// Conflicted (policy).
    pub const CONFLICTED: &str = "Conflicted";
    /// UnsupportedProtocol (backend side).
    pub const UNSUPPORTED_BACKEND_PROTOCOL: &str = "UnsupportedProtocol";
}

use reasons::*;
use types::{
    ACCEPTED as T_ACCEPTED, CONFLICTED as T_CONFLICTED, PROGRAMMED as T_PROGRAMMED,
    RESOLVED_REFS as T_RESOLVED_REFS,
};

// === GatewayClass ===

/// GatewayClass Accepted.
pub fn gateway_class_accepted() -> Cond {
    cond(
        T_ACCEPTED,
        true,
        reasons::ACCEPTED,
        "GatewayClass is accepted.",
    )
}

// === Gateway ===

/// Gateway Accepted.
pub fn gateway_accepted() -> Cond {
    cond(T_ACCEPTED, true, reasons::ACCEPTED, "Gateway is accepted.")
}

/// Gateway Accepted, with some listeners invalid.
pub fn gateway_accepted_listeners_not_valid(names: &[String]) -> Cond {
    cond(
        T_ACCEPTED,
        true,
        LISTENERS_NOT_VALID,
        format!(
            "Gateway is accepted; listeners {} are not valid.",
            names.join(", ")
        ),
    )
}

/// Gateway not Accepted: no listener is valid.
pub fn gateway_not_accepted_listeners_not_valid(names: &[String]) -> Cond {
    cond(
        T_ACCEPTED,
        false,
        LISTENERS_NOT_VALID,
        format!("No listener is valid: {}.", names.join(", ")),
    )
}

/// Gateway Programmed.
pub fn gateway_programmed() -> Cond {
    cond(
        T_PROGRAMMED,
        true,
        reasons::PROGRAMMED,
        "Gateway is programmed.",
    )
}

/// Gateway not Programmed: no address.
pub fn gateway_address_not_assigned() -> Cond {
    cond(
        T_PROGRAMMED,
        false,
        ADDRESS_NOT_ASSIGNED,
        "No address could be assigned to the Gateway.",
    )
}

/// Gateway not Programmed: invalid (message says why).
pub fn gateway_not_programmed(msg: impl Into<String>) -> Cond {
    cond(T_PROGRAMMED, false, INVALID, msg)
}

/// Gateway not Accepted: unsupported address type (`spec.addresses`).
pub fn gateway_not_accepted_address(msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, UNSUPPORTED_ADDRESS, msg)
}

/// Gateway not Accepted: `spec.infrastructure.parametersRef` cannot be used.
pub fn gateway_invalid_parameters(msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, INVALID_PARAMETERS, msg)
}

/// Gateway ResolvedRefs (only reported when the Gateway has references of its own).
pub fn gateway_resolved_refs() -> Cond {
    cond(
        T_RESOLVED_REFS,
        true,
        reasons::RESOLVED_REFS,
        "All references are resolved.",
    )
}

/// Gateway ResolvedRefs False with a reason from [`reasons`].
pub fn gateway_unresolved_refs(reason: &'static str, msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, reason, msg)
}

// === Listener ===

/// Listener Accepted.
pub fn listener_accepted() -> Cond {
    cond(T_ACCEPTED, true, reasons::ACCEPTED, "Listener is accepted.")
}

/// Listener not Accepted: protocol not supported.
pub fn listener_unsupported_protocol(protocol: &str) -> Cond {
    cond(
        T_ACCEPTED,
        false,
        UNSUPPORTED_PROTOCOL,
        format!("Protocol {protocol:?} is not supported; supported protocols are HTTP and HTTPS."),
    )
}

/// Listener not Accepted: a field has a value that is not supported (e.g. a TLS
/// listener with `tls.mode: Terminate`).
pub fn listener_unsupported_value(msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, UNSUPPORTED_VALUE, msg)
}

/// Listener not Accepted: its port could not be bound.
pub fn listener_port_unavailable(msg: &str) -> Cond {
    cond(
        T_ACCEPTED,
        false,
        PORT_UNAVAILABLE,
        format!("Listener could not be bound: {msg}."),
    )
}

/// Listener Programmed.
pub fn listener_programmed() -> Cond {
    cond(
        T_PROGRAMMED,
        true,
        reasons::PROGRAMMED,
        "Listener is programmed.",
    )
}

/// Listener not Programmed.
pub fn listener_not_programmed(msg: impl Into<String>) -> Cond {
    cond(T_PROGRAMMED, false, INVALID, msg)
}

/// Listener ResolvedRefs.
pub fn listener_resolved_refs() -> Cond {
    cond(
        T_RESOLVED_REFS,
        true,
        reasons::RESOLVED_REFS,
        "All references are resolved.",
    )
}

/// Listener ResolvedRefs False: a route kind is not supported.
pub fn listener_invalid_route_kinds(msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, INVALID_ROUTE_KINDS, msg)
}

/// Listener ResolvedRefs False: a certificate reference is invalid.
pub fn listener_invalid_certificate_ref(msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, INVALID_CERTIFICATE_REF, msg)
}

/// Listener ResolvedRefs False: a cross-namespace certificate reference is not permitted.
pub fn listener_ref_not_permitted(msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, REF_NOT_PERMITTED, msg)
}

/// Listener ResolvedRefs False with a reason from [`reasons`] (CA certificates).
pub fn listener_unresolved_refs(reason: &'static str, msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, reason, msg)
}

/// Listener not Accepted: no valid CA certificate for client validation.
pub fn listener_no_valid_ca_certificate() -> Cond {
    cond(
        T_ACCEPTED,
        false,
        NO_VALID_CA_CERTIFICATE,
        "No valid CA certificate is referenced for client certificate validation.",
    )
}

/// Listener Conflicted False.
pub fn listener_no_conflicts() -> Cond {
    cond(T_CONFLICTED, false, NO_CONFLICTS, "No conflicts.")
}

/// Listener Conflicted True: hostname conflict.
pub fn listener_hostname_conflict(other: &str) -> Cond {
    cond(
        T_CONFLICTED,
        true,
        HOSTNAME_CONFLICT,
        format!("Listener has the same port and hostname as listener {other:?}."),
    )
}

/// Listener Conflicted True: protocol conflict.
pub fn listener_protocol_conflict(other: &str) -> Cond {
    cond(
        T_CONFLICTED,
        true,
        PROTOCOL_CONFLICT,
        format!("Listener has the same port as listener {other:?} with another protocol."),
    )
}

// === Route (per parent) ===

/// Route Accepted.
pub fn route_accepted() -> Cond {
    cond(T_ACCEPTED, true, reasons::ACCEPTED, "Route is accepted.")
}

/// Route not Accepted: no listener allows it.
pub fn route_not_allowed_by_listeners(msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, NOT_ALLOWED_BY_LISTENERS, msg)
}

/// Route not Accepted: sectionName/port match no listener.
pub fn route_no_matching_parent(msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, NO_MATCHING_PARENT, msg)
}

/// Route not Accepted: no hostname intersection.
pub fn route_no_matching_listener_hostname() -> Cond {
    cond(
        T_ACCEPTED,
        false,
        NO_MATCHING_LISTENER_HOSTNAME,
        "No hostname of the route matches a hostname of the listeners.",
    )
}

/// Route not Accepted: a value is not supported.
pub fn route_unsupported_value(msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, UNSUPPORTED_VALUE, msg)
}

/// Route ResolvedRefs.
pub fn route_resolved_refs() -> Cond {
    cond(
        T_RESOLVED_REFS,
        true,
        reasons::RESOLVED_REFS,
        "All references are resolved.",
    )
}

/// Route ResolvedRefs False with a reason from [`reasons`].
pub fn route_unresolved_refs(reason: &'static str, msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, reason, msg)
}

/// Gateway InsecureFrontendValidationMode True: a port accepts connections without a
/// valid client certificate (`AllowInsecureFallback`).
pub fn gateway_insecure_frontend_validation(ports: &[u16]) -> Cond {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    cond(
        types::INSECURE_FRONTEND_VALIDATION_MODE,
        true,
        CONFIGURATION_CHANGED,
        format!(
            "Client certificate validation on port(s) {} is AllowInsecureFallback: connections without a valid client certificate are accepted.",
            ports.join(", ")
        ),
    )
}

// === Policy (per ancestor) ===

/// Policy Accepted.
pub fn policy_accepted() -> Cond {
    cond(T_ACCEPTED, true, reasons::ACCEPTED, "Policy is accepted.")
}

/// Policy not Accepted with a reason from [`reasons`] (`Conflicted`, `Invalid`,
/// `NoValidCACertificate`).
pub fn policy_not_accepted(reason: &'static str, msg: impl Into<String>) -> Cond {
    cond(T_ACCEPTED, false, reason, msg)
}

/// Policy ResolvedRefs.
pub fn policy_resolved_refs() -> Cond {
    cond(
        T_RESOLVED_REFS,
        true,
        reasons::RESOLVED_REFS,
        "All references are resolved.",
    )
}

/// Policy ResolvedRefs False with a reason from [`reasons`].
pub fn policy_unresolved_refs(reason: &'static str, msg: impl Into<String>) -> Cond {
    cond(T_RESOLVED_REFS, false, reason, msg)
}
