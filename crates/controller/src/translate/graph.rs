//! The Graph stage: verdicts about every managed object (who is ours, which listeners
//! are valid, where each route attaches, which references resolve) with the conditions
//! that explain them. The IR is lowered from the valid parts; statuses come from here.
use super::backend;
use super::hostname::intersect;
use crate::k8s::*;
use crate::notice::{Notice, ObjectRef};
use crate::settings::Settings;
use crate::status::conditions::{self as c, reasons, Cond};
use crate::status::{ParentRef, RouteGroupKind};
use crate::store::{ObjectKey, Store};
use gateway_api::apis::experimental::gateways::{
    GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
    GatewayListenersAllowedRoutesNamespacesSelector as Selector,
};
use gateway_api::apis::experimental::httproutes::{HttpRouteParentRefs, HttpRouteRules};
use sluice_ir as ir;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// Everything translation decided.
#[derive(Debug, Default)]
pub struct Graph {
    /// Our GatewayClasses.
    pub classes: Vec<ClassNode>,
    /// Gateways of our classes.
    pub gateways: BTreeMap<ObjectKey, GatewayNode>,
    /// HTTPRoutes with at least one parentRef to one of our Gateways.
    pub routes: Vec<RouteNode>,
    /// TLS certificates resolved for HTTPS listeners.
    pub certificates: BTreeMap<String, ir::Certificate>,
    /// Bad input found on the way.
    pub notices: Vec<Notice>,
}

/// A GatewayClass of ours.
#[derive(Debug)]
pub struct ClassNode {
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// Conditions.
    pub conditions: Vec<Cond>,
}

/// A Gateway of one of our classes.
#[derive(Debug)]
pub struct GatewayNode {
    /// Namespace/name.
    pub key: ObjectKey,
    /// `metadata.generation`.
    pub generation: i64,
    /// Assigned address, if any.
    pub address: Option<IpAddr>,
    /// Whether the Gateway is accepted (it is served only then).
    pub accepted: bool,
    /// Gateway conditions.
    pub conditions: Vec<Cond>,
    /// Listeners, in spec order.
    pub listeners: Vec<ListenerNode>,
}

/// Protocol of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP.
    Http,
    /// HTTPS (TLS terminated).
    Https,
    /// Anything else (not served).
    Unsupported(String),
}

/// Which namespaces may attach routes to a listener.
#[derive(Debug, Clone)]
pub enum AllowedNamespaces {
    /// The Gateway's namespace.
    Same,
    /// Any namespace.
    All,
    /// Namespaces whose labels match.
    Selector(Selector),
}

/// A listener and its verdicts.
#[derive(Debug)]
pub struct ListenerNode {
    /// Name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Hostname, if any.
    pub hostname: Option<ir::HostMatch>,
    /// Namespaces allowed to attach routes.
    pub allowed: AllowedNamespaces,
    /// Route kinds accepted (only supported ones).
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes may attach (Accepted and not conflicted).
    pub attachable: bool,
    /// Served by the proxy (attachable and all references resolved).
    pub programmable: bool,
    /// TLS certificate names for HTTPS listeners.
    pub certificates: Vec<String>,
    /// Conditions (Accepted, Programmed, ResolvedRefs, Conflicted).
    pub conditions: Vec<Cond>,
    /// Number of routes attached.
    pub attached_routes: i32,
}

/// An HTTPRoute with at least one parent of ours.
#[derive(Debug)]
pub struct RouteNode {
    /// Namespace/name.
    pub key: ObjectKey,
    /// `metadata.generation`.
    pub generation: i64,
    /// `creationTimestamp`, nanoseconds since the epoch.
    pub created: Option<i128>,
    /// The route.
    pub route: Arc<HttpRoute>,
    /// Parents of ours, in spec order.
    pub parents: Vec<ParentNode>,
    /// Rules lowered to backends (one entry per spec rule).
    pub rules: Vec<RuleNode>,
    /// ResolvedRefs for all parents.
    pub resolved_refs: Cond,
}

