//! TLSRoutes (gateway.networking.k8s.io/v1): attachment to `TLS` listeners with
//! `tls.mode: Passthrough`, backends, and their lowering into
//! [`ir::PassthroughRoute`]s.
//!
//! Attachment shares the HTTPRoute rules ([`super::http_route::attach`]: sectionName,
//! port, allowedRoutes namespaces and kinds, hostname intersection). Backends resolve
//! like HTTPRoute backends, with `TLSRoute` as the ReferenceGrant `from` kind; no
//! BackendTLSPolicy applies (the bytes are passed through as they are).
use super::*;
use crate::status::conditions::{self as c, Cond};
use crate::translate::backend::{self, BackendTlsTable};
use crate::translate::hostname::specificity;
use gateway_api::apis::experimental::httproutes::HttpRouteRulesBackendRefs;
use gateway_api::apis::standard::tlsroutes::{
    TlsRouteParentRefs, TlsRouteRules, TlsRouteRulesBackendRefs, TlsRouteSpec,
};

/// A TLSRoute with at least one parent of ours.
#[derive(Debug)]
pub struct TlsRouteNode {
    /// Namespace/name.
    pub key: ObjectKey,
    /// `metadata.generation`.
    pub generation: i64,
    /// `creationTimestamp`, nanoseconds since the epoch (precedence among routes
    /// claiming the same hostname: the oldest wins).
    pub created: Option<i128>,
    /// Parents of ours, in spec order.
    pub parents: Vec<ParentNode>,
    /// Rules (one entry per spec rule).
    pub rules: Vec<TlsRuleNode>,
    /// ResolvedRefs for all parents.
    pub resolved_refs: Cond,
}

/// A TLSRoute rule: its backends.
#[derive(Debug)]
pub struct TlsRuleNode {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Backends, in spec order (`Invalid` when they do not resolve).
    pub backends: Vec<ir::Backend>,
}

pub(super) fn route_node(
    store: &Store,
    key: &ObjectKey,
    route: &Arc<TlsRoute>,
    g: &mut Graph,
) -> Option<TlsRouteNode> {
    let obj = ObjectRef::new("TLSRoute", &key.namespace, &key.name);
    // Exhaustive: a new upstream field is a compile error here.
    let TlsRouteSpec {
        hostnames,
        parent_refs,
        rules,
    } = &route.spec;
    let hostnames = Some(hostnames.clone());
    let mut parents = Vec::new();
    for (pi, pr) in parent_refs.iter().flatten().enumerate() {
        let TlsRouteParentRefs {
            group,
            kind,
            name,
            namespace,
            port,
            section_name,
        } = pr;
        let written = http_route::ParentRefWritten {
            group,
            kind,
            name,
            namespace,
            section_name,
            port: *port,
        };
        parents.extend(http_route::parent_node(
            store, "TLSRoute", key, &hostnames, pi, written, g,
        ));
    }
    if parents.is_empty() {
        return None;
    }
    // No BackendTLSPolicy applies to passthrough backends.
    let no_policies = BackendTlsTable::default();
    let mut resolved_refs: Option<Cond> = None;
    let mut rule_nodes = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        let TlsRouteRules {
            backend_refs,
            name: rule_name,
        } = rule;
        let mut backends = Vec::new();
        for (bi, br) in backend_refs.iter().enumerate() {
            let TlsRouteRulesBackendRefs {
                group,
                kind,
                name,
                namespace,
                port,
                weight,
            } = br;
            let as_http = HttpRouteRulesBackendRefs {
                filters: None,
                group: group.clone(),
                kind: kind.clone(),
                name: name.clone(),
                namespace: namespace.clone(),
                port: *port,
                weight: *weight,
            };
            let source = ir::Source {
                kind: "TLSRoute".into(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                rule: Some(ri as u32),
                section: rule_name.clone(),
                annotation: None,
            };
            let r = backend::resolve_from(store, &no_policies, "TLSRoute", key, &source, &as_http);
            if let Some(cond) = r.failure {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    Some(format!("spec.rules[{ri}].backendRefs[{bi}]")),
                    cond.message.clone(),
                ));
                resolved_refs.get_or_insert(cond);
            }
            backends.push(r.backend);
        }
        rule_nodes.push(TlsRuleNode {
            index: ri,
            name: rule_name.clone(),
            backends,
        });
    }
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond());
    Some(TlsRouteNode {
        key: key.clone(),
        generation: route.metadata.generation.unwrap_or(1),
        created,
        parents,
        rules: rule_nodes,
        resolved_refs: resolved_refs.unwrap_or_else(c::route_resolved_refs),
    })
}

/// The passthrough routes of one listener (`gateway`, listener index), in the order the
/// proxy tries them: hostname specificity (exact, longest wildcard, none), then the
/// oldest route, then namespace/name, then rule index. With two routes claiming the
/// same hostname the first one wins (the proxy stops at the first match).
pub fn passthrough_routes(
    g: &Graph,
    gateway: &ObjectKey,
    listener: usize,
) -> Vec<ir::PassthroughRoute> {
    type Order = (
        (u8, std::cmp::Reverse<usize>, String),
        Option<i128>,
        ObjectKey,
        usize,
    );
    let mut out: Vec<(Order, ir::PassthroughRoute)> = Vec::new();
    for r in &g.tls_routes {
        for p in r.parents.iter().filter(|p| &p.gateway == gateway) {
            let Ok(att) = &p.attachment else { continue };
            let Some(hosts) = att.get(&listener) else {
                continue;
            };
            for h in hosts {
                for rule in &r.rules {
                    let name = format!(
                        "tlsroute/{}/{}/rule/{}",
                        r.key.namespace, r.key.name, rule.index
                    );
                    if out.iter().any(|(_, x)| x.name == name && &x.hostname == h) {
                        continue;
                    }
                    let order = (specificity(h), r.created, r.key.clone(), rule.index);
                    out.push((
                        order,
                        ir::PassthroughRoute {
                            name,
                            source: ir::Source {
                                kind: "TLSRoute".into(),
                                namespace: r.key.namespace.clone(),
                                name: r.key.name.clone(),
                                rule: Some(rule.index as u32),
                                section: rule.name.clone(),
                                annotation: None,
                            },
                            hostname: h.clone(),
                            backends: rule.backends.clone(),
                        },
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, r)| r).collect()
}
