//! The Graph stage: verdicts about every managed object (who is ours, which listeners
//! are valid, where each route attaches, which references resolve) with the conditions
//! that explain them. The IR is lowered from the valid parts; statuses come from here.
use crate::k8s::*;
use crate::notice::{Notice, ObjectRef};
use crate::settings::Settings;
use crate::status::conditions::{self as c, Cond};
use crate::status::{ParentRef, RouteGroupKind};
use crate::store::{ObjectKey, Store};
use gateway_api::apis::experimental::gateways::GatewayListenersAllowedRoutesNamespacesSelector as Selector;
use sluice_ir as ir;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

mod backend_tls;
mod gateway;
mod http_route;
mod shared_address;
mod tls_route;

pub use backend_tls::PolicyNode;
pub use http_route::selector_matches;
pub use tls_route::{passthrough_routes, TlsRouteNode, TlsRuleNode};

/// Everything translation decided.
#[derive(Debug, Default)]
pub struct Graph {
    /// Our GatewayClasses.
    pub classes: Vec<ClassNode>,
    /// Gateways of our classes.
    pub gateways: BTreeMap<ObjectKey, GatewayNode>,
    /// HTTPRoutes with at least one parentRef to one of our Gateways.
    pub routes: Vec<RouteNode>,
    /// TLSRoutes with at least one parentRef to one of our Gateways.
    pub tls_routes: Vec<TlsRouteNode>,
    /// TLS certificates resolved for HTTPS listeners and backend client certificates.
    pub certificates: BTreeMap<String, ir::Certificate>,
    /// BackendTLSPolicies, in Store order.
    pub policies: Vec<PolicyNode>,
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
    /// Certificate (a key of `Graph::certificates`) presented to TLS backends
    /// (`spec.tls.backend.clientCertificateRef`), when it resolves.
    pub backend_client_certificate: Option<String>,
}

/// Protocol of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP.
    Http,
    /// HTTPS (TLS terminated).
    Https,
    /// TLS with `tls.mode: Passthrough` (TLSRoutes, routed by SNI).
    TlsPassthrough,
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
    /// Client certificate validation (`spec.tls.frontend`) of HTTPS listeners.
    pub client_validation: Option<ir::ClientValidation>,
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
    /// Resolved RequestMirror filters of the rule: filter index → mirror. A mirror
    /// filter missing here did not resolve and is not configured.
    pub mirrors: BTreeMap<usize, ir::Mirror>,
    /// The same for each backendRef's filters (one map per backendRef).
    pub backend_mirrors: Vec<BTreeMap<usize, ir::Mirror>>,
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
        let node = gateway::gateway_node(store, key, gw, &mut g);
        g.gateways.insert(key.clone(), node);
    }
    // Listeners of different Gateways sharing an address and port.
    shared_address::detect(store, &mut g);
    // BackendTLSPolicies (before routes: backends resolve through them).
    let tls_table = backend_tls::build(store, &mut g);
    // HTTPRoutes.
    for (key, route) in &store.http_routes {
        if let Some(node) = http_route::route_node(store, settings, &tls_table, key, route, &mut g)
        {
            g.routes.push(node);
        }
    }
    // TLSRoutes.
    for (key, route) in &store.tls_routes {
        if let Some(node) = tls_route::route_node(store, key, route, &mut g) {
            g.tls_routes.push(node);
        }
    }
    // attachedRoutes: distinct routes (kind, namespace/name) per listener.
    let mut attached: BTreeMap<(ObjectKey, usize), BTreeSet<(&str, ObjectKey)>> = BTreeMap::new();
    let parents = (g.routes.iter().map(|r| ("HTTPRoute", &r.key, &r.parents))).chain(
        g.tls_routes
            .iter()
            .map(|r| ("TLSRoute", &r.key, &r.parents)),
    );
    for (kind, key, route_parents) in parents {
        for p in route_parents {
            if let Ok(listeners) = &p.attachment {
                for li in listeners.keys() {
                    attached
                        .entry((p.gateway.clone(), *li))
                        .or_default()
                        .insert((kind, key.clone()));
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
