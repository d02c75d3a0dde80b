//! HTTPRoutes: attachment to listeners, rules, backends.
use super::*;
use crate::status::conditions::{self as c, Cond};
use crate::translate::backend::{self, BackendTlsTable};
use crate::translate::hostname::intersect;
use crate::translate::lower;
use gateway_api::apis::experimental::gateways::GatewayListenersAllowedRoutesNamespacesSelector as Selector;
use gateway_api::apis::experimental::httproutes::{
    HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestMirror, HttpRouteRulesFiltersType as F,
};

pub(super) fn route_node(
    store: &Store,
    settings: &Settings,
    tls_table: &BackendTlsTable,
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
        let written = ParentRefWritten {
            group,
            kind,
            name,
            namespace,
            section_name,
            port: *port,
        };
        parents.extend(parent_node(
            store,
            "HTTPRoute",
            key,
            &route.spec.hostnames,
            pi,
            written,
            g,
        ));
    }
    if parents.is_empty() {
        return None;
    }
    let mut resolved_refs: Option<Cond> = None;
    let mut rules = Vec::new();
    let mut policies = BTreeSet::new();
    for (ri, rule) in route.spec.rules.iter().flatten().enumerate() {
        let mut ctx = RuleCtx {
            store,
            tls_table,
            key,
            obj: &obj,
            resolved_refs: &mut resolved_refs,
            policies: &mut policies,
        };
        rules.push(rule_node(&mut ctx, ri, rule, g));
    }
    // BackendTLSPolicy ancestors: the Gateways this route is attached to.
    for i in policies {
        if let Some(policy) = g.policies.get_mut(i) {
            for p in parents.iter().filter(|p| p.attachment.is_ok()) {
                policy.ancestors.insert(p.gateway.clone());
            }
        }
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

/// A parentRef of an HTTPRoute or TLSRoute as written (the generated structs differ
/// per route kind; their fields do not).
pub(super) struct ParentRefWritten<'a> {
    pub group: &'a Option<String>,
    pub kind: &'a Option<String>,
    pub name: &'a String,
    pub namespace: &'a Option<String>,
    pub section_name: &'a Option<String>,
    pub port: Option<i32>,
}

/// One parentRef of a route: defaults filled in, resolved to one of our Gateways and
/// attached to its listeners (a Notice when it does not attach). `None` for a reference
/// to another kind, or to a Gateway that is not ours: no status entry for it.
pub(super) fn parent_node(
    store: &Store,
    route_kind: &str,
    key: &ObjectKey,
    hostnames: &Option<Vec<String>>,
    index: usize,
    written: ParentRefWritten<'_>,
    g: &mut Graph,
) -> Option<ParentNode> {
    let ParentRefWritten {
        group,
        kind,
        name,
        namespace,
        section_name,
        port,
    } = written;
    let group = group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_string());
    let kind = kind.clone().unwrap_or_else(|| "Gateway".to_string());
    if group != GATEWAY_GROUP || kind != "Gateway" {
        return None;
    }
    let ns = namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| key.namespace.clone());
    let gw_key = ObjectKey::new(&ns, name);
    let gw = g.gateways.get(&gw_key)?;
    let parent_ref = ParentRef {
        group,
        kind,
        namespace: ns,
        name: name.clone(),
        section_name: section_name.clone(),
        port,
    };
    let attachment = attach(
        store,
        route_kind,
        key,
        hostnames,
        gw,
        section_name.as_deref(),
        port,
    );
    if let Err(cond) = &attachment {
        g.notices.push(Notice::warning(
            ObjectRef::new(route_kind, &key.namespace, &key.name),
            Some(format!("spec.parentRefs[{index}]")),
            cond.message.clone(),
        ));
    }
    Some(ParentNode {
        parent_ref,
        gateway: gw_key,
        attachment,
    })
}

