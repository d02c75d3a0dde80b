//! The admin server and plain forwarding: the binary starts on a folder, reports ready,
//! serves its admin endpoints and forwards a request with the X-Forwarded-* headers.
//! Addresses: 127.77.1.<test>.

use sluice_e2e::harness::{find_object, POLL};
use sluice_e2e::manifests::mk_route;
use sluice_e2e::{test_addr, Fixture, HttpClient, Sluice, GATEWAY};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Pins the admin contract: `/healthz` 200, `/readyz` 200 once configured, `/status`
/// lists the objects, `/config` has an integer `generation` and our listener,
/// `/metrics` is Prometheus text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let fx = Fixture::new("smoke-admin", test_addr(1, 1), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let s = Sluice::start_ready(fx.dir()).await;

    let h = s.admin_get("/healthz").await.expect("GET /healthz");
    assert_eq!(h.status, 200, "/healthz: {}", h.text());

    let status = s.status().await;
    for (kind, ns, name) in [
        ("GatewayClass", None, "sluice"),
        ("Gateway", Some(fx.ns.as_str()), GATEWAY),
        ("HTTPRoute", Some(fx.ns.as_str()), "r"),
    ] {
        let o = find_object(&status, kind, ns, name)
            .unwrap_or_else(|| panic!("/status lacks {kind} {ns:?}/{name}: {status:#}"));
        assert!(
            o["apiVersion"].is_string(),
            "{kind} has no apiVersion: {o:#}"
        );
        assert!(
            o["metadata"]["generation"].is_u64(),
            "{kind} has no integer generation: {o:#}"
        );
    }

    let generation = s.config_generation().await;
    assert!(
        generation >= 1,
        "config generation {generation} after the first load"
    );
    let config = s.config().await;
    let text = config.to_string();
    assert!(
        text.contains(&fx.addr.to_string()),
        "/config does not mention the Gateway address {}: {config:#}",
        fx.addr
    );

    let metrics = s.metrics().await;
    assert!(
        metrics.contains("# TYPE"),
        "/metrics is not Prometheus text:\n{metrics}"
    );
}

/// Pins forwarding: the backend sees the request's path and query, the Host the client
/// sent, and X-Forwarded-For (the client address, appended to the client's own list),
/// X-Forwarded-Proto `http` and X-Forwarded-Host (the client's values replaced), and
/// no hop-by-hop header (those `Connection` names, `TE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers() {
    let fx = Fixture::new("smoke-fwd", test_addr(1, 2), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "fwd.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;

    let mut c = HttpClient::new(fx.gateway_addr());
    let r = c.get(host, "/a/b?c=d&e=f").await.expect("GET");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.echo().expect("answer from the echo server");
    assert_eq!(echo.path, "/a/b?c=d&e=f");
    assert_eq!(echo.host, host);
    assert_eq!(echo.method, "GET");
    let xff = echo.header("X-Forwarded-For").unwrap_or_default().join(",");
    assert!(
        xff.contains("127.0.0.1"),
        "X-Forwarded-For {xff:?}; echo: {echo:?}"
    );
    assert_eq!(
        echo.header("X-Forwarded-Proto"),
        Some(&["http".to_owned()][..]),
        "echo: {echo:?}"
    );
    assert_eq!(
        echo.header("X-Forwarded-Host"),
        Some(&[host.to_owned()][..]),
        "echo: {echo:?}"
    );

    let r = c
        .get_with(
            host,
            "/",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "spoofed.example"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("te", "trailers"),
            ],
        )
        .await
        .expect("GET");
    let echo = r.echo().expect("answer from the echo server");
    assert_eq!(
        echo.header("X-Forwarded-For").unwrap_or_default().join(","),
        "203.0.113.7, 127.0.0.1",
        "echo: {echo:?}"
    );
    assert_eq!(
        echo.header("X-Forwarded-Proto"),
        Some(&["http".to_owned()][..]),
        "echo: {echo:?}"
    );
    assert_eq!(
        echo.header("X-Forwarded-Host"),
        Some(&[host.to_owned()][..]),
        "echo: {echo:?}"
    );
    assert_eq!(
        echo.header("X-Hop"),
        None,
        "a hop-by-hop header was forwarded: {echo:?}"
    );
    assert_eq!(
        echo.header("Te"),
        None,
        "a hop-by-hop header was forwarded: {echo:?}"
    );
}

/// Pins the harness itself: the echo server answers directly, counts requests and
/// keep-alive connections, and `/status/NNN` answers NNN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_server_contract() {
    let echo = sluice_e2e::EchoServer::start("ns", "svc", "svc-0").await;
    let mut c = HttpClient::new(echo.addr());
    for _ in 0..3 {
        let r = c.get("h.example", "/x?y=1").await.expect("GET");
        assert_eq!(r.status, 200);
        let e = r.echo().expect("echo JSON");
        assert_eq!(
            (
                e.pod.as_str(),
                e.service.as_str(),
                e.path.as_str(),
                e.host.as_str()
            ),
            ("svc-0", "svc", "/x?y=1", "h.example")
        );
    }
    let r = c.get("h.example", "/status/503").await.expect("GET");
    assert_eq!(r.status, 503);
    let r = c.get("h.example", "/status/204").await.expect("GET");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let deadline = Instant::now() + T;
    while echo.requests() < 5 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(echo.requests(), 5);
    assert_eq!(echo.connections(), 1, "keep-alive: one connection");
    assert_eq!(c.connects(), 1);
}

