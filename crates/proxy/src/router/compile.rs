//! [`ir::Config`] → [`Router`]. Runs off the hot path; everything a request needs is
//! parsed here (header names, regexes, methods, socket addresses).
//!
//! Whatever cannot be compiled fails closed and is reported: a bad match makes its
//! route never match, a bad filter makes its route answer 500.

use super::*;
use crate::metrics::Metrics;
use regex::RegexBuilder;
use std::fmt;

/// Largest compiled size of one regex (bytes), so a hostile pattern cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Something in the IR the proxy could not compile; the element fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Route (or listener) name.
    pub route: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.route, self.message)
    }
}

impl std::error::Error for CompileError {}

/// What compiling needs besides the element at hand.
struct Cx<'a> {
    metrics: &'a Metrics,
    certificates: &'a std::collections::BTreeMap<String, ir::Certificate>,
}

/// Compiles `config`. Route counters come from `metrics`, so they survive reloads.
pub fn compile(config: &ir::Config, metrics: &Metrics) -> (Router, Vec<CompileError>) {
    let mut errors = Vec::new();
    let cx = Cx {
        metrics,
        certificates: &config.certificates,
    };
    let mut router = Router {
        generation: config.generation,
        ..Router::default()
    };
    for l in &config.listeners {
        let addr = SocketAddr::new(l.address, l.port);
        let mut table = ListenerTable {
            name: l.name.clone(),
            addr,
            protocol: l.protocol,
            server_index: HostIndex::default(),
            servers: Vec::with_capacity(l.servers.len()),
        };
        for (i, s) in l.servers.iter().enumerate() {
            table.server_index.insert(s.hostname.as_ref(), i);
            table.servers.push(compile_server(s, &cx, &mut errors));
        }
        if router.by_addr.contains_key(&addr) {
            errors.push(CompileError {
                route: l.name.clone(),
                message: format!("duplicate listener address {addr}; ignored"),
            });
            continue;
        }
        router.by_addr.insert(addr, router.listeners.len());
        router.listeners.push(table);
    }
    (router, errors)
}

fn compile_server(s: &ir::Server, cx: &Cx<'_>, errors: &mut Vec<CompileError>) -> ServerTable {
    // The IR orders virtual hosts by specificity; a stable sort keeps that order and
    // makes the router correct even for hand-written IR.
    let mut order: Vec<usize> = (0..s.virtual_hosts.len()).collect();
    order.sort_by_key(|&i| specificity(s.virtual_hosts[i].hostname.as_ref()));
    let mut table = ServerTable {
        name: s.name.clone(),
        vhost_index: HostIndex::default(),
        vhosts: Vec::with_capacity(order.len()),
    };
    for i in order {
        let v = &s.virtual_hosts[i];
        table
            .vhost_index
            .insert(v.hostname.as_ref(), table.vhosts.len());
        table.vhosts.push(VhostTable {
            routes: v
                .routes
                .iter()
                .map(|r| compile_route(r, cx, errors))
                .collect(),
        });
    }
    table
}

/// Sort key: exact names, then wildcards by decreasing suffix length, then no host.
fn specificity(h: Option<&ir::HostMatch>) -> (u8, std::cmp::Reverse<usize>) {
    match h {
        Some(ir::HostMatch::Exact(_)) => (0, std::cmp::Reverse(0)),
        Some(ir::HostMatch::Wildcard(s)) => (1, std::cmp::Reverse(s.len())),
        None => (2, std::cmp::Reverse(0)),
    }
}

fn compile_route(r: &ir::Route, cx: &Cx<'_>, errors: &mut Vec<CompileError>) -> CompiledRoute {
    let mut err = |message: String| {
        tracing::warn!(route = %r.name, "{message}");
        errors.push(CompileError {
            route: r.name.clone(),
            message,
        });
    };
    let matcher = compile_match(&r.matcher, &mut err);
    let filters = r
        .filters
        .iter()
        .map(|f| compile_filter(f, cx, &mut err))
        .collect();
    let action = match &r.action {
        ir::Action::Forward(fwd) => {
            let backends: Vec<CompiledBackend> = fwd
                .backends
                .iter()
                .map(|b| compile_backend(b, cx, &mut err))
                .collect();
            let total_weight = backends.iter().map(|b| u64::from(b.weight)).sum();
            CompiledAction::Forward(ForwardAction {
                backends,
                total_weight,
            })
        }
        ir::Action::Redirect(rd) => CompiledAction::Redirect(rd.clone()),
        ir::Action::Respond(d) => {
            let status = StatusCode::from_u16(d.status).unwrap_or_else(|_| {
                err(format!("invalid status {}; answering 500", d.status));
                StatusCode::INTERNAL_SERVER_ERROR
            });
            CompiledAction::Respond {
                status,
                body: d.body.clone().map(Bytes::from).unwrap_or_default(),
            }
        }
    };
    CompiledRoute {
        name: r.name.as_str().into(),
        matcher,
        filters,
        action,
        timeouts: r.timeouts,
        retry: r.retry.clone().filter(|p| p.attempts > 0),
        stats: cx.metrics.route(&r.name),
    }
}

