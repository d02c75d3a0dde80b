//! Graph → `ir::Config`: names, provenance, precedence order, sorted output.
use super::graph::{Graph, ListenerProtocol, RouteNode, RuleNode};
use super::hostname::specificity;
use super::precedence::Precedence;
use crate::notice::{Notice, ObjectRef};
use crate::store::ObjectKey;
use gateway_api::apis::experimental::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesFilters, HttpRouteRulesFiltersCors,
    HttpRouteRulesFiltersRequestRedirectPathType as RedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme, HttpRouteRulesFiltersType as FilterType,
    HttpRouteRulesFiltersUrlRewritePathType as RewritePathType, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType, HttpRouteRulesRetry, HttpRouteRulesTimeouts,
};
use sluice_ir as ir;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Size limit of compiled regular expressions (bytes).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn checked_regex(v: &str) -> Result<String, String> {
    let anchored = format!("^(?:{v})$");
    regex::RegexBuilder::new(&anchored)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| anchored)
        .map_err(|e| {
            format!(
                "Regular expression {v:?} is not valid: {}.",
                e.to_string().lines().last().unwrap_or("")
            )
        })
}

/// One HTTPRoute match → IR match. Errors name the bad value.
pub fn route_match(m: &HttpRouteRulesMatches) -> Result<ir::RouteMatch, String> {
    let HttpRouteRulesMatches {
        headers,
        method,
        path,
        query_params,
    } = m;
    let path = match path {
        None => ir::PathMatch::default(),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".to_string());
            match p
                .r#type
                .clone()
                .unwrap_or(HttpRouteRulesMatchesPathType::PathPrefix)
            {
                HttpRouteRulesMatchesPathType::Exact
                | HttpRouteRulesMatchesPathType::PathPrefix
                    if !value.starts_with('/') =>
                {
                    return Err(format!("Path {value:?} does not start with \"/\"."));
                }
                HttpRouteRulesMatchesPathType::Exact => ir::PathMatch::Exact(value),
                HttpRouteRulesMatchesPathType::PathPrefix => ir::PathMatch::Prefix(value),
                HttpRouteRulesMatchesPathType::RegularExpression => {
                    ir::PathMatch::Regex(checked_regex(&value)?)
                }
            }
        }
    };
    let mut out_headers: Vec<ir::HeaderMatch> = Vec::new();
    for h in headers.iter().flatten() {
        let name = h.name.to_ascii_lowercase();
        // "If multiple entries specify equivalent header names, only the first entry
        // with an equivalent name MUST be considered."
        if out_headers.iter().any(|x| x.name == name) {
            continue;
        }
        let value = match h
            .r#type
            .clone()
            .unwrap_or(HttpRouteRulesMatchesHeadersType::Exact)
        {
            HttpRouteRulesMatchesHeadersType::Exact => ir::StringMatch::Exact(h.value.clone()),
            HttpRouteRulesMatchesHeadersType::RegularExpression => {
                ir::StringMatch::Regex(checked_regex(&h.value)?)
            }
        };
        out_headers.push(ir::HeaderMatch { name, value });
    }
    let mut out_query: Vec<ir::QueryParamMatch> = Vec::new();
    for q in query_params.iter().flatten() {
        if out_query.iter().any(|x| x.name == q.name) {
            continue;
        }
        let value = match q
            .r#type
            .clone()
            .unwrap_or(HttpRouteRulesMatchesQueryParamsType::Exact)
        {
            HttpRouteRulesMatchesQueryParamsType::Exact => ir::StringMatch::Exact(q.value.clone()),
            HttpRouteRulesMatchesQueryParamsType::RegularExpression => {
                ir::StringMatch::Regex(checked_regex(&q.value)?)
            }
        };
        out_query.push(ir::QueryParamMatch {
            name: q.name.clone(),
            value,
        });
    }
    let method = method
        .as_ref()
        .and_then(|m| serde_json::to_value(m).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    Ok(ir::RouteMatch {
        path,
        headers: out_headers,
        query_params: out_query,
        method,
    })
}