/// Pins the proxy metrics: `sluice_proxy_requests_total` counts answered requests by
/// route (provenance name `httproute/<ns>/<name>/...`) and code, unmatched ones under
/// `route=""` with code 404; `sluice_config_generation` equals `/config`'s generation
/// and `sluice_config_reloads_total` grows when a file changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_reloads() {
    use sluice_e2e::harness::metric_sum;
    let fx = Fixture::new("smoke-metrics", test_addr(1, 3), 18080);
    let _echo = fx.backend("echo").await;
    fx.write(
        "route.yaml",
        &sluice_e2e::manifests::HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .rule(
                sluice_e2e::manifests::Rule::new()
                    .path_prefix("/in")
                    .backend("echo", sluice_e2e::manifests::SERVICE_PORT, None),
            )
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "metrics.example";
    s.wait_reply(fx.gateway_addr(), host, "/in", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    for _ in 0..20 {
        assert_eq!(c.get(host, "/in").await.expect("GET").status, 200);
    }
    for _ in 0..5 {
        assert_eq!(c.get(host, "/out").await.expect("GET").status, 404);
    }

    // Counted in the logging phase, after the answer: poll.
    let deadline = Instant::now() + T;
    let routed = |m: &str| -> f64 {
        m.lines()
            .filter(|l| {
                l.starts_with("sluice_proxy_requests_total{")
                    && l.contains(&format!("route=\"httproute/{}/r/", fx.ns))
                    && l.contains("code=\"200\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    loop {
        let m = s.metrics().await;
        let ok = routed(&m);
        let unmatched = metric_sum(
            &m,
            "sluice_proxy_requests_total",
            &[("route", ""), ("code", "404")],
        )
        .unwrap_or(0.0);
        if ok >= 21.0 && unmatched >= 5.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics: {ok} routed 200s (want >= 21), {unmatched} unmatched 404s (want >= 5):\n{m}"
        );
        tokio::time::sleep(POLL).await;
    }

    let m = s.metrics().await;
    let generation =
        metric_sum(&m, "sluice_config_generation", &[]).expect("sluice_config_generation");
    assert_eq!(generation as u64, s.config_generation().await, "{m}");
    let reloads =
        metric_sum(&m, "sluice_config_reloads_total", &[]).expect("sluice_config_reloads_total");

    fx.write(
        "route.yaml",
        &sluice_e2e::manifests::mk_route(&fx.ns, "r", GATEWAY, "echo"),
    );
    s.wait_reply(fx.gateway_addr(), host, "/out", T, |r| r.status == 200)
        .await;
    let m = s.metrics().await;
    let after =
        metric_sum(&m, "sluice_config_reloads_total", &[]).expect("sluice_config_reloads_total");
    assert!(
        after > reloads,
        "reloads {reloads} -> {after} after a file change:\n{m}"
    );
    let generation_after = metric_sum(&m, "sluice_config_generation", &[]).expect("generation");
    assert!(
        generation_after > generation,
        "config generation {generation} -> {generation_after}"
    );
}

/// Pins upstream keep-alive: 200 requests through the gateway, sent one after the
/// other, reach the backend over a handful of connections (pooled per worker thread),
/// not one connection per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_reused() {
    let fx = Fixture::new("smoke-upstream", test_addr(1, 4), 18080);
    let echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "pool.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;
    let before = echo.connections();
    let mut c = HttpClient::new(fx.gateway_addr());
    for _ in 0..200 {
        assert_eq!(c.get(host, "/").await.expect("GET").status, 200);
    }
    let opened = echo.connections() - before;
    assert!(
        opened <= 8,
        "200 sequential requests opened {opened} upstream connections (keep-alive to upstreams not working)"
    );
}

/// Pins request bodies and methods: a POST with a body reaches the backend with its
/// method and the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_forwarded() {
    let fx = Fixture::new("smoke-post", test_addr(1, 5), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "post.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;
    let body = "x".repeat(100_000);
    let req = http::Request::builder()
        .method("POST")
        .uri("/upload?n=1")
        .header("host", host)
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let mut c = HttpClient::new(fx.gateway_addr());
    let r = c.send(req).await.expect("POST");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.echo().expect("echo");
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/upload?n=1");
    assert_eq!(echo.body_bytes, 100_000);
}

/// Pins upstream connection hygiene: when the backend closes its idle keep-alive
/// connections (its idle timeout, a restart), the next requests still succeed; the
/// gateway does not answer 502 for a pooled connection the backend already closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_idle_close_is_not_an_error() {
    let fx = Fixture::new("smoke-idle", test_addr(1, 6), 18080);
    let echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "idle.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    let mut bad = Vec::new();
    for i in 0..20 {
        for _ in 0..3 {
            let r = c.get(host, "/").await.expect("GET");
            if r.status != 200 {
                bad.push(format!("round {i}: {} {}", r.status, r.text()));
            }
        }
        echo.close_connections();
        // Idle time: the backend's FIN reaches the gateway's pooled connections.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        bad.is_empty(),
        "{} requests failed after the backend closed idle connections:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
