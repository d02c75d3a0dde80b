//! `ProxyHttp` for the gateway. Each phase is a few lines calling the router, the
//! filters and the upstream modules.

use crate::ctx::RequestCtx;
use crate::filters::cors::is_preflight;
use crate::filters::redirect::{location, RequestParts};
use crate::filters::rewrite::{rewrite_path, with_query};
use crate::metrics::Metrics;
use crate::router::{
    normalize_host, CompiledAction, CompiledBackendKind, CompiledFilter, HeaderMods, RequestView,
    Router,
};
use crate::tls::Sni;
use crate::upstream::{peer, pick_backend, pick_backend_excluding};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, OrErr, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;

const NOT_FOUND: &[u8] = b"no route matches this request\n";
const MISDIRECTED: &[u8] = b"misdirected request: the host does not match the TLS server name\n";
/// Endpoints tried per request when connecting fails.
const MAX_CONNECT_ATTEMPTS: usize = 3;
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The gateway's Pingora application: routes with the current [`Router`].
pub struct Gateway {
    router: Arc<ArcSwap<Router>>,
    metrics: Arc<Metrics>,
    connect_timeout: Duration,
    /// Connections of request mirrors (apart from the proxy's own pool).
    mirrors: Arc<Connector>,
}

impl Gateway {
    /// A gateway serving whatever `router` holds at each request's start;
    /// `connect_timeout` applies to routes without one.
    pub fn new(
        router: Arc<ArcSwap<Router>>,
        metrics: Arc<Metrics>,
        connect_timeout: Duration,
    ) -> Self {
        Gateway {
            router,
            metrics,
            connect_timeout,
            mirrors: Arc::new(Connector::new(None)),
        }
    }
}