/// Parses a Gateway API duration (`1h`, `500ms`, `1m30s`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// Retries when `retry.attempts` is not set (the spec leaves it to implementations).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 1;

/// `rules[].retry` → IR retry. Connection errors (and backend request timeouts) are
/// always retried. Parts that cannot be used are left out; the message says which.
pub fn retry(r: &HttpRouteRulesRetry) -> (ir::Retry, Option<String>) {
    let mut problems = Vec::new();
    let attempts = match r.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(a) => u32::try_from(a).unwrap_or_else(|_| {
            problems.push(format!(
                "attempts {a} is not valid; {DEFAULT_RETRY_ATTEMPTS} is used"
            ));
            DEFAULT_RETRY_ATTEMPTS
        }),
    };
    let mut codes: Vec<u16> = Vec::new();
    for c in r.codes.iter().flatten() {
        match u16::try_from(*c) {
            Ok(c) if (400..=599).contains(&c) => {
                if !codes.contains(&c) {
                    codes.push(c);
                }
            }
            _ => problems.push(format!("code {c} is not within 400..599 and is ignored")),
        }
    }
    let backoff_ms = match r.backoff.as_deref() {
        None => None,
        Some(b) => match parse_duration_ms(b) {
            Some(ms) => Some(ms),
            None => {
                problems.push(format!(
                    "backoff {b:?} is not a Gateway API duration and is ignored"
                ));
                None
            }
        },
    };
    let msg = (!problems.is_empty()).then(|| {
        let mut m = problems.join("; ");
        m[..1].make_ascii_uppercase();
        m.push('.');
        m
    });
    (
        ir::Retry {
            codes,
            attempts,
            backoff_ms,
            on_connection_error: true,
        },
        msg,
    )
}

/// Default `Access-Control-Max-Age` (seconds) when `maxAge` is not set (spec).
pub const DEFAULT_CORS_MAX_AGE_S: u64 = 5;

