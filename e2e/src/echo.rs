//! In-process echo backend, shaped like the conformance echo server (upstream's
//! echo-basic): every request gets 200 and a JSON body describing what the backend saw.
//!
//! ```json
//! {"path": "/a?b=c", "host": "...", "method": "GET", "proto": "HTTP/1.1",
//!  "headers": {"X-Test": ["v1"]}, "namespace": "ns", "pod": "pod-0",
//!  "service": "svc", "body_bytes": 0}
//! ```
//!
//! `/status/NNN` answers NNN instead (204 and 304 without a body); `/fail-once?key=K`
//! answers 500 the first time a key is seen and echoes afterwards; `/delay/MS` and a
//! `delay=DURATION` query parameter (`1500ms`, `2s`) answer after that long. The server speaks
//! HTTP/1.1 with keep-alive on `127.0.0.1:<ephemeral port>` and counts requests and
//! accepted connections. It stops when dropped.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the echo server answers: the request as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoBody {
    /// Request target as received, query included.
    pub path: String,
    /// The Host header (empty when none).
    pub host: String,
    pub method: String,
    pub proto: String,
    /// Request headers but Host, names canonicalised as Go does (`X-Forwarded-For`).
    pub headers: BTreeMap<String, Vec<String>>,
    pub namespace: String,
    pub pod: String,
    pub service: String,
    pub body_bytes: u64,
}

impl EchoBody {
    /// The values of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[String]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    connections: AtomicU64,
    /// Wakes the accept loop to close every open connection.
    close_all: tokio::sync::Notify,
    /// Keys `/fail-once` has already failed for.
    failed_keys: tokio::sync::Mutex<std::collections::HashSet<String>>,
}

/// A running echo server. Dropping it stops accepting and closes its connections.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    pod: String,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Starts an echo server on `127.0.0.1:0` that names itself `pod` of `service` in
    /// namespace `namespace`. Must be called inside a tokio runtime.
    pub async fn start(namespace: &str, service: &str, pod: &str) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an echo server on 127.0.0.1:0");
        let addr = listener.local_addr().expect("echo server local address");
        let counters = Arc::new(Counters::default());
        let ident = Arc::new(Ident {
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            pod: pod.to_owned(),
        });
        let task = tokio::spawn(accept_loop(listener, ident, counters.clone()));
        EchoServer {
            addr,
            pod: pod.to_owned(),
            counters,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Requests answered (or being answered) so far.
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Closes every open connection (as a backend's idle timeout or a restart does);
    /// the server keeps accepting new ones.
    pub fn close_connections(&self) {
        self.counters.close_all.notify_one();
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Ident {
    namespace: String,
    service: String,
    pod: String,
}

async fn accept_loop(listener: TcpListener, ident: Arc<Ident>, counters: Arc<Counters>) {
    // Connection tasks live in a JoinSet so that aborting the accept loop closes them.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = counters.close_all.notified() => {
                conns.abort_all();
                continue;
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let ident = ident.clone();
        let counters = counters.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ident = ident.clone();
                let counters = counters.clone();
                async move {
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, std::convert::Infallible>(answer(req, &ident, &counters).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    ident: &Ident,
    counters: &Counters,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len() as u64)
        .unwrap_or(0);
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.to_string());

    if let Some(delay) = requested_delay(&path) {
        tokio::time::sleep(delay).await;
    }

    if let Some(key) = fail_once_key(&path) {
        let first = counters.failed_keys.lock().await.insert(key.to_owned());
        if first {
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Full::new(Bytes::from_static(b"fail-once\n")))
                .expect("valid response");
        }
    }

    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|rest| rest.split(['?', '/']).next())
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| (200..=599).contains(&c.as_u16()))
    {
        let body = if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED {
            Bytes::new()
        } else {
            Bytes::from(format!("{}\n", code.as_u16()))
        };
        return Response::builder()
            .status(code)
            .body(Full::new(body))
            .expect("valid response");
    }

    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut host = String::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::HOST {
            host = value;
            continue;
        }
        headers
            .entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(value);
    }
    if host.is_empty() {
        host = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
    }
    let echo = EchoBody {
        path,
        host,
        method: parts.method.to_string(),
        proto: format!("{:?}", parts.version),
        headers,
        namespace: ident.namespace.clone(),
        pod: ident.pod.clone(),
        service: ident.service.clone(),
        body_bytes,
    };
    let json = serde_json::to_vec(&echo).expect("echo body serializes");
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json)))
        .expect("valid response")
}

/// The key of a `/fail-once?key=K` request (`""` when there is no `key`).
fn fail_once_key(path: &str) -> Option<&str> {
    let (p, query) = path.split_once('?').unwrap_or((path, ""));
    if p != "/fail-once" {
        return None;
    }
    Some(
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .unwrap_or(""),
    )
}

/// The delay a request asks for: `/delay/MS`, or `delay=` with a `ms` or `s` suffix.
fn requested_delay(path: &str) -> Option<Duration> {
    if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.split(['?', '/']).next()?;
        return ms.parse().ok().map(Duration::from_millis);
    }
    let (_, query) = path.split_once('?')?;
    let value = query.split('&').find_map(|kv| kv.strip_prefix("delay="))?;
    if let Some(ms) = value.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else if let Some(s) = value.strip_suffix('s') {
        s.parse::<f64>().ok().map(Duration::from_secs_f64)
    } else {
        None
    }
}

/// `x-forwarded-for` → `X-Forwarded-For`, as Go's `http.CanonicalHeaderKey`.
fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the Go-style header name canonicalisation the conformance echo uses.
    #[test]
    fn canonical_names() {
        assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_name("X-TEST"), "X-Test");
        assert_eq!(canonical_header_name("accept"), "Accept");
    }

    /// Pins the `/fail-once` key syntax.
    #[test]
    fn fail_once_keys() {
        assert_eq!(fail_once_key("/fail-once?key=a"), Some("a"));
        assert_eq!(fail_once_key("/fail-once?x=1&key=b"), Some("b"));
        assert_eq!(fail_once_key("/fail-once"), Some(""));
        assert_eq!(fail_once_key("/fail-onces?key=a"), None);
        assert_eq!(fail_once_key("/x?key=a"), None);
    }

    /// Pins the delay syntaxes the echo server understands.
    #[test]
    fn delays() {
        assert_eq!(
            requested_delay("/delay/250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            requested_delay("/x?delay=300ms"),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            requested_delay("/x?a=b&delay=1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(requested_delay("/x?delay=oops"), None);
        assert_eq!(requested_delay("/x"), None);
    }
}
