//! HTTPRoutes: attachment to listeners, rules, backends.
use super::*;
use crate::status::conditions::{self as c, Cond};
use crate::translate::backend;
use crate::translate::hostname::intersect;
use gateway_api::apis::experimental::gateways::GatewayListenersAllowedRoutesNamespacesSelector as Selector;
use gateway_api::apis::experimental::httproutes::{HttpRouteParentRefs, HttpRouteRules};

pub(super) fn route_node(
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
        .map(|(mi, m)| match crate::translate::lower::route_match(m) {
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