fn valid_origin(o: &str) -> bool {
    if o == "*" {
        return true;
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.*".contains(c))
        && (host == "*" || !host[1..].contains('*'));
    port_ok && host_ok
}

/// CORS filter → IR. Errors name the bad value.
pub fn cors(c: &HttpRouteRulesFiltersCors) -> Result<ir::Cors, String> {
    let HttpRouteRulesFiltersCors {
        allow_credentials,
        allow_headers,
        allow_methods,
        allow_origins,
        expose_headers,
        max_age,
    } = c;
    let origins: Vec<String> = allow_origins.iter().flatten().cloned().collect();
    if let Some(bad) = origins.iter().find(|o| !valid_origin(o)) {
        return Err(format!(
            "CORS origin {bad:?} is not \"*\" nor <scheme>://<host>[:<port>] with scheme http or https."
        ));
    }
    let methods: Vec<String> = allow_methods.iter().flatten().cloned().collect();
    if let Some(bad) = methods.iter().find(|m| {
        m.is_empty()
            || !(m.as_str() == "*"
                || m.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
    }) {
        return Err(format!("CORS method {bad:?} is not a method token."));
    }
    let max_age_s = match max_age {
        None => DEFAULT_CORS_MAX_AGE_S,
        Some(v) => u64::try_from(*v).map_err(|_| format!("CORS maxAge {v} is negative."))?,
    };
    Ok(ir::Cors {
        allow_origins: origins,
        allow_methods: methods,
        allow_headers: allow_headers.iter().flatten().cloned().collect(),
        expose_headers: expose_headers.iter().flatten().cloned().collect(),
        max_age_s: Some(max_age_s),
        allow_credentials: allow_credentials.unwrap_or(false),
    })
}

fn timeouts(t: &Option<HttpRouteRulesTimeouts>) -> ir::Timeouts {
    let Some(t) = t else {
        return ir::Timeouts::default();
    };
    let ms = |d: &Option<String>| d.as_deref().and_then(parse_duration_ms).filter(|v| *v > 0);
    ir::Timeouts {
        request_ms: ms(&t.request),
        backend_request_ms: ms(&t.backend_request),
        connect_ms: None,
    }
}

fn header_modifier<'a>(
    set: impl Iterator<Item = (&'a String, &'a String)>,
    add: impl Iterator<Item = (&'a String, &'a String)>,
    remove: Option<&Vec<String>>,
) -> ir::HeaderModifier {
    let hv = |(n, v): (&String, &String)| ir::HeaderValue {
        name: n.to_ascii_lowercase(),
        value: v.clone(),
    };
    ir::HeaderModifier {
        set: set.map(hv).collect(),
        add: add.map(hv).collect(),
        remove: remove
            .into_iter()
            .flatten()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
    }
}

fn path_rewrite(
    prefix_type: bool,
    full: &Option<String>,
    replacement: &Option<String>,
    path: &ir::PathMatch,
) -> Result<ir::PathRewrite, String> {
    if !prefix_type {
        return Ok(ir::PathRewrite::ReplaceFullPath {
            path: full.clone().unwrap_or_else(|| "/".into()),
        });
    }
    match path {
        ir::PathMatch::Prefix(p) => Ok(ir::PathRewrite::ReplacePrefixMatch {
            prefix: p.clone(),
            replacement: replacement.clone().unwrap_or_else(|| "/".into()),
        }),
        _ => Err("ReplacePrefixMatch needs a PathPrefix match".into()),
    }
}

fn internal_error(reason: String) -> ir::Filter {
    ir::Filter::InternalError {
        reason,
        status: 500,
    }
}

/// Rule filters for one match: IR filters, and a redirect if the rule redirects.
fn rule_filters(
    filters: &[HttpRouteRulesFilters],
    mirrors: &BTreeMap<usize, ir::Mirror>,
    path: &ir::PathMatch,
) -> (Vec<ir::Filter>, Option<ir::Redirect>) {
    let mut out = Vec::new();
    let mut redirect = None;
    for (fi, f) in filters.iter().enumerate() {
        match f.r#type {
            // A mirror that did not resolve is not configured (spec); the Graph
            // reported it (ResolvedRefs and a Notice).
            FilterType::RequestMirror => {
                if let Some(m) = mirrors.get(&fi) {
                    out.push(ir::Filter::Mirror(Box::new(m.clone())));
                }
            }
            FilterType::Cors => match f.cors.as_ref().map(cors) {
                Some(Ok(c)) => out.push(ir::Filter::Cors(c)),
                Some(Err(e)) => out.push(internal_error(e)),
                None => out.push(internal_error("CORS filter without cors".into())),
            },
            FilterType::RequestHeaderModifier => match &f.request_header_modifier {
                Some(m) => out.push(ir::Filter::RequestHeaders(header_modifier(
                    m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.remove.as_ref(),
                ))),
                None => out.push(internal_error(
                    "RequestHeaderModifier filter without requestHeaderModifier".into(),
                )),
            },
            FilterType::ResponseHeaderModifier => match &f.response_header_modifier {
                Some(m) => out.push(ir::Filter::ResponseHeaders(header_modifier(
                    m.set.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.add.iter().flatten().map(|h| (&h.name, &h.value)),
                    m.remove.as_ref(),
                ))),
                None => out.push(internal_error(
                    "ResponseHeaderModifier filter without responseHeaderModifier".into(),
                )),
            },
            FilterType::UrlRewrite => match &f.url_rewrite {
                Some(u) => {
                    let path = match &u.path {
                        None => Ok(None),
                        Some(p) => path_rewrite(
                            p.r#type == RewritePathType::ReplacePrefixMatch,
                            &p.replace_full_path,
                            &p.replace_prefix_match,
                            path,
                        )
                        .map(Some),
                    };
                    match path {
                        Ok(path) => out.push(ir::Filter::UrlRewrite(ir::UrlRewrite {
                            hostname: u.hostname.clone(),
                            path,
                        })),
                        Err(e) => out.push(internal_error(e)),
                    }
                }
                None => out.push(internal_error(
                    "URLRewrite filter without urlRewrite".into(),
                )),
            },
            FilterType::RequestRedirect => match &f.request_redirect {
                Some(r) => {
                    let path = match &r.path {
                        None => Ok(None),
                        Some(p) => path_rewrite(
                            p.r#type == RedirectPathType::ReplacePrefixMatch,
                            &p.replace_full_path,
                            &p.replace_prefix_match,
                            path,
                        )
                        .map(Some),
                    };
                    match path {
                        Ok(path) => {
                            redirect = Some(ir::Redirect {
                                scheme: r.scheme.as_ref().map(|s| match s {
                                    Scheme::Http => "http".to_string(),
                                    Scheme::Https => "https".to_string(),
                                }),
                                hostname: r.hostname.clone(),
                                port: r.port.and_then(|p| u16::try_from(p).ok()),
                                path,
                                status: r
                                    .status_code
                                    .and_then(|c| u16::try_from(c).ok())
                                    .unwrap_or(302),
                            })
                        }
                        Err(e) => out.push(internal_error(e)),
                    }
                }
                None => out.push(internal_error(
                    "RequestRedirect filter without requestRedirect".into(),
                )),
            },
            ref other => out.push(internal_error(format!(
                "{other:?} filter is not supported yet"
            ))),
        }
    }
    (out, redirect)
}

