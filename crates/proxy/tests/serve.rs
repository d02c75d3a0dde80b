//! In-process integration tests: real sockets, an in-process echo backend, the proxy
//! started with `sluice_proxy::start` and configs published on a watch channel.

mod common;

use common::*;
use sluice_ir as ir;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::net::TcpStream;

// === tests ===

/// Routing, forwarding headers, 404, fail-closed statuses, redirects, direct answers,
/// filters and metrics, through real sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_forwards() {
    let a = echo("a").await;
    let b = echo("b").await;
    let port = free_port();
    let mut rewrite = route("rewrite", "/old", forward(vec![backend("a", 1, &[a.addr])]));
    rewrite.filters = vec![
        ir::Filter::UrlRewrite(ir::UrlRewrite {
            hostname: Some("rewritten.example".into()),
            path: Some(ir::PathRewrite::ReplacePrefixMatch {
                prefix: "/old".into(),
                replacement: "/new".into(),
            }),
        }),
        ir::Filter::RequestHeaders(ir::HeaderModifier {
            set: vec![ir::HeaderValue {
                name: "x-set".into(),
                value: "1".into(),
            }],
            add: vec![],
            remove: vec!["x-drop".into()],
        }),
        ir::Filter::ResponseHeaders(ir::HeaderModifier {
            add: vec![ir::HeaderValue {
                name: "x-resp".into(),
                value: "yes".into(),
            }],
            ..Default::default()
        }),
    ];
    let mut failing_filter = route(
        "failing-filter",
        "/filter-error",
        forward(vec![backend("a", 1, &[a.addr])]),
    );
    failing_filter.filters = vec![ir::Filter::InternalError {
        reason: "test".into(),
        status: 500,
    }];
    let routes = vec![
        route("to-a", "/a", forward(vec![backend("a", 1, &[a.addr])])),
        route("to-b", "/b", forward(vec![backend("b", 1, &[b.addr])])),
        rewrite,
        failing_filter,
        route(
            "invalid",
            "/invalid",
            forward(vec![ir::Backend {
                name: "default/missing:80".into(),
                source: src(),
                weight: 1,
                filters: vec![],
                kind: ir::BackendKind::Invalid {
                    reason: "Service not found".into(),
                    status: 500,
                },
            }]),
        ),
        route(
            "no-endpoints",
            "/empty",
            forward(vec![backend("empty", 1, &[])]),
        ),
        route("no-backends", "/none", forward(vec![])),
        route(
            "zero-weight",
            "/zero",
            forward(vec![backend("a", 0, &[a.addr])]),
        ),
        route(
            "redirect",
            "/redirect",
            ir::Action::Redirect(ir::Redirect {
                scheme: Some("https".into()),
                hostname: None,
                port: None,
                path: None,
                status: 301,
            }),
        ),
        route(
            "respond",
            "/respond",
            ir::Action::Respond(ir::DirectResponse {
                status: 418,
                body: Some("teapot".into()),
            }),
        ),
    ];
    let (_tx, handle) = start(config(1, vec![listener(port, routes)])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();

    let r = send(
        proxy,
        "www.example.com:8080",
        "/a/x?q=1",
        &[("x-forwarded-for", "10.0.0.1")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.server(), Some("a"));
    assert_eq!(r.target(), Some("/a/x?q=1"));
    assert_eq!(
        r.seen("host"),
        Some("www.example.com:8080"),
        "Host kept as sent"
    );
    assert_eq!(r.seen("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(r.seen("x-forwarded-proto"), Some("http"));
    assert_eq!(r.seen("x-forwarded-host"), Some("www.example.com:8080"));
    assert_eq!(
        r.headers.get("x-echo-server").map(|v| v.as_bytes()),
        Some(&b"a"[..])
    );

    let r = send(proxy, "www.example.com", "/b", &[]).await;
    assert_eq!((r.status, r.server()), (200, Some("b")));
    assert_eq!(r.seen("x-forwarded-for"), Some("127.0.0.1"));

    let r = send(
        proxy,
        "www.example.com",
        "/old/path?k=v",
        &[("x-drop", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.target(), Some("/new/path?k=v"));
    assert_eq!(r.seen("host"), Some("rewritten.example"));
    assert_eq!(r.seen("x-set"), Some("1"));
    assert_eq!(r.seen("x-drop"), None);
    assert_eq!(
        r.headers.get("x-resp").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );

    let r = send(proxy, "www.example.com", "/nothing-here", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(send(proxy, "x", "/invalid", &[]).await.status, 500);
    assert_eq!(send(proxy, "x", "/filter-error", &[]).await.status, 500);
    assert_eq!(send(proxy, "x", "/empty", &[]).await.status, 503);
    assert_eq!(send(proxy, "x", "/none", &[]).await.status, 500);
    assert_eq!(send(proxy, "x", "/zero", &[]).await.status, 500);

    let r = send(proxy, "www.example.com:8080", "/redirect/p?x=1", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("https://www.example.com/redirect/p?x=1")
    );
    let r = send(proxy, "x", "/respond", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (418, "teapot"));

    let mut metrics = String::new();
    handle.metrics.render_prometheus(&mut metrics);
    assert!(
        metrics.contains("sluice_proxy_requests_total{route=\"to-a\",code=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_proxy_requests_total{route=\"\",code=\"404\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_proxy_requests_total{route=\"invalid\",code=\"500\"} 1"));
    assert!(metrics.contains("sluice_proxy_request_duration_seconds_count{route=\"to-b\"} 1"));
}

/// Weighted backends get their share of traffic (1:3 within a wide tolerance), and
/// round robin spreads a backend's requests across its endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_endpoints() {
    let a = echo("a").await;
    let b1 = echo("b1").await;
    let b2 = echo("b2").await;
    let port = free_port();
    let routes = vec![route(
        "weighted",
        "/",
        forward(vec![
            backend("a", 1, &[a.addr]),
            backend("b", 3, &[b1.addr, b2.addr]),
        ]),
    )];
    let (_tx, _handle) = start(config(1, vec![listener(port, routes)])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    let n = 400;
    for _ in 0..n {
        assert_eq!(send(proxy, "x", "/", &[]).await.status, 200);
    }
    let (na, nb1, nb2) = (
        a.requests.load(Ordering::SeqCst),
        b1.requests.load(Ordering::SeqCst),
        b2.requests.load(Ordering::SeqCst),
    );
    assert_eq!(na + nb1 + nb2, n);
    let share_b = (nb1 + nb2) as f64 / n as f64;
    assert!(
        (0.65..=0.85).contains(&share_b),
        "b share {share_b} (a {na}, b1 {nb1}, b2 {nb2})"
    );
    assert!(nb1.abs_diff(nb2) <= 1, "round robin: b1 {nb1}, b2 {nb2}");
}

/// Upstream connections are pooled: sequential requests reuse one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_keepalive() {
    let a = echo("a").await;
    let port = free_port();
    let routes = vec![route(
        "to-a",
        "/",
        forward(vec![backend("a", 1, &[a.addr])]),
    )];
    let (_tx, _handle) = start(config(1, vec![listener(port, routes)])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..50 {
        assert_eq!(send(proxy, "x", "/", &[]).await.status, 200);
    }
    assert_eq!(a.requests.load(Ordering::SeqCst), 50);
    let conns = a.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 2,
        "{conns} upstream connections for 50 sequential requests"
    );
}

/// Listeners follow the config without restart: a new port is bound, a removed one is
/// closed, routes change, and a port that cannot be bound is reported while the other
/// listeners keep working, then bound as soon as it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_follow_config() {
    let a = echo("a").await;
    let b = echo("b").await;
    let (p1, p2) = (free_port(), free_port());
    let to =
        |name: &'static str, addr| vec![route(name, "/", forward(vec![backend(name, 1, &[addr])]))];
    let (tx, handle) = start(config(1, vec![listener(p1, to("a", a.addr))])).await;
    let l1: SocketAddr = ([127, 0, 0, 1], p1).into();
    let l2: SocketAddr = ([127, 0, 0, 1], p2).into();
    assert_eq!(send(l1, "x", "/", &[]).await.server(), Some("a"));
    assert!(TcpStream::connect(l2).await.is_err(), "p2 not bound yet");

    // Same listener, new backend: no rebind, traffic moves.
    tx.send_replace(config(2, vec![listener(p1, to("b", b.addr))]));
    let applied = wait_applied(&handle, 2).await;
    assert!(applied.listener_errors.is_empty(), "{applied:?}");
    assert_eq!(send(l1, "x", "/", &[]).await.server(), Some("b"));

    // Move to another port.
    tx.send_replace(config(3, vec![listener(p2, to("a", a.addr))]));
    let applied = wait_applied(&handle, 3).await;
    assert!(applied.listener_errors.is_empty(), "{applied:?}");
    assert_eq!(send(l2, "x", "/", &[]).await.server(), Some("a"));
    eventually("the old listener to refuse connections", || async {
        TcpStream::connect(l1).await.is_err()
    })
    .await;

    // A port held by someone else: reported, the other listener keeps serving.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    tx.send_replace(config(
        4,
        vec![
            listener(p2, to("a", a.addr)),
            listener(taken, to("b", b.addr)),
        ],
    ));
    let applied = wait_applied(&handle, 4).await;
    let name = format!("127.0.0.1:{taken}");
    assert!(applied.listener_errors.contains_key(&name), "{applied:?}");
    assert_eq!(applied.listener_errors.len(), 1);
    assert_eq!(send(l2, "x", "/", &[]).await.server(), Some("a"));

    // Freed: bound again without a new config, and reported.
    drop(squatter);
    let mut applied = handle.applied.clone();
    tokio::time::timeout(
        WAIT,
        applied.wait_for(|a| a.generation == 4 && a.listener_errors.is_empty()),
    )
    .await
    .expect("bind retried in time")
    .expect("proxy alive");
    let l3: SocketAddr = ([127, 0, 0, 1], taken).into();
    assert_eq!(send(l3, "x", "/", &[]).await.server(), Some("b"));
}

/// A dead endpoint costs a retry on the next one, not a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_skipped() {
    let a = echo("a").await;
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let port = free_port();
    let routes = vec![route(
        "r",
        "/",
        forward(vec![backend("a", 1, &[dead, a.addr])]),
    )];
    let (_tx, _h) = start(config(1, vec![listener(port, routes)])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..10 {
        assert_eq!(send(proxy, "x", "/", &[]).await.status, 200);
    }
}

/// Hot reload under load: clients on keep-alive connections send requests without
/// pause while 50 configs switch the backend back and forth; no request fails and
/// every change is seen by traffic within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;

    let a = echo("a").await;
    let b = echo("b").await;
    let port = free_port();
    let to = |addr| vec![route("r", "/", forward(vec![backend("x", 1, &[addr])]))];
    let (tx, handle) = start(config(1, vec![listener(port, to(a.addr))])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let last_seen = Arc::new(parking_lot::Mutex::new(String::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, last_seen) = (stop.clone(), ok.clone(), last_seen.clone());
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(proxy).await.expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let req = hyper::Request::builder()
                    .uri("/")
                    .header("host", "x")
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request");
                match sender.send_request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let server = resp
                            .headers()
                            .get("x-echo-server")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let _ = resp.into_body().collect().await;
                        *last_seen.lock() = server;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(resp) => failures.push(format!("status {}", resp.status())),
                    Err(e) => {
                        failures.push(e.to_string());
                        break;
                    }
                }
            }
            failures
        }));
    }

    for generation in 2..52u64 {
        let (addr, name) = if generation % 2 == 0 {
            (b.addr, "b")
        } else {
            (a.addr, "a")
        };
        tx.send_replace(config(generation, vec![listener(port, to(addr))]));
        wait_applied(&handle, generation).await;
        let seen_by = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            // A request that starts now must see the new backend.
            if last_seen.lock().as_str() == name {
                let r = send(proxy, "x", "/", &[]).await;
                if r.server() == Some(name) {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < seen_by,
                "generation {generation} not seen within 1s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let failures = c.await.expect("client task");
        assert!(failures.is_empty(), "failed requests: {failures:?}");
    }
    assert!(
        ok.load(Ordering::SeqCst) > 100,
        "too little traffic: {}",
        ok.load(Ordering::SeqCst)
    );
}

/// A request in flight keeps the router snapshot it started with: a slow request
/// routed to `a` completes from `a` after a config that routes to `b` is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_keep_their_snapshot() {
    let a = echo("a").await;
    let b = echo("b").await;
    let port = free_port();
    let to = |addr| vec![route("r", "/", forward(vec![backend("x", 1, &[addr])]))];
    let (tx, handle) = start(config(1, vec![listener(port, to(a.addr))])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    let slow = tokio::spawn(async move { send(proxy, "x", "/sleep/500", &[]).await });
    eventually("the slow request to reach a", || async {
        a.requests.load(Ordering::SeqCst) == 1
    })
    .await;
    tx.send_replace(config(2, vec![listener(port, to(b.addr))]));
    wait_applied(&handle, 2).await;
    assert_eq!(send(proxy, "x", "/", &[]).await.server(), Some("b"));
    let r = slow.await.expect("slow request");
    assert_eq!((r.status, r.server()), (200, Some("a")));
}

/// A listener whose protocol changes is rebound (HTTP → HTTPS on the same port), and
/// IPv6 listeners work like IPv4 ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_change_rebinds_and_ipv6() {
    let a = echo("a").await;
    let port = free_port();
    let routes = vec![route("r", "/", forward(vec![backend("a", 1, &[a.addr])]))];
    let (tx, handle) = start(config(1, vec![listener(port, routes.clone())])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(send(proxy, "x", "/", &[]).await.status, 200);

    // Same port, now HTTPS (no certificate: handshakes fail, plain HTTP is refused).
    let mut https = listener(port, routes.clone());
    https.protocol = sluice_ir::Protocol::Https;
    tx.send_replace(config(2, vec![https]));
    let applied = wait_applied(&handle, 2).await;
    assert!(applied.listener_errors.is_empty(), "{applied:?}");
    assert!(
        try_send(proxy, "x", "/", &[]).await.is_err(),
        "plain HTTP on an HTTPS listener must fail"
    );

    // Back to HTTP, plus an IPv6 loopback listener when the host has one.
    let v6_port = free_port();
    let mut listeners = vec![listener(port, routes.clone())];
    let v6_available = std::net::TcpListener::bind("[::1]:0").is_ok();
    if v6_available {
        let mut v6 = listener(v6_port, routes);
        v6.name = format!("[::1]:{v6_port}");
        v6.address = "::1".parse().expect("ip");
        listeners.push(v6);
    }
    tx.send_replace(config(3, listeners));
    let applied = wait_applied(&handle, 3).await;
    assert!(applied.listener_errors.is_empty(), "{applied:?}");
    assert_eq!(send(proxy, "x", "/", &[]).await.status, 200);
    if v6_available {
        let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, v6_port).into();
        let r = send(v6, "x", "/", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.seen("x-forwarded-for"), Some("::1"));
    }
}