/// A parentRef to one of our Gateways.
#[derive(Debug)]
pub struct ParentNode {
    /// The reference, defaults filled in.
    pub parent_ref: ParentRef,
    /// The Gateway.
    pub gateway: ObjectKey,
    /// Where it attaches (listener index → effective hostnames), or why not.
    pub attachment: Result<BTreeMap<usize, Vec<Option<ir::HostMatch>>>, Cond>,
}

/// A rule: its matches and what it does.
#[derive(Debug)]
pub struct RuleNode {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Matches; `None` entries did not translate (not served).
    pub matches: Vec<Option<ir::RouteMatch>>,
    /// Backends, in spec order.
    pub backends: Vec<ir::Backend>,
}

/// Builds the Graph.
pub fn build(store: &Store, settings: &Settings) -> Graph {
    let mut g = Graph::default();
    // GatewayClasses.
    let mut our_classes = BTreeSet::new();
    for (key, gc) in &store.gateway_classes {
        if gc.spec.controller_name != settings.controller_name {
            continue;
        }
        our_classes.insert(key.name.clone());
        g.classes.push(ClassNode {
            name: key.name.clone(),
            generation: gc.metadata.generation.unwrap_or(1),
            conditions: vec![c::gateway_class_accepted()],
        });
    }
    // Gateways.
    for (key, gw) in &store.gateways {
        if !our_classes.contains(&gw.spec.gateway_class_name) {
            continue;
        }
        let node = gateway_node(store, key, gw, &mut g);
        g.gateways.insert(key.clone(), node);
    }
    // HTTPRoutes.
    for (key, route) in &store.http_routes {
        if let Some(node) = route_node(store, settings, key, route, &mut g) {
            g.routes.push(node);
        }
    }
    // attachedRoutes: distinct routes per listener.
    let mut attached: BTreeMap<(ObjectKey, usize), BTreeSet<ObjectKey>> = BTreeMap::new();
    for r in &g.routes {
        for p in &r.parents {
            if let Ok(listeners) = &p.attachment {
                for li in listeners.keys() {
                    attached
                        .entry((p.gateway.clone(), *li))
                        .or_default()
                        .insert(r.key.clone());
                }
            }
        }
    }
    for ((gw, li), routes) in attached {
        if let Some(l) = g
            .gateways
            .get_mut(&gw)
            .and_then(|g| g.listeners.get_mut(li))
        {
            l.attached_routes = routes.len() as i32;
        }
    }
    g
}

// === Gateways ===