/// Backend filters share the rule filters' schema, so they are read as rule filters. A
/// filter that cannot be converted becomes an `ExtensionRef` filter without a reference,
/// which fails closed.
pub fn as_rule_filters(filters: &[HttpRouteRulesBackendRefsFilters]) -> Vec<HttpRouteRulesFilters> {
    filters
        .iter()
        .map(|f| {
            serde_json::to_value(f)
                .and_then(serde_json::from_value::<HttpRouteRulesFilters>)
                .unwrap_or(HttpRouteRulesFilters {
                    cors: None,
                    extension_ref: None,
                    external_auth: None,
                    request_header_modifier: None,
                    request_mirror: None,
                    request_redirect: None,
                    response_header_modifier: None,
                    r#type: FilterType::ExtensionRef,
                    url_rewrite: None,
                })
        })
        .collect()
}

/// Filters of one backendRef for one match, and its redirect if it has one.
fn backend_filters(
    filters: &[HttpRouteRulesBackendRefsFilters],
    mirrors: &BTreeMap<usize, ir::Mirror>,
    path: &ir::PathMatch,
) -> (Vec<ir::Filter>, Option<ir::Redirect>) {
    rule_filters(&as_rule_filters(filters), mirrors, path)
}

/// The IR routes of one HTTPRoute (every rule and match), with their precedence.
fn lower_route(r: &RouteNode) -> Vec<(Precedence, ir::Route)> {
    let mut out = Vec::new();
    let spec_rules = r.route.spec.rules.as_deref().unwrap_or_default();
    for rule in &r.rules {
        let spec = spec_rules.get(rule.index);
        let filters = spec.and_then(|s| s.filters.as_deref()).unwrap_or_default();
        let timeouts = spec.map(|s| timeouts(&s.timeouts)).unwrap_or_default();
        let retry = spec.and_then(|s| s.retry.as_ref()).map(|r| retry(r).0);
        for (mi, m) in rule.matches.iter().enumerate() {
            let Some(m) = m else { continue };
            let (filters, redirect) = rule_filters(filters, &rule.mirrors, &m.path);
            let action = match redirect {
                Some(r) => ir::Action::Redirect(r),
                None => {
                    let mut backends = rule.backends.clone();
                    let refs = spec
                        .and_then(|s| s.backend_refs.as_deref())
                        .unwrap_or_default();
                    let mut redirects = Vec::new();
                    for (bi, (backend, br)) in backends.iter_mut().zip(refs).enumerate() {
                        let (filters, redirect) = backend_filters(
                            br.filters.as_deref().unwrap_or_default(),
                            backend_mirrors(rule, bi),
                            &m.path,
                        );
                        backend.filters = filters;
                        if backend.weight > 0 {
                            redirects.push(redirect);
                        }
                    }
                    // A redirect in backend filters answers without a backend: it
                    // becomes the route's action when every picked backend redirects
                    // the same way; otherwise those backends fail closed.
                    match redirects.first() {
                        Some(Some(r)) if redirects.iter().all(|x| x.as_ref() == Some(r)) => {
                            ir::Action::Redirect(r.clone())
                        }
                        _ => {
                            for (backend, br) in backends.iter_mut().zip(refs) {
                                let redirects = br.filters.iter().flatten().any(|f| {
                                    f.r#type == gateway_api::apis::experimental::httproutes::HttpRouteRulesBackendRefsFiltersType::RequestRedirect
                                });
                                if redirects {
                                    backend.filters.push(internal_error(
                                        "a backend RequestRedirect needs every backend of the rule to redirect alike".into(),
                                    ));
                                }
                            }
                            ir::Action::Forward(ir::Forward { backends })
                        }
                    }
                }
            };
            let (path, method, headers, query_params) = Precedence::of(m);
            let prec = Precedence {
                path,
                method,
                headers,
                query_params,
                created: r.created,
                namespace: r.key.namespace.clone(),
                name: r.key.name.clone(),
                rule: rule.index,
                matcher: mi,
            };
            out.push((
                prec,
                ir::Route {
                    name: format!(
                        "httproute/{}/{}/rule/{}/match/{}",
                        r.key.namespace, r.key.name, rule.index, mi
                    ),
                    source: ir::Source {
                        kind: "HTTPRoute".into(),
                        namespace: r.key.namespace.clone(),
                        name: r.key.name.clone(),
                        rule: Some(rule.index as u32),
                        section: rule.name.clone(),
                        annotation: None,
                    },
                    matcher: m.clone(),
                    filters,
                    action,
                    timeouts,
                    retry: retry.clone(),
                },
            ));
        }
    }
    out
}