fn compile_match(m: &ir::RouteMatch, err: &mut impl FnMut(String)) -> CompiledMatch {
    let mut never = false;
    let mut path = match &m.path {
        ir::PathMatch::Exact(p) => PathMatcher::Exact(p.as_str().into()),
        ir::PathMatch::Prefix(p) => PathMatcher::Prefix(p.trim_end_matches('/').into()),
        ir::PathMatch::Regex(re) => match regex(re) {
            Ok(re) => PathMatcher::Regex(re),
            Err(e) => {
                err(format!(
                    "path regex {re:?} does not compile ({e}); route disabled"
                ));
                PathMatcher::Never
            }
        },
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for h in &m.headers {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            err(format!("invalid header name {:?}; route disabled", h.name));
            never = true;
            continue;
        };
        match value_matcher(&h.value) {
            Ok(v) => headers.push((name, v)),
            Err(e) => {
                err(format!(
                    "header {:?} regex does not compile ({e}); route disabled",
                    h.name
                ));
                never = true;
            }
        }
    }
    let mut query = Vec::with_capacity(m.query_params.len());
    for q in &m.query_params {
        match value_matcher(&q.value) {
            Ok(v) => query.push((q.name.as_str().into(), v)),
            Err(e) => {
                err(format!(
                    "query param {:?} regex does not compile ({e}); route disabled",
                    q.name
                ));
                never = true;
            }
        }
    }
    let method = match &m.method {
        None => None,
        Some(s) => match Method::from_bytes(s.to_ascii_uppercase().as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                err(format!("invalid method {s:?}; route disabled"));
                never = true;
                None
            }
        },
    };
    if never {
        path = PathMatcher::Never;
    }
    CompiledMatch {
        path,
        headers: headers.into(),
        query: query.into(),
        method,
    }
}

fn regex(re: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(re).size_limit(REGEX_SIZE_LIMIT).build()
}

fn value_matcher(m: &ir::StringMatch) -> Result<ValueMatcher, regex::Error> {
    Ok(match m {
        ir::StringMatch::Exact(v) => ValueMatcher::Exact(v.as_str().into()),
        ir::StringMatch::Regex(re) => ValueMatcher::Regex(regex(re)?),
    })
}

fn compile_filter(f: &ir::Filter, cx: &Cx<'_>, err: &mut impl FnMut(String)) -> CompiledFilter {
    let fail = |err: &mut dyn FnMut(String), what: String| {
        err(format!("{what}; the route answers 500"));
        CompiledFilter::InternalError(500)
    };
    match f {
        ir::Filter::RequestHeaders(m) => match header_mods(m) {
            Ok(m) => CompiledFilter::RequestHeaders(m),
            Err(e) => fail(err, e),
        },
        ir::Filter::ResponseHeaders(m) => match header_mods(m) {
            Ok(m) => CompiledFilter::ResponseHeaders(m),
            Err(e) => fail(err, e),
        },
        ir::Filter::UrlRewrite(rw) => {
            let hostname = match &rw.hostname {
                None => None,
                Some(h) => match HeaderValue::from_str(h) {
                    Ok(v) => Some(v),
                    Err(_) => return fail(err, format!("invalid rewrite hostname {h:?}")),
                },
            };
            CompiledFilter::UrlRewrite {
                hostname,
                path: rw.path.clone(),
            }
        }
        ir::Filter::Cors(c) => match crate::filters::cors::CorsPolicy::compile(c) {
            Ok(p) => CompiledFilter::Cors(Arc::new(p)),
            Err(e) => fail(err, e),
        },
        ir::Filter::Mirror(m) => {
            if m.denominator == 0 {
                return fail(err, "mirror share with denominator 0".into());
            }
            let backend = compile_backend(&m.backend, cx, err);
            CompiledFilter::Mirror(Arc::new(MirrorTarget {
                backend,
                numerator: m.numerator.min(m.denominator),
                denominator: m.denominator,
            }))
        }
        ir::Filter::InternalError { status, reason } => {
            tracing::debug!(%reason, "route fails closed");
            CompiledFilter::InternalError(if (100..600).contains(status) {
                *status
            } else {
                500
            })
        }
    }
}

fn header_mods(m: &ir::HeaderModifier) -> Result<HeaderMods, String> {
    let pair = |h: &ir::HeaderValue| -> Result<(HeaderName, HeaderValue), String> {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", h.name))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("invalid value for header {:?}", h.name))?;
        Ok((name, value))
    };
    Ok(HeaderMods {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("invalid header name {n:?}"))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn compile_backend(b: &ir::Backend, cx: &Cx<'_>, err: &mut impl FnMut(String)) -> CompiledBackend {
    let kind = match &b.kind {
        ir::BackendKind::Endpoints(set) => {
            let tls = match &set.tls {
                None => Ok(None),
                Some(t) => crate::upstream::UpstreamTlsConf::compile(t, cx.certificates)
                    .map(|c| Some(Arc::new(c))),
            };
            match tls {
                Ok(tls) => CompiledBackendKind::Endpoints {
                    protocol: set.protocol,
                    endpoints: set
                        .endpoints
                        .iter()
                        .map(|e| SocketAddr::new(e.address, e.port))
                        .collect(),
                    next: AtomicUsize::new(0),
                    tls,
                },
                Err(e) => {
                    let reason = format!("backend {}: upstream TLS: {e}", b.name);
                    err(format!("{reason}; its share of traffic answers 500"));
                    CompiledBackendKind::Invalid {
                        status: 500,
                        reason,
                    }
                }
            }
        }
        ir::BackendKind::Invalid { reason, status } => CompiledBackendKind::Invalid {
            status: if (100..600).contains(status) {
                *status
            } else {
                500
            },
            reason: reason.clone(),
        },
    };
    CompiledBackend {
        name: b.name.as_str().into(),
        weight: b.weight,
        filters: b
            .filters
            .iter()
            .map(|f| match f {
                ir::Filter::Cors(_) => {
                    err(format!(
                        "backend {}: CORS applies to routes, not backends; its share of traffic answers 500",
                        b.name
                    ));
                    CompiledFilter::InternalError(500)
                }
                f => compile_filter(f, cx, err),
            })
            .collect(),
        kind,
    }
}