/// Where a parentRef attaches on a Gateway: listeners matching sectionName and port,
/// allowing the route's namespace and kind, with intersecting hostnames.
pub(super) fn attach(
    store: &Store,
    route_kind: &str,
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
        .filter(|(_, l)| l.supported_kinds.iter().any(|k| k.kind == route_kind))
        .filter(|(_, l)| namespace_allowed(store, &l.allowed, &gw.key.namespace, &route.namespace))
        .collect();
    if allowed.is_empty() {
        return Err(c::route_not_allowed_by_listeners(format!(
            "No listener of Gateway {} allows {route_kind}s from namespace {:?}.",
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

/// What rule translation needs besides the rule.
struct RuleCtx<'a> {
    store: &'a Store,
    tls_table: &'a BackendTlsTable,
    key: &'a ObjectKey,
    obj: &'a ObjectRef,
    /// The route's ResolvedRefs: the first failure wins.
    resolved_refs: &'a mut Option<Cond>,
    /// BackendTLSPolicies applied to the route's backends.
    policies: &'a mut BTreeSet<usize>,
}

impl RuleCtx<'_> {
    fn fail(&mut self, cond: Cond) {
        if self.resolved_refs.is_none() {
            *self.resolved_refs = Some(cond);
        }
    }
}

/// Filter types translated (the others fail closed with a 500).
fn supported(t: &F) -> bool {
    matches!(
        t,
        F::RequestHeaderModifier
            | F::ResponseHeaderModifier
            | F::UrlRewrite
            | F::RequestRedirect
            | F::RequestMirror
            | F::Cors
    )
}

/// Checks the filters of a rule or a backendRef (`field` names the list) and resolves
/// their mirrors (filter index → mirror).
fn check_filters(
    ctx: &mut RuleCtx<'_>,
    source: &ir::Source,
    field: &str,
    filters: &[HttpRouteRulesFilters],
    g: &mut Graph,
) -> BTreeMap<usize, ir::Mirror> {
    let mut mirrors = BTreeMap::new();
    for (fi, f) in filters.iter().enumerate() {
        let field = Some(format!("{field}[{fi}]"));
        if !supported(&f.r#type) {
            g.notices.push(Notice::warning(
                ctx.obj.clone(),
                field,
                format!(
                    "Filter {:?} is not supported yet; requests it applies to get 500.",
                    f.r#type
                ),
            ));
            continue;
        }
        match (&f.r#type, &f.cors, &f.request_mirror) {
            (F::Cors, Some(cors), None) => {
                if let Err(msg) = lower::cors(cors) {
                    g.notices.push(Notice::warning(
                        ctx.obj.clone(),
                        field,
                        format!("{msg} Requests this filter applies to get 500."),
                    ));
                }
            }
            (F::RequestMirror, None, Some(m)) => match mirror(ctx, source, m) {
                Ok(m) => {
                    mirrors.insert(fi, m);
                }
                Err((msg, cond)) => {
                    g.notices.push(Notice::warning(
                        ctx.obj.clone(),
                        field,
                        format!("{msg} The mirror is not configured."),
                    ));
                    if let Some(cond) = cond {
                        ctx.fail(cond);
                    }
                }
            },
            _ => {}
        }
    }
    mirrors
}

/// Resolves a RequestMirror: its backend like a backendRef, its share as a fraction.
/// The error says why, with the route condition when it is a reference problem.
fn mirror(
    ctx: &mut RuleCtx<'_>,
    source: &ir::Source,
    m: &HttpRouteRulesFiltersRequestMirror,
) -> Result<ir::Mirror, (String, Option<Cond>)> {
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err(("Only one of percent and fraction may be set.".into(), None))
        }
        (Some(p), None) if (0..=100).contains(&p) => (p as u32, 100),
        (Some(p), None) => return Err((format!("Percent {p} is not within 0..100."), None)),
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            if d <= 0 || f.numerator < 0 || f.numerator > d {
                return Err((
                    format!(
                        "Fraction {}/{d} is not valid (0 <= numerator <= denominator, denominator > 0).",
                        f.numerator
                    ),
                    None,
                ));
            }
            (f.numerator as u32, d as u32)
        }
        (None, None) => (1, 1),
    };
    let b = &m.backend_ref;
    let br = HttpRouteRulesBackendRefs {
        filters: None,
        group: b.group.clone(),
        kind: b.kind.clone(),
        name: b.name.clone(),
        namespace: b.namespace.clone(),
        port: b.port,
        weight: None,
    };
    let r = backend::resolve(ctx.store, ctx.tls_table, ctx.key, source, &br);
    ctx.policies.extend(r.policies.iter().copied());
    if let Some(cond) = r.failure {
        return Err((cond.message.clone(), Some(cond)));
    }
    if let ir::BackendKind::Invalid { reason, .. } = &r.backend.kind {
        return Err((reason.clone(), None));
    }
    Ok(ir::Mirror {
        backend: r.backend,
        numerator,
        denominator,
    })
}

fn rule_node(ctx: &mut RuleCtx<'_>, ri: usize, rule: &HttpRouteRules, g: &mut Graph) -> RuleNode {
    let (key, obj) = (ctx.key, ctx.obj);
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
        .map(|(mi, m)| match lower::route_match(m) {
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
    let mirrors = check_filters(
        ctx,
        &source,
        &format!("spec.rules[{ri}].filters"),
        rule.filters.as_deref().unwrap_or_default(),
        g,
    );
    if let Some(retry) = &rule.retry {
        if let (_, Some(msg)) = lower::retry(retry) {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.rules[{ri}].retry")),
                msg,
            ));
        }
    }
    if rule.session_persistence.is_some() {
        g.notices.push(Notice::warning(
            obj.clone(),
            Some(format!("spec.rules[{ri}].sessionPersistence")),
            "sessionPersistence is not supported yet and is ignored.",
        ));
    }
    let mut backends = Vec::new();
    let mut backend_mirrors = Vec::new();
    for (bi, br) in rule.backend_refs.iter().flatten().enumerate() {
        let filters = lower::as_rule_filters(br.filters.as_deref().unwrap_or_default());
        backend_mirrors.push(check_filters(
            ctx,
            &source,
            &format!("spec.rules[{ri}].backendRefs[{bi}].filters"),
            &filters,
            g,
        ));
        let r = backend::resolve(ctx.store, ctx.tls_table, key, &source, br);
        ctx.policies.extend(r.policies.iter().copied());
        if let Some(cond) = r.failure {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.rules[{ri}].backendRefs[{bi}]")),
                cond.message.clone(),
            ));
            ctx.fail(cond);
        }
        backends.push(r.backend);
    }
    RuleNode {
        index: ri,
        name: rule.name.clone(),
        matches,
        backends,
        mirrors,
        backend_mirrors,
    }
}