/// The request's host as sent (`Host`, else the HTTP/2 `:authority`), with port.
fn raw_host(req: &RequestHeader) -> Option<&str> {
    match req.headers.get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri.authority().map(|a| a.as_str()),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.router.load_full())
    }

    /// Route selection; answers 404, redirects, direct responses and fail-closed
    /// statuses here; picks the backend.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let router = ctx.router.clone();
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        let Some(listener) = local.and_then(|a| router.listener_for(a)) else {
            // The listener was removed while this connection stayed open: answer, then
            // close, so the client reconnects to whatever is bound now.
            session.as_downstream_mut().set_keepalive(None);
            return respond(session, 404, Bytes::from_static(NOT_FOUND), None, &[], ctx).await;
        };
        ctx.listener = Some(listener);

        let req = session.req_header();
        let host = normalize_host(raw_host(req).unwrap_or(""));
        let view = RequestView {
            method: &req.method,
            host: &host,
            path: req.uri.path(),
            query: req.uri.query(),
            headers: &req.headers,
        };
        // On TLS, a Host that selects another server than the SNI did is misdirected
        // (the certificate was chosen for the SNI's server): 421.
        if let Some(sni) = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<Sni>())
        {
            let by_sni = router.server_for(listener, &sni.0);
            let by_host = router.server_for(listener, &host);
            if by_sni.is_some() && by_host.is_some() && by_sni != by_host {
                tracing::debug!(sni = %sni.0, host = %host, "misdirected request");
                return respond(
                    session,
                    421,
                    Bytes::from_static(MISDIRECTED),
                    None,
                    &[],
                    ctx,
                )
                .await;
            }
        }
        ctx.route = router.select(listener, &view);
        let Some(route_ref) = ctx.route else {
            tracing::debug!(host = %host, path = view.path, "no route");
            return respond(session, 404, Bytes::from_static(NOT_FOUND), None, &[], ctx).await;
        };
        let route = router.route(route_ref);
        if let Some(status) = internal_error(&route.filters) {
            return respond(session, status, Bytes::new(), None, &[&route.filters], ctx).await;
        }
        if let Some(cors) = route.filters.iter().find_map(|f| match f {
            CompiledFilter::Cors(p) => Some(p),
            _ => None,
        }) {
            let req = session.req_header();
            if is_preflight(&req.method, &req.headers) {
                ctx.extra_response_headers = cors.preflight(&req.headers);
                return respond(session, 200, Bytes::new(), None, &[], ctx).await;
            }
            ctx.extra_response_headers = cors.actual(&req.headers);
        }
        match &route.action {
            CompiledAction::Redirect(rd) => {
                let port = router.listener(listener).map_or(80, |l| l.addr.port());
                let loc = location(
                    rd,
                    &RequestParts {
                        scheme: if ctx.tls { "https" } else { "http" },
                        host: &host,
                        listener_port: port,
                        path: view.path,
                        query: view.query,
                    },
                );
                respond(
                    session,
                    rd.status,
                    Bytes::new(),
                    Some(&loc),
                    &[&route.filters],
                    ctx,
                )
                .await
            }
            CompiledAction::Respond { status, body } => {
                let (status, body) = (status.as_u16(), body.clone());
                respond(session, status, body, None, &[&route.filters], ctx).await
            }
            CompiledAction::Forward(fwd) => match pick_backend(fwd) {
                Ok(i) => {
                    ctx.backend = Some(i);
                    if route.retry.is_some() {
                        // Keep the request body so that a retry can send it again.
                        session.as_downstream_mut().enable_retry_buffering();
                    }
                    let backend = &fwd.backends[i];
                    if let Some(status) = internal_error(&backend.filters) {
                        let filters = [&route.filters, &backend.filters];
                        return respond(session, status, Bytes::new(), None, &filters, ctx).await;
                    }
                    Ok(false)
                }
                Err(e) => {
                    tracing::debug!(route = %route.name, error = ?e, "backend unavailable");
                    respond(
                        session,
                        e.status(),
                        Bytes::new(),
                        None,
                        &[&route.filters],
                        ctx,
                    )
                    .await
                }
            },
        }
    }

    /// Round robin across the picked backend's endpoints.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        if ctx.attempts > 1 {
            if let Some(policy) = ctx.route().and_then(|r| r.retry.as_ref()) {
                // A retry goes to a backend picked anew, after the backoff.
                if let Some(ms) = policy.backoff_ms {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                if let Some(b) = ctx.backend.filter(|b| *b < 64) {
                    ctx.failed_backends |= 1 << b;
                }
                if let Some(CompiledAction::Forward(fwd)) = ctx.route().map(|r| &r.action) {
                    match pick_backend_excluding(fwd, ctx.failed_backends) {
                        Ok(i) => ctx.backend = Some(i),
                        Err(e) => {
                            return Err(Error::explain(
                                ErrorType::HTTPStatus(e.status()),
                                "no backend for the retry",
                            ))
                        }
                    }
                }
            }
        }
        let (Some(route), Some((_, backend))) = (ctx.route(), ctx.backend()) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "no backend selected",
            ));
        };
        let CompiledBackendKind::Endpoints { protocol, tls, .. } = &backend.kind else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "invalid backend",
            ));
        };
        let Some(addr) = backend.kind.next_endpoint() else {
            return Err(Error::explain(ErrorType::HTTPStatus(503), "no endpoint"));
        };
        // The request timeout counts from the request's start: give the attempt what
        // is left of it.
        let mut timeouts = route.timeouts;
        if let Some(ms) = timeouts.request_ms {
            let spent = u64::try_from(ctx.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            if spent >= ms {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(504),
                    "request timeout",
                ));
            }
            timeouts.request_ms = Some(ms - spent);
        }
        // SNI towards HTTPS upstreams: the rewritten host if any, else the request's.
        let rewritten = route
            .filters
            .iter()
            .chain(backend.filters.iter())
            .rev()
            .find_map(|f| match f {
                CompiledFilter::UrlRewrite {
                    hostname: Some(h), ..
                } => h.to_str().ok(),
                _ => None,
            });
        let sni = match rewritten {
            Some(h) => normalize_host(h),
            None => normalize_host(raw_host(session.req_header()).unwrap_or("")),
        };
        let peer = peer(
            addr,
            *protocol,
            tls.as_deref(),
            &sni,
            &timeouts,
            self.connect_timeout,
        );
        Ok(Box::new(peer))
    }

    /// A failed connect is retried on the next endpoint (round robin), up to two more
    /// attempts when the backend has that many endpoints. Nothing was sent yet, so
    /// this is safe for any method.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let endpoints = match ctx.backend().map(|(_, b)| &b.kind) {
            Some(CompiledBackendKind::Endpoints { endpoints, .. }) => endpoints.len(),
            _ => 0,
        };
        let max_retries = endpoints.min(MAX_CONNECT_ATTEMPTS).saturating_sub(1);
        let policy_allows = ctx
            .route()
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|p| p.on_connection_error)
            && ctx.retries_left();
        if policy_allows || ctx.connect_retries < max_retries {
            ctx.connect_retries += 1;
            tracing::debug!(peer = %peer, error = %e, "connect failed; trying the next endpoint");
            e.set_retry(true);
        }
        e
    }

    /// Errors after connecting (reset, closed before an answer, attempt timeout):
    /// retried when the route's policy says so and the request body can be replayed;
    /// otherwise Pingora's rule (idempotent requests on reused connections).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let truncated = session.as_ref().retry_buffer_truncated();
        let policy = ctx.route().and_then(|r| r.retry.as_ref());
        if policy.is_some_and(|p| p.on_connection_error) && ctx.retries_left() && !truncated {
            e.set_retry(true);
        } else if !session.req_header().method.is_idempotent() || truncated {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// An answer whose status the route's retry policy lists is dropped and the
    /// request sent again, while attempts remain.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        let retry = ctx
            .route()
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|p| p.codes.contains(&status));
        if retry && ctx.retries_left() && !session.as_ref().retry_buffer_truncated() {
            let mut e = Error::explain(ErrorType::HTTPStatus(status), "retrying on status");
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    /// X-Forwarded-*, request header filters, URL rewrite.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // HTTP/2 clients send :authority, not Host: give HTTP/1 upstreams a Host and
        // send the target in origin form.
        if up.headers.get(header::HOST).is_none() {
            if let Some(authority) = up.uri.authority().map(|a| a.as_str().to_string()) {
                up.insert_header(header::HOST, authority)?;
            }
        }
        if up.uri.authority().is_some() {
            if let Some(pq) = up.uri.path_and_query().cloned() {
                up.set_uri(http::Uri::from(pq));
            }
        }

        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let xff = match joined(&up.headers, &X_FORWARDED_FOR) {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.to_string(),
            };
            up.insert_header(X_FORWARDED_FOR.clone(), xff)?;
        }
        up.insert_header(
            X_FORWARDED_PROTO.clone(),
            if ctx.tls { "https" } else { "http" },
        )?;
        if let Some(host) = raw_host(session.req_header()) {
            let host = HeaderValue::from_str(host).or_err(ErrorType::InvalidHTTPHeader, "host")?;
            up.insert_header(X_FORWARDED_HOST.clone(), host)?;
        }

        let (Some(route), Some((_, backend))) = (ctx.route(), ctx.backend()) else {
            return Ok(());
        };
        for f in route.filters.iter().chain(backend.filters.iter()) {
            match f {
                CompiledFilter::RequestHeaders(m) => apply_mods(up, m)?,
                CompiledFilter::UrlRewrite { hostname, path } => {
                    if let Some(h) = hostname {
                        up.insert_header(header::HOST, h.clone())?;
                    }
                    if let Some(p) = path {
                        if let Some(new) = rewrite_path(p, up.uri.path()) {
                            let target = with_query(&new, up.uri.query());
                            let uri = http::Uri::try_from(target)
                                .or_err(ErrorType::HTTPStatus(500), "rewritten path is invalid")?;
                            up.set_uri(uri);
                        }
                    }
                }
                CompiledFilter::Mirror(_)
                | CompiledFilter::ResponseHeaders(_)
                | CompiledFilter::Cors(_)
                | CompiledFilter::InternalError(_) => {}
            }
        }
        // Mirrors see the request as it goes upstream.
        for f in route.filters.iter().chain(backend.filters.iter()) {
            if let CompiledFilter::Mirror(target) = f {
                crate::mirror::maybe_fire(&self.mirrors, target, up, self.connect_timeout);
            }
        }
        Ok(())
    }

    /// Response header filters.
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        for (n, v) in &ctx.extra_response_headers {
            resp.append_header(n.clone(), v.clone())?;
        }
        let Some(route) = ctx.route() else {
            return Ok(());
        };
        let backend = ctx
            .backend()
            .map(|(_, b)| b.filters.as_slice())
            .unwrap_or(&[]);
        for f in route.filters.iter().chain(backend.iter()) {
            if let CompiledFilter::ResponseHeaders(m) = f {
                apply_mods(resp, m)?;
            }
        }
        Ok(())
    }

    /// Upstream read/write timeouts answer 504 (Gateway API request timeouts), an
    /// unreachable upstream 503, other upstream failures 502; the rest as Pingora.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        use ErrorType::*;
        let code = match (e.etype(), e.esource()) {
            (HTTPStatus(code), _) => *code,
            (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
            // Could not reach the upstream, or it went away before answering (the last
            // retry included): unavailable, as Envoy answers.
            (
                ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
                | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError
                | SocketError | ConnectionClosed | ReadError | WriteError,
                ErrorSource::Upstream,
            ) => 503,
            (_, ErrorSource::Upstream) => 502,
            (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => 0,
            (_, ErrorSource::Downstream) => 400,
            (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
        };
        if code > 0 {
            if let Err(e) = session.respond_error(code).await {
                tracing::debug!(error = %e, "failed to send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Metrics by route and status, latency, a debug line.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        match ctx.route() {
            Some(route) => route.stats.record(status, elapsed),
            None => self.metrics.unmatched().record(status, elapsed),
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let route = ctx.route().map(|r| r.name.clone());
            let backend = ctx.backend().map(|(_, b)| b.name.clone());
            tracing::debug!(
                route = route.as_deref().unwrap_or(""),
                backend = backend.as_deref().unwrap_or(""),
                status,
                elapsed_us = elapsed.as_micros() as u64,
                error = e.map(|e| e.to_string()),
                "{}",
                session.request_summary()
            );
        }
    }
}

/// The first `InternalError` status among `filters`.
fn internal_error(filters: &[CompiledFilter]) -> Option<u16> {
    filters.iter().find_map(|f| match f {
        CompiledFilter::InternalError(s) => Some(*s),
        _ => None,
    })
}

/// Values of a repeated header joined with `, `.
fn joined(headers: &http::HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let v = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(&v);
            }
            None => out = Some(v.into_owned()),
        }
    }
    out
}