fn gateway_node(store: &Store, key: &ObjectKey, gw: &Gateway, g: &mut Graph) -> GatewayNode {
    let generation = gw.metadata.generation.unwrap_or(1);
    let obj = ObjectRef::new("Gateway", &key.namespace, &key.name);
    let mut listeners: Vec<ListenerNode> = gw
        .spec
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| listener_node(store, key, i, l, g, &obj))
        .collect();
    frontend_validation(store, key, gw, &mut listeners, g, &obj);
    detect_conflicts(&mut listeners);

    let mut conditions = Vec::new();
    let mut accepted = true;
    // spec.addresses: only IP addresses are supported.
    let mut bad_addresses = Vec::new();
    for a in gw.spec.addresses.iter().flatten() {
        let t = a.r#type.as_deref().unwrap_or("IPAddress");
        let v = a.value.as_deref().unwrap_or("");
        if t != "IPAddress" {
            bad_addresses.push(format!("type {t:?} is not supported"));
        } else if !v.is_empty() && v.parse::<IpAddr>().is_err() {
            bad_addresses.push(format!("{v:?} is not an IP address"));
        }
    }
    // spec.infrastructure.parametersRef: no parameters kind is supported.
    let mut invalid_parameters = None;
    if let Some(p) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    {
        let msg = format!(
            "parametersRef {}/{} {:?} is not supported.",
            p.group, p.kind, p.name
        );
        g.notices.push(Notice::warning(
            obj.clone(),
            Some("spec.infrastructure.parametersRef".into()),
            msg.clone(),
        ));
        invalid_parameters = Some(c::gateway_invalid_parameters(msg));
    }
    let invalid: Vec<String> = listeners
        .iter()
        .filter(|l| !l.attachable)
        .map(|l| l.name.clone())
        .collect();
    if let Some(cond) = invalid_parameters {
        accepted = false;
        conditions.push(cond);
    } else if !bad_addresses.is_empty() {
        accepted = false;
        conditions.push(c::gateway_not_accepted_address(format!(
            "Addresses cannot be used: {}.",
            bad_addresses.join("; ")
        )));
    } else if !invalid.is_empty() && invalid.len() == listeners.len() {
        accepted = false;
        conditions.push(c::gateway_not_accepted_listeners_not_valid(&invalid));
    } else if !invalid.is_empty() {
        conditions.push(c::gateway_accepted_listeners_not_valid(&invalid));
    } else {
        conditions.push(c::gateway_accepted());
    }
    if let Some(cond) = backend_client_certificate(store, key, gw, g, &obj) {
        conditions.push(cond);
    }
    let address = if accepted {
        store.gateway_addresses.get(key).copied()
    } else {
        None
    };
    if !accepted {
        conditions.push(c::gateway_not_programmed("Gateway is not accepted."));
        for l in &mut listeners {
            l.programmable = false;
            for cond in &mut l.conditions {
                if cond.type_ == c::types::PROGRAMMED && cond.status {
                    *cond = c::listener_not_programmed("Gateway is not accepted.");
                }
            }
        }
    } else if address.is_none() {
        conditions.push(c::gateway_address_not_assigned());
    } else {
        conditions.push(c::gateway_programmed());
    }
    GatewayNode {
        key: key.clone(),
        generation,
        address,
        accepted,
        conditions,
        listeners,
    }
}