/// A keep-alive connection left on a removed listener is not served by another
/// listener's routes: its next request gets 404 and the connection is closed (or it
/// finds the connection closed already).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_on_removed_listener() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    let a = echo("a").await;
    let (p1, p2) = (free_port(), free_port());
    let to = |addr| vec![route("r", "/", forward(vec![backend("x", 1, &[addr])]))];
    let (tx, handle) = start(config(1, vec![listener(p1, to(a.addr))])).await;
    let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p1)))
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let get = || {
        hyper::Request::builder()
            .uri("/")
            .header("host", "x")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    let r = sender.send_request(get()).await.expect("first request");
    assert_eq!(r.status(), 200);
    // Read the body, so the connection can be reused.
    let _ = r.into_body().collect().await.expect("body");

    tx.send_replace(config(2, vec![listener(p2, to(a.addr))]));
    wait_applied(&handle, 2).await;
    match sender.send_request(get()).await {
        Ok(r) => {
            assert_eq!(r.status(), 404);
            assert_eq!(
                r.headers().get("connection").map(|v| v.as_bytes()),
                Some(&b"close"[..])
            );
        }
        // Or the connection is already closed when the request goes out.
        Err(e) => assert!(
            e.is_canceled() || e.is_closed() || e.is_incomplete_message(),
            "{e}"
        ),
    }
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("connection closed in time")
        .expect("connection task")
        .ok();
}