/// Answers from the proxy itself, keeping the connection alive.
async fn respond(
    session: &mut Session,
    status: u16,
    body: Bytes,
    location: Option<&str>,
    filters: &[&Vec<CompiledFilter>],
    ctx: &RequestCtx,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    if !body.is_empty() {
        resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    }
    if let Some(loc) = location {
        let loc = HeaderValue::from_str(loc).or_err(ErrorType::HTTPStatus(500), "bad location")?;
        resp.insert_header(header::LOCATION, loc)?;
    }
    for (n, v) in &ctx.extra_response_headers {
        resp.append_header(n.clone(), v.clone())?;
    }
    for f in filters.iter().flat_map(|f| f.iter()) {
        if let CompiledFilter::ResponseHeaders(m) = f {
            apply_mods(&mut resp, m)?;
        }
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    let end = body.is_empty() || head_only;
    session.write_response_header(Box::new(resp), end).await?;
    if !end {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

/// Header edits on Pingora request and response headers (which keep a case map in
/// sync, so edits must go through their methods).
trait HeaderEdit {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()>;
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

impl HeaderEdit for RequestHeader {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.insert_header(name.clone(), value.clone())
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.append_header(name.clone(), value.clone()).map(|_| ())
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl HeaderEdit for ResponseHeader {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.insert_header(name.clone(), value.clone())
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.append_header(name.clone(), value.clone()).map(|_| ())
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

/// Set, then add, then remove.
fn apply_mods(h: &mut impl HeaderEdit, m: &HeaderMods) -> Result<()> {
    for (n, v) in &m.set {
        h.set(n, v)?;
    }
    for (n, v) in &m.add {
        h.add(n, v)?;
    }
    for n in &m.remove {
        h.remove(n);
    }
    Ok(())
}