fn listener_node(
    store: &Store,
    gw: &ObjectKey,
    index: usize,
    l: &GatewayListeners,
    g: &mut Graph,
    obj: &ObjectRef,
) -> ListenerNode {
    let field = |f: &str| Some(format!("spec.listeners[{index}]{f}"));
    let protocol = match l.protocol.as_str() {
        "HTTP" => ListenerProtocol::Http,
        "HTTPS" => ListenerProtocol::Https,
        other => ListenerProtocol::Unsupported(other.to_string()),
    };
    let mut conditions = Vec::new();
    let mut attachable = true;
    let mut resolved = true;
    let port = match u16::try_from(l.port) {
        Ok(p) if p > 0 => p,
        _ => {
            attachable = false;
            0
        }
    };
    // Kinds.
    let mut supported_kinds = Vec::new();
    let mut bad_kinds = Vec::new();
    if let ListenerProtocol::Unsupported(p) = &protocol {
        attachable = false;
        conditions.push(c::listener_unsupported_protocol(p));
    } else {
        match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
            Some(kinds) if !kinds.is_empty() => {
                for k in kinds {
                    let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                    if group == GATEWAY_GROUP && k.kind == "HTTPRoute" {
                        let rgk = RouteGroupKind {
                            group: GATEWAY_GROUP.into(),
                            kind: "HTTPRoute".into(),
                        };
                        if !supported_kinds.contains(&rgk) {
                            supported_kinds.push(rgk);
                        }
                    } else {
                        bad_kinds.push(format!("{group}/{}", k.kind));
                    }
                }
            }
            _ => supported_kinds.push(RouteGroupKind {
                group: GATEWAY_GROUP.into(),
                kind: "HTTPRoute".into(),
            }),
        }
        conditions.push(if port == 0 {
            c::listener_not_programmed(format!("Port {} is not valid.", l.port))
        } else {
            c::listener_accepted()
        });
    }
    if !bad_kinds.is_empty() {
        resolved = false;
        conditions.push(c::listener_invalid_route_kinds(format!(
            "Route kinds {} are not supported; supported kinds are HTTPRoute.",
            bad_kinds.join(", ")
        )));
    }
    // TLS.
    let mut certificates = Vec::new();
    let mut certs_ok = true;
    if protocol == ListenerProtocol::Https {
        let refs = l
            .tls
            .as_ref()
            .and_then(|t| t.certificate_refs.clone())
            .unwrap_or_default();
        if refs.is_empty() {
            resolved = false;
            certs_ok = false;
            conditions.push(c::listener_invalid_certificate_ref(
                "HTTPS listener has no certificateRefs.",
            ));
        }
        for (ri, r) in refs.iter().enumerate() {
            let group = r.group.as_deref().unwrap_or("");
            let kind = r.kind.as_deref().unwrap_or("Secret");
            let ns = r.namespace.clone().unwrap_or_else(|| gw.namespace.clone());
            let res = if !(group.is_empty() || group == "core") || kind != "Secret" {
                Err(c::listener_invalid_certificate_ref(format!(
                    "Certificate reference {group}/{kind} {} is not a Secret.",
                    r.name
                )))
            } else if ns != gw.namespace
                && !backend::reference_permitted(
                    store,
                    "Gateway",
                    &gw.namespace,
                    "",
                    "Secret",
                    &ns,
                    &r.name,
                )
            {
                Err(c::listener_ref_not_permitted(format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it.",
                    r.name
                )))
            } else {
                match tls_certificate(store, &ns, &r.name) {
                    Ok(cert) => {
                        certificates.push(cert.name.clone());
                        g.certificates.insert(cert.name.clone(), cert);
                        Ok(())
                    }
                    Err(msg) => Err(c::listener_invalid_certificate_ref(msg)),
                }
            };
            if let Err(cond) = res {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    field(&format!(".tls.certificateRefs[{ri}]")),
                    cond.message.clone(),
                ));
                if resolved {
                    conditions.push(cond);
                }
                resolved = false;
                certs_ok = false;
            }
        }
    }
    if resolved {
        conditions.push(c::listener_resolved_refs());
    }
    // Namespaces.
    let allowed = match l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        None => AllowedNamespaces::Same,
        Some(n) => match (&n.from, &n.selector) {
            (None | Some(From::Same), _) => AllowedNamespaces::Same,
            (Some(From::All), _) => AllowedNamespaces::All,
            (Some(From::Selector), Some(sel)) => AllowedNamespaces::Selector(sel.clone()),
            (Some(From::Selector), None) => {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    field(".allowedRoutes.namespaces.selector"),
                    "From: Selector without a selector; no namespace is allowed.",
                ));
                AllowedNamespaces::Selector(Selector {
                    match_expressions: None,
                    match_labels: Some([("\u{0}".to_string(), String::new())].into()),
                })
            }
        },
    };
    ListenerNode {
        name: l.name.clone(),
        port,
        protocol,
        hostname: l
            .hostname
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(ir::HostMatch::parse),
        allowed,
        supported_kinds,
        attachable,
        programmable: attachable && certs_ok,
        certificates,
        conditions,
        attached_routes: 0,
    }
}

/// `spec.tls.backend.clientCertificateRef`: validated and reported as the Gateway's
/// ResolvedRefs (the proxy does not present it yet: a Notice says so).
fn backend_client_certificate(
    store: &Store,
    key: &ObjectKey,
    gw: &Gateway,
    g: &mut Graph,
    obj: &ObjectRef,
) -> Option<Cond> {
    let r = gw
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    let ns = r.namespace.clone().unwrap_or_else(|| key.namespace.clone());
    let field = Some("spec.tls.backend.clientCertificateRef".to_string());
    let cond = if !(group.is_empty() || group == "core") || kind != "Secret" {
        c::gateway_unresolved_refs(
            reasons::INVALID_CLIENT_CERTIFICATE_REF,
            format!(
                "Client certificate reference {group}/{kind} {} is not a Secret.",
                r.name
            ),
        )
    } else if ns != key.namespace
        && !backend::reference_permitted(
            store,
            "Gateway",
            &key.namespace,
            "",
            "Secret",
            &ns,
            &r.name,
        )
    {
        c::gateway_unresolved_refs(
            reasons::REF_NOT_PERMITTED,
            format!(
                "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it.",
                r.name
            ),
        )
    } else {
        match tls_certificate(store, &ns, &r.name) {
            Ok(_) => {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    field.clone(),
                    "Backend client certificates are not presented to backends yet.",
                ));
                c::gateway_resolved_refs()
            }
            Err(msg) => c::gateway_unresolved_refs(reasons::INVALID_CLIENT_CERTIFICATE_REF, msg),
        }
    };
    if !cond.status {
        g.notices
            .push(Notice::warning(obj.clone(), field, cond.message.clone()));
    }
    Some(cond)
}