fn backend_mirrors(rule: &RuleNode, bi: usize) -> &BTreeMap<usize, ir::Mirror> {
    static EMPTY: BTreeMap<usize, ir::Mirror> = BTreeMap::new();
    rule.backend_mirrors.get(bi).unwrap_or(&EMPTY)
}

/// Sets the client certificate presented to TLS backends (a Gateway's
/// `spec.tls.backend.clientCertificateRef`) on every backend and mirror of `routes`.
fn set_client_certificate(routes: &mut [(Precedence, ir::Route)], cert: &str) {
    fn on_backend(b: &mut ir::Backend, cert: &str) {
        if let ir::BackendKind::Endpoints(ir::EndpointSet { tls: Some(t), .. }) = &mut b.kind {
            t.client_certificate = Some(cert.to_string());
        }
        for f in &mut b.filters {
            if let ir::Filter::Mirror(m) = f {
                on_backend(&mut m.backend, cert);
            }
        }
    }
    for (_, r) in routes {
        for f in &mut r.filters {
            if let ir::Filter::Mirror(m) = f {
                on_backend(&mut m.backend, cert);
            }
        }
        if let ir::Action::Forward(fw) = &mut r.action {
            for b in &mut fw.backends {
                on_backend(b, cert);
            }
        }
    }
}

type VhostMap = BTreeMap<Option<ir::HostMatch>, Vec<(Precedence, ir::Route)>>;

