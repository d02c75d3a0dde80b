//! Graph → statuses.
use super::*;
use crate::k8s::GATEWAY_GROUP;
use crate::settings::Settings;
use crate::translate::graph::Graph;

fn api_version() -> String {
    format!("{GATEWAY_GROUP}/v1")
}

/// Statuses of every managed object, sorted by kind, namespace, name.
pub fn compute(g: &Graph, settings: &Settings) -> StatusReport {
    let mut objects = Vec::new();
    for class in &g.classes {
        objects.push(ObjectStatus {
            api_version: api_version(),
            kind: "GatewayClass".into(),
            metadata: StatusMetadata {
                namespace: None,
                name: class.name.clone(),
                generation: class.generation,
            },
            status: Status::GatewayClass(GatewayClassStatus {
                conditions: class
                    .conditions
                    .iter()
                    .map(|c| to_condition(c, class.generation))
                    .collect(),
            }),
        });
    }
    for gw in g.gateways.values() {
        let generation = gw.generation;
        let addresses = gw
            .address
            .iter()
            .map(|a| GatewayStatusAddress {
                type_: "IPAddress".into(),
                value: a.to_string(),
            })
            .collect();
        let listeners = gw
            .listeners
            .iter()
            .map(|l| ListenerStatus {
                name: l.name.clone(),
                supported_kinds: l.supported_kinds.clone(),
                attached_routes: l.attached_routes,
                conditions: l
                    .conditions
                    .iter()
                    .map(|c| to_condition(c, generation))
                    .collect(),
            })
            .collect();
        objects.push(ObjectStatus {
            api_version: api_version(),
            kind: "Gateway".into(),
            metadata: StatusMetadata {
                namespace: Some(gw.key.namespace.clone()),
                name: gw.key.name.clone(),
                generation,
            },
            status: Status::Gateway(GatewayStatus {
                addresses,
                conditions: gw
                    .conditions
                    .iter()
                    .map(|c| to_condition(c, generation))
                    .collect(),
                listeners,
            }),
        });
    }
    for r in &g.routes {
        let generation = r.generation;
        let mut parents: Vec<RouteParentStatus> = Vec::new();
        for p in &r.parents {
            // Two identical parentRefs get one entry.
            if parents.iter().any(|x| x.parent_ref == p.parent_ref) {
                continue;
            }
            let accepted = match &p.attachment {
                Ok(_) => conditions::route_accepted(),
                Err(c) => c.clone(),
            };
            parents.push(RouteParentStatus {
                parent_ref: p.parent_ref.clone(),
                controller_name: settings.controller_name.clone(),
                conditions: vec![
                    to_condition(&accepted, generation),
                    to_condition(&r.resolved_refs, generation),
                ],
            });
        }
        objects.push(ObjectStatus {
            api_version: api_version(),
            kind: "HTTPRoute".into(),
            metadata: StatusMetadata {
                namespace: Some(r.key.namespace.clone()),
                name: r.key.name.clone(),
                generation,
            },
            status: Status::Route(RouteStatus { parents }),
        });
    }
    for r in &g.tls_routes {
        objects.push(ObjectStatus {
            api_version: api_version(),
            kind: "TLSRoute".into(),
            metadata: StatusMetadata {
                namespace: Some(r.key.namespace.clone()),
                name: r.key.name.clone(),
                generation: r.generation,
            },
            status: Status::Route(RouteStatus {
                parents: route_parents(&r.parents, &r.resolved_refs, r.generation, settings),
            }),
        });
    }
    for p in &g.policies {
        if p.ancestors.is_empty() {
            continue;
        }
        let generation = p.generation;
        let ancestors = p
            .ancestors
            .iter()
            .map(|gw| PolicyAncestorStatus {
                ancestor_ref: ParentRef {
                    group: GATEWAY_GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: gw.namespace.clone(),
                    name: gw.name.clone(),
                    section_name: None,
                    port: None,
                },
                controller_name: settings.controller_name.clone(),
                conditions: p
                    .conditions
                    .iter()
                    .map(|c| to_condition(c, generation))
                    .collect(),
            })
            .collect();
        objects.push(ObjectStatus {
            api_version: api_version(),
            kind: "BackendTLSPolicy".into(),
            metadata: StatusMetadata {
                namespace: Some(p.key.namespace.clone()),
                name: p.key.name.clone(),
                generation,
            },
            status: Status::Policy(PolicyStatus { ancestors }),
        });
    }
    objects.sort_by(|a, b| {
        (&a.kind, &a.metadata.namespace, &a.metadata.name).cmp(&(
            &b.kind,
            &b.metadata.namespace,
            &b.metadata.name,
        ))
    });
    StatusReport { objects }
}

/// `status.parents` of a route: one entry per distinct parentRef of ours, with
/// Accepted (from the attachment) and ResolvedRefs.
fn route_parents(
    route_parents: &[crate::translate::graph::ParentNode],
    resolved_refs: &conditions::Cond,
    generation: i64,
    settings: &Settings,
) -> Vec<RouteParentStatus> {
    let mut parents: Vec<RouteParentStatus> = Vec::new();
    for p in route_parents {
        if parents.iter().any(|x| x.parent_ref == p.parent_ref) {
            continue;
        }
        let accepted = match &p.attachment {
            Ok(_) => conditions::route_accepted(),
            Err(c) => c.clone(),
        };
        parents.push(RouteParentStatus {
            parent_ref: p.parent_ref.clone(),
            controller_name: settings.controller_name.clone(),
            conditions: vec![
                to_condition(&accepted, generation),
                to_condition(resolved_refs, generation),
            ],
        });
    }
    parents
}