/// `spec.tls.frontend`: client certificate validation of HTTPS listeners (per port,
/// else the default). References are checked and reported; since the proxy cannot
/// validate client certificates yet, a listener that asks for it is not served (fail
/// closed) rather than served without validation.
fn frontend_validation(
    store: &Store,
    key: &ObjectKey,
    gw: &Gateway,
    listeners: &mut [ListenerNode],
    g: &mut Graph,
    obj: &ObjectRef,
) {
    let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return;
    };
    for l in listeners.iter_mut() {
        if l.protocol != ListenerProtocol::Https || !l.attachable {
            continue;
        }
        // (group, kind, name, namespace) of each CA reference.
        let refs: Vec<(String, String, String, Option<String>)> = match frontend
            .per_port
            .iter()
            .flatten()
            .find(|p| i32::from(l.port) == p.port)
        {
            Some(p) => p
                .tls
                .validation
                .iter()
                .flat_map(|v| &v.ca_certificate_refs)
                .map(|r| {
                    (
                        r.group.clone(),
                        r.kind.clone(),
                        r.name.clone(),
                        r.namespace.clone(),
                    )
                })
                .collect(),
            None => frontend
                .default
                .validation
                .iter()
                .flat_map(|v| &v.ca_certificate_refs)
                .map(|r| {
                    (
                        r.group.clone(),
                        r.kind.clone(),
                        r.name.clone(),
                        r.namespace.clone(),
                    )
                })
                .collect(),
        };
        if refs.is_empty() {
            continue;
        }
        let mut unresolved: Option<Cond> = None;
        let mut valid = 0;
        for (group, kind, name, namespace) in &refs {
            let ns = namespace.clone().unwrap_or_else(|| key.namespace.clone());
            let res = if !(group.is_empty() || group == "core")
                || !(kind == "ConfigMap" || kind == "Secret")
            {
                Err((reasons::INVALID_CA_CERTIFICATE_KIND, format!("CA certificate reference {group}/{kind} {name} is not a ConfigMap or Secret.")))
            } else if ns != key.namespace
                && !backend::reference_permitted(
                    store,
                    "Gateway",
                    &key.namespace,
                    "",
                    kind,
                    &ns,
                    name,
                )
            {
                Err((reasons::REF_NOT_PERMITTED, format!("{kind} {ns}/{name} is in another namespace and no ReferenceGrant allows it.")))
            } else {
                let k = ObjectKey::new(&ns, name);
                let ca = if kind == "ConfigMap" {
                    store
                        .config_maps
                        .get(&k)
                        .and_then(|cm| cm.data.as_ref()?.get("ca.crt").cloned())
                } else {
                    store.secrets.get(&k).and_then(|s| {
                        s.data
                            .as_ref()?
                            .get("ca.crt")
                            .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    })
                };
                match ca {
                    Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Ok(()),
                    _ => Err((
                        reasons::INVALID_CA_CERTIFICATE_REF,
                        format!("{kind} {ns}/{name} does not exist or holds no PEM ca.crt."),
                    )),
                }
            };
            match res {
                Ok(()) => valid += 1,
                Err((reason, msg)) => {
                    g.notices.push(Notice::warning(
                        obj.clone(),
                        Some(format!("spec.tls.frontend (listener {:?})", l.name)),
                        msg.clone(),
                    ));
                    unresolved.get_or_insert(c::listener_unresolved_refs(reason, msg));
                }
            }
        }
        if let Some(cond) = unresolved {
            for x in &mut l.conditions {
                if x.type_ == c::types::RESOLVED_REFS && x.status {
                    *x = cond.clone();
                }
            }
        }
        l.programmable = false;
        if valid == 0 {
            l.attachable = false;
            for x in &mut l.conditions {
                if x.type_ == c::types::ACCEPTED {
                    *x = c::listener_no_valid_ca_certificate();
                }
            }
            l.conditions.push(c::listener_not_programmed(
                "No valid CA certificate for client certificate validation.",
            ));
        } else {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some("spec.tls.frontend".into()),
                format!("Listener {:?} asks for client certificate validation, which is not supported yet; it is not served.", l.name),
            ));
            l.conditions.push(c::listener_not_programmed(
                "Client certificate validation is not supported yet.",
            ));
        }
    }
}