/// CORS: preflights are answered by the proxy with the policy's headers, actual
/// requests are forwarded and get the origin headers, unknown origins get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors() {
    let a = echo("a").await;
    let port = free_port();
    let mut r = route("cors", "/", forward(vec![backend("a", 1, &[a.addr])]));
    r.filters = vec![sluice_ir::Filter::Cors(sluice_ir::Cors {
        allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        allow_headers: vec!["x-header-1".into()],
        expose_headers: vec!["x-header-3".into()],
        max_age_s: Some(3600),
        allow_credentials: true,
    })];
    let (_tx, _h) = start(config(1, vec![listener(port, vec![r])])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    let h = |r: &Resp, n: &str| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };

    let pre = [
        ("origin", "https://x.bar.com"),
        ("access-control-request-method", "GET"),
    ];
    let r = send_method(proxy, "OPTIONS", "x", "/p", &pre).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        0,
        "preflight not forwarded"
    );
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://x.bar.com")
    );
    assert_eq!(
        h(&r, "access-control-allow-methods").as_deref(),
        Some("GET, OPTIONS")
    );
    assert_eq!(
        h(&r, "access-control-allow-headers").as_deref(),
        Some("x-header-1")
    );
    assert_eq!(h(&r, "access-control-max-age").as_deref(), Some("3600"));
    assert_eq!(
        h(&r, "access-control-allow-credentials").as_deref(),
        Some("true")
    );

    let r = send_method(
        proxy,
        "OPTIONS",
        "x",
        "/p",
        &[
            ("origin", "https://evil.com"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(h(&r, "access-control-allow-origin"), None);

    let r = send(proxy, "x", "/p", &[("origin", "https://www.foo.com")]).await;
    assert_eq!((r.status, r.server()), (200, Some("a")));
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://www.foo.com")
    );
    assert_eq!(
        h(&r, "access-control-expose-headers").as_deref(),
        Some("x-header-3")
    );
    let r = send(proxy, "x", "/p", &[("origin", "https://evil.com")]).await;
    assert_eq!(
        (r.status, h(&r, "access-control-allow-origin")),
        (200, None)
    );
}

/// A backend answering 500 to its first `failures` requests, then 200.
async fn flaky(failures: usize) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let n = s.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let status = if n < failures { 500 } else { 200 };
                        hyper::Response::builder()
                            .status(status)
                            .body(http_body_util::Full::new(bytes::Bytes::from("x")))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Retry policies: listed answer codes are retried while attempts remain, and a
/// connection failure goes to a backend picked anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries() {
    let (f2, f2_seen) = flaky(2).await;
    let (f2b, f2b_seen) = flaky(2).await;
    let a = echo("a").await;
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let policy = |attempts, codes: Vec<u16>, on_connection_error| {
        Some(sluice_ir::Retry {
            codes,
            attempts,
            backoff_ms: Some(1),
            on_connection_error,
        })
    };
    let mut enough = route("enough", "/enough", forward(vec![backend("f", 1, &[f2])]));
    enough.retry = policy(2, vec![500], false);
    let mut short = route("short", "/short", forward(vec![backend("f", 1, &[f2b])]));
    short.retry = policy(1, vec![500], false);
    let mut conn = route(
        "conn",
        "/conn",
        forward(vec![
            backend("dead", 1, &[dead]),
            backend("a", 1, &[a.addr]),
        ]),
    );
    conn.retry = policy(5, vec![], true);
    let port = free_port();
    let (_tx, _h) = start(config(1, vec![listener(port, vec![enough, short, conn])])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();

    assert_eq!(send(proxy, "x", "/enough", &[]).await.status, 200);
    assert_eq!(f2_seen.load(Ordering::SeqCst), 3, "two retries");
    assert_eq!(send(proxy, "x", "/short", &[]).await.status, 500);
    assert_eq!(f2b_seen.load(Ordering::SeqCst), 2, "one retry");
    for _ in 0..20 {
        let r = send(proxy, "x", "/conn", &[]).await;
        assert_eq!((r.status, r.server()), (200, Some("a")));
    }
}

/// Mirrors: the client is answered by the route's backend, and a copy of the request
/// (headers as sent upstream) reaches the mirror backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors() {
    let a = echo("a").await;
    let m = echo("m").await;
    let port = free_port();
    let mut r = route("mirrored", "/", forward(vec![backend("a", 1, &[a.addr])]));
    r.filters = vec![sluice_ir::Filter::Mirror(Box::new(sluice_ir::Mirror {
        backend: backend("m", 1, &[m.addr]),
        numerator: 1,
        denominator: 1,
    }))];
    let (_tx, _h) = start(config(1, vec![listener(port, vec![r])])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..3 {
        let r = send(proxy, "x", "/m", &[]).await;
        assert_eq!((r.status, r.server()), (200, Some("a")));
    }
    eventually("3 mirrored requests", || async {
        m.requests.load(Ordering::SeqCst) == 3
    })
    .await;
    assert_eq!(a.requests.load(Ordering::SeqCst), 3);
}
