//! Shared helpers of the integration tests: an in-process echo backend (HTTP/1.1 and
//! h2c), a small HTTP client, IR builders and condition waits.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_ir as ir;
use sluice_proxy::{ProxyHandle, ProxyOptions};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const WAIT: Duration = Duration::from_secs(10);

// === echo backend ===

/// An HTTP/1.1 backend answering with its name, the request line and headers.
pub struct Echo {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

pub async fn echo(name: &'static str) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    r.fetch_add(1, Ordering::SeqCst);
                    echo_answer(name, req)
                });
                // HTTP/1.1, or HTTP/2 with prior knowledge.
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Echo {
        addr,
        connections,
        requests,
    }
}

/// `server`, `version`, `method`, `target` lines, then `h <name>=<value>` per header.
/// `/sleep/<ms>` answers after that delay.
pub async fn echo_answer(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(ms) = req.uri().path().strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut body = format!(
        "server: {name}\nversion: {:?}\nmethod: {}\ntarget: {}\n",
        req.version(),
        req.method(),
        req.uri().path_and_query().map_or("", |p| p.as_str())
    );
    for (k, v) in req.headers() {
        body.push_str(&format!("h {}={}\n", k, v.to_str().unwrap_or("?")));
    }
    Ok(Response::builder()
        .header("x-echo-server", name)
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}

/// A raw backend for upgrades: answers `101 Switching Protocols` to the first request,
/// then echoes bytes back.
pub async fn upgrade_echo() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

// === client ===

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    /// The value of header `name` as the backend saw it.
    pub fn seen(&self, name: &str) -> Option<&str> {
        let prefix = format!("h {name}=");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }
    pub fn version(&self) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix("version: "))
    }
    pub fn server(&self) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix("server: "))
    }
    pub fn target(&self) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix("target: "))
    }
}

pub async fn send(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    try_send(addr, host, path, headers).await.expect("request")
}

pub async fn send_method(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    try_send_method(addr, method, host, path, headers)
        .await
        .expect("request")
}

pub async fn try_send(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    try_send_method(addr, "GET", host, path, headers).await
}

pub async fn try_send_method(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp =
        tokio::time::timeout(WAIT, sender.send_request(req.body(Empty::<Bytes>::new())?)).await??;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Polls `f` until it returns true, failing after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === IR builders ===

pub fn src() -> ir::Source {
    ir::Source::object("HTTPRoute", "default", "test")
}

/// A free TCP port on 127.0.0.1, never the same twice in this process (the kernel
/// may hand out a just-released port again).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashSet<u16>>> =
        std::sync::OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        if given.lock().insert(port) {
            return port;
        }
    }
}

pub fn backend(name: &str, weight: u32, addrs: &[SocketAddr]) -> ir::Backend {
    ir::Backend {
        name: name.into(),
        source: src(),
        weight,
        filters: vec![],
        kind: ir::BackendKind::Endpoints(ir::EndpointSet {
            protocol: ir::UpstreamProtocol::Http1,
            endpoints: addrs
                .iter()
                .map(|a| ir::Endpoint {
                    address: a.ip(),
                    port: a.port(),
                })
                .collect(),
            tls: None,
        }),
    }
}

pub fn route(name: &str, prefix: &str, action: ir::Action) -> ir::Route {
    ir::Route {
        name: name.into(),
        source: src(),
        matcher: ir::RouteMatch {
            path: ir::PathMatch::Prefix(prefix.into()),
            ..Default::default()
        },
        filters: vec![],
        action,
        timeouts: Default::default(),
        retry: None,
    }
}

pub fn forward(backends: Vec<ir::Backend>) -> ir::Action {
    ir::Action::Forward(ir::Forward { backends })
}

pub fn listener(port: u16, routes: Vec<ir::Route>) -> ir::Listener {
    ir::Listener {
        name: format!("127.0.0.1:{port}"),
        address: "127.0.0.1".parse().expect("ip"),
        port,
        protocol: ir::Protocol::Http,
        servers: vec![ir::Server {
            name: "gw".into(),
            source: ir::Source::object("Gateway", "default", "gw"),
            hostname: None,
            tls: None,
            passthrough: vec![],
            virtual_hosts: vec![ir::VirtualHost {
                hostname: None,
                routes,
            }],
        }],
    }
}

pub fn config(generation: u64, listeners: Vec<ir::Listener>) -> Arc<ir::Config> {
    Arc::new(ir::Config {
        generation,
        listeners,
        certificates: Default::default(),
    })
}

pub async fn start(cfg: Arc<ir::Config>) -> (watch::Sender<Arc<ir::Config>>, ProxyHandle) {
    let generation = cfg.generation;
    let (tx, rx) = watch::channel(cfg);
    let handle = sluice_proxy::start(
        rx,
        ProxyOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .expect("start proxy");
    wait_applied(&handle, generation).await;
    (tx, handle)
}

pub async fn wait_applied(handle: &ProxyHandle, generation: u64) -> ir::Applied {
    let mut applied = handle.applied.clone();
    let a = tokio::time::timeout(WAIT, applied.wait_for(|a| a.generation == generation))
        .await
        .expect("config applied in time")
        .expect("proxy alive");
    a.clone()
}