/// Resolves a `kubernetes.io/tls` Secret into a certificate.
fn tls_certificate(store: &Store, ns: &str, name: &str) -> Result<ir::Certificate, String> {
    let Some(secret) = store.secrets.get(&ObjectKey::new(ns, name)) else {
        return Err(format!("Secret {ns}/{name} does not exist."));
    };
    let get = |k: &str| -> Option<String> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(k)) {
            return String::from_utf8(v.0.clone()).ok();
        }
        secret.string_data.as_ref().and_then(|d| d.get(k)).cloned()
    };
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(format!(
            "Secret {ns}/{name} is not of type kubernetes.io/tls."
        ));
    }
    let (Some(cert), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return Err(format!("Secret {ns}/{name} lacks tls.crt or tls.key."));
    };
    if !cert.contains("-----BEGIN CERTIFICATE-----")
        || !key.contains("-----BEGIN")
        || !key.contains("PRIVATE KEY")
    {
        return Err(format!(
            "Secret {ns}/{name} does not hold a PEM certificate and private key."
        ));
    }
    Ok(ir::Certificate {
        name: format!("{ns}/{name}"),
        cert_pem: cert,
        key_pem: key,
    })
}

/// Listeners on one port: different protocols conflict (ProtocolConflict); same
/// protocol and hostname conflict (HostnameConflict). The first listener in spec order
/// keeps the port and hostname; the later ones are not served.
fn detect_conflicts(listeners: &mut [ListenerNode]) {
    let n = listeners.len();
    let mut conflicts: Vec<Option<Cond>> = vec![None; n];
    for i in 0..n {
        if !listeners[i].attachable {
            continue;
        }
        for j in 0..i {
            if !listeners[j].attachable
                || listeners[j].port != listeners[i].port
                || conflicts[j].is_some()
            {
                continue;
            }
            if listeners[j].protocol != listeners[i].protocol {
                conflicts[i] = Some(c::listener_protocol_conflict(&listeners[j].name));
                break;
            }
            if listeners[j].hostname == listeners[i].hostname {
                conflicts[i] = Some(c::listener_hostname_conflict(&listeners[j].name));
                break;
            }
        }
    }
    for (l, conflict) in listeners.iter_mut().zip(conflicts) {
        match conflict {
            Some(cond) => {
                l.attachable = false;
                l.programmable = false;
                l.conditions.push(cond);
            }
            None => l.conditions.push(c::listener_no_conflicts()),
        }
        if l.programmable {
            l.conditions.push(c::listener_programmed());
        } else if !l.conditions.iter().any(|c| c.type_ == c::types::PROGRAMMED) {
            l.conditions
                .push(c::listener_not_programmed("Listener is not valid."));
        }
    }
}

// === Routes ===