/// Lowers the valid parts of the Graph into the IR.
pub fn lower(g: &Graph) -> (ir::Config, Vec<Notice>) {
    let mut notices = Vec::new();
    // (gateway, listener index) → hostname → routes.
    let mut tables: BTreeMap<(ObjectKey, usize), VhostMap> = BTreeMap::new();
    let mut certificates = BTreeMap::new();
    for r in &g.routes {
        let routes = lower_route(r);
        for p in &r.parents {
            let Ok(att) = &p.attachment else { continue };
            let mut routes = routes.clone();
            if let Some(cert) = g
                .gateways
                .get(&p.gateway)
                .and_then(|gw| gw.backend_client_certificate.as_ref())
            {
                set_client_certificate(&mut routes, cert);
                if let Some(c) = g.certificates.get(cert) {
                    certificates.insert(cert.clone(), c.clone());
                }
            }
            for (li, hosts) in att {
                for h in hosts {
                    tables
                        .entry((p.gateway.clone(), *li))
                        .or_default()
                        .entry(h.clone())
                        .or_default()
                        .extend(routes.clone());
                }
            }
        }
    }
    let mut listeners: BTreeMap<(IpAddr, u16), ir::Listener> = BTreeMap::new();
    for (key, gw) in &g.gateways {
        let Some(address) = gw.address else { continue };
        if !gw.accepted {
            continue;
        }
        for (li, l) in gw.listeners.iter().enumerate() {
            if !l.programmable {
                continue;
            }
            let protocol = match l.protocol {
                ListenerProtocol::Http => ir::Protocol::Http,
                ListenerProtocol::Https => ir::Protocol::Https,
                ListenerProtocol::TlsPassthrough => ir::Protocol::TlsPassthrough,
                ListenerProtocol::Unsupported(_) => continue,
            };
            let mut virtual_hosts: Vec<ir::VirtualHost> = tables
                .remove(&(key.clone(), li))
                .unwrap_or_default()
                .into_iter()
                .map(|(hostname, mut routes)| {
                    routes.sort_by(|a, b| a.0.cmp(&b.0));
                    routes.dedup_by(|a, b| a.1.name == b.1.name);
                    ir::VirtualHost {
                        hostname,
                        routes: routes.into_iter().map(|(_, r)| r).collect(),
                    }
                })
                .collect();
            virtual_hosts.sort_by_key(|v| specificity(&v.hostname));
            let tls = (protocol == ir::Protocol::Https).then(|| {
                for name in &l.certificates {
                    if let Some(cert) = g.certificates.get(name) {
                        certificates.insert(name.clone(), cert.clone());
                    }
                }
                ir::ServerTls {
                    certificates: l.certificates.clone(),
                    client_validation: l.client_validation.clone(),
                }
            });
            let server = ir::Server {
                name: format!("gateway/{}/{}/{}", key.namespace, key.name, l.name),
                source: ir::Source {
                    kind: "Gateway".into(),
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    rule: None,
                    section: Some(l.name.clone()),
                    annotation: None,
                },
                hostname: l.hostname.clone(),
                tls,
                passthrough: crate::translate::graph::passthrough_routes(g, key, li),
                virtual_hosts,
            };
            let listener = listeners
                .entry((address, l.port))
                .or_insert_with(|| ir::Listener {
                    name: SocketAddr::new(address, l.port).to_string(),
                    address,
                    port: l.port,
                    protocol,
                    servers: Vec::new(),
                });
            if listener.protocol != protocol {
                notices.push(Notice::warning(
                    ObjectRef::new("Gateway", &key.namespace, &key.name),
                    Some(format!("spec.listeners[{li}]")),
                    format!(
                        "Listener {:?} shares {} with a listener of another protocol; it is not served.",
                        l.name, listener.name
                    ),
                ));
                continue;
            }
            listener.servers.push(server);
        }
    }
    let listeners = listeners
        .into_values()
        .map(|mut l| {
            l.servers.sort_by(|a, b| {
                specificity(&a.hostname)
                    .cmp(&specificity(&b.hostname))
                    .then(a.name.cmp(&b.name))
            });
            l
        })
        .collect();
    (
        ir::Config {
            generation: 0,
            listeners,
            certificates,
        },
        notices,
    )
}