fn route_node(
    store: &Store,
    settings: &Settings,
    key: &ObjectKey,
    route: &Arc<HttpRoute>,
    g: &mut Graph,
) -> Option<RouteNode> {
    let _ = settings;
    let obj = ObjectRef::new("HTTPRoute", &key.namespace, &key.name);
    let mut parents = Vec::new();
    for (pi, pr) in route.spec.parent_refs.iter().flatten().enumerate() {
        let HttpRouteParentRefs {
            group,
            kind,
            name,
            namespace,
            port,
            section_name,
        } = pr;
        let group = group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_string());
        let kind = kind.clone().unwrap_or_else(|| "Gateway".to_string());
        if group != GATEWAY_GROUP || kind != "Gateway" {
            continue;
        }
        let ns = namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| key.namespace.clone());
        let gw_key = ObjectKey::new(&ns, name);
        let Some(gw) = g.gateways.get(&gw_key) else {
            continue;
        };
        let parent_ref = ParentRef {
            group,
            kind,
            namespace: ns.clone(),
            name: name.clone(),
            section_name: section_name.clone(),
            port: *port,
        };
        let attachment = attach(
            store,
            key,
            &route.spec.hostnames,
            gw,
            section_name.as_deref(),
            *port,
        );
        if let Err(cond) = &attachment {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.parentRefs[{pi}]")),
                cond.message.clone(),
            ));
        }
        parents.push(ParentNode {
            parent_ref,
            gateway: gw_key,
            attachment,
        });
    }
    if parents.is_empty() {
        return None;
    }
    let mut resolved_refs: Option<Cond> = None;
    let mut rules = Vec::new();
    for (ri, rule) in route.spec.rules.iter().flatten().enumerate() {
        rules.push(rule_node(store, key, &obj, ri, rule, &mut resolved_refs, g));
    }
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond());
    Some(RouteNode {
        key: key.clone(),
        generation: route.metadata.generation.unwrap_or(1),
        created,
        route: route.clone(),
        parents,
        rules,
        resolved_refs: resolved_refs.unwrap_or_else(c::route_resolved_refs),
    })
}

/// Where a parentRef attaches on a Gateway: listeners matching sectionName and port,
/// allowing the route's namespace and kind, with intersecting hostnames.
fn attach(
    store: &Store,
    route: &ObjectKey,
    route_hostnames: &Option<Vec<String>>,
    gw: &GatewayNode,
    section: Option<&str>,
    port: Option<i32>,
) -> Result<BTreeMap<usize, Vec<Option<ir::HostMatch>>>, Cond> {
    let candidates: Vec<(usize, &ListenerNode)> = gw
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| section.is_none_or(|s| s == l.name))
        .filter(|(_, l)| port.is_none_or(|p| i32::from(l.port) == p))
        .collect();
    if candidates.is_empty() {
        let what = match (section, port) {
            (Some(s), Some(p)) => format!("listener {s:?} on port {p}"),
            (Some(s), None) => format!("listener {s:?}"),
            (None, Some(p)) => format!("listener on port {p}"),
            (None, None) => "listener".to_string(),
        };
        return Err(c::route_no_matching_parent(format!(
            "Gateway {} has no {what}.",
            gw.key
        )));
    }
    let allowed: Vec<(usize, &ListenerNode)> = candidates
        .into_iter()
        .filter(|(_, l)| l.attachable)
        .filter(|(_, l)| l.supported_kinds.iter().any(|k| k.kind == "HTTPRoute"))
        .filter(|(_, l)| namespace_allowed(store, &l.allowed, &gw.key.namespace, &route.namespace))
        .collect();
    if allowed.is_empty() {
        return Err(c::route_not_allowed_by_listeners(format!(
            "No listener of Gateway {} allows HTTPRoutes from namespace {:?}.",
            gw.key, route.namespace
        )));
    }
    let route_hosts: Vec<ir::HostMatch> = route_hostnames
        .iter()
        .flatten()
        .filter(|h| !h.is_empty())
        .map(|h| ir::HostMatch::parse(h))
        .collect();
    let mut out = BTreeMap::new();
    for (li, l) in allowed {
        let hosts: Vec<Option<ir::HostMatch>> = if route_hosts.is_empty() {
            vec![l.hostname.clone()]
        } else {
            let mut hs: Vec<Option<ir::HostMatch>> = route_hosts
                .iter()
                .filter_map(|h| intersect(l.hostname.as_ref(), h))
                .map(Some)
                .collect();
            hs.sort();
            hs.dedup();
            hs
        };
        if !hosts.is_empty() {
            out.insert(li, hosts);
        }
    }
    if out.is_empty() {
        return Err(c::route_no_matching_listener_hostname());
    }
    Ok(out)
}

fn namespace_allowed(
    store: &Store,
    allowed: &AllowedNamespaces,
    gw_ns: &str,
    route_ns: &str,
) -> bool {
    match allowed {
        AllowedNamespaces::Same => gw_ns == route_ns,
        AllowedNamespaces::All => true,
        AllowedNamespaces::Selector(sel) => {
            selector_matches(sel, &store.namespace_labels(route_ns))
        }
    }
}

/// Label selector semantics (matchLabels and matchExpressions with In, NotIn, Exists,
/// DoesNotExist). An unknown operator matches nothing.
pub fn selector_matches(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

fn rule_node(
    store: &Store,
    key: &ObjectKey,
    obj: &ObjectRef,
    ri: usize,
    rule: &HttpRouteRules,
    resolved_refs: &mut Option<Cond>,
    g: &mut Graph,
) -> RuleNode {
    let source = ir::Source {
        kind: "HTTPRoute".into(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        rule: Some(ri as u32),
        section: rule.name.clone(),
        annotation: None,
    };
    let default_match = vec![Default::default()];
    let matches = rule
        .matches
        .as_ref()
        .filter(|m| !m.is_empty())
        .unwrap_or(&default_match)
        .iter()
        .enumerate()
        .map(|(mi, m)| match super::lower::route_match(m) {
            Ok(m) => Some(m),
            Err(msg) => {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    Some(format!("spec.rules[{ri}].matches[{mi}]")),
                    format!("{msg} This match is not served."),
                ));
                None
            }
        })
        .collect();
    use gateway_api::apis::experimental::httproutes::HttpRouteRulesFiltersType as F;
    for (fi, f) in rule.filters.iter().flatten().enumerate() {
        if !matches!(
            f.r#type,
            F::RequestHeaderModifier
                | F::ResponseHeaderModifier
                | F::UrlRewrite
                | F::RequestRedirect
        ) {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.rules[{ri}].filters[{fi}]")),
                format!(
                    "Filter {:?} is not supported yet; requests matching this rule get 500.",
                    f.r#type
                ),
            ));
        }
    }
    for (field, set) in [
        ("retry", rule.retry.is_some()),
        ("sessionPersistence", rule.session_persistence.is_some()),
    ] {
        if set {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.rules[{ri}].{field}")),
                format!("{field} is not supported yet and is ignored."),
            ));
        }
    }
    let mut backends = Vec::new();
    for (bi, br) in rule.backend_refs.iter().flatten().enumerate() {
        for (fi, f) in br.filters.iter().flatten().enumerate() {
            use gateway_api::apis::experimental::httproutes::HttpRouteRulesBackendRefsFiltersType as B;
            if !matches!(
                f.r#type,
                B::RequestHeaderModifier
                    | B::ResponseHeaderModifier
                    | B::UrlRewrite
                    | B::RequestRedirect
            ) {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    Some(format!("spec.rules[{ri}].backendRefs[{bi}].filters[{fi}]")),
                    format!(
                        "Backend filter {:?} is not supported yet; requests sent to this backend get 500.",
                        f.r#type
                    ),
                ));
            }
        }
        let (backend, failure) = backend::resolve(store, key, &source, br);
        if let Some(cond) = failure {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.rules[{ri}].backendRefs[{bi}]")),
                cond.message.clone(),
            ));
            if resolved_refs.is_none() {
                *resolved_refs = Some(cond);
            }
        }
        backends.push(backend);
    }
    RuleNode {
        index: ri,
        name: rule.name.clone(),
        matches,
        backends,
    }
}
