//! The manifests folder as a source: file formats and layout, startup with a broken
//! or empty folder, objects the binary must leave alone, bind failures, shutdown.
//! Addresses: 127.77.8.<test>.

use serde_json::json;
use sluice_e2e::harness::{find_object, has_condition, metric_sum};
use sluice_e2e::manifests::{mk_gateway, mk_route, mk_service_with_endpoints, SERVICE_PORT};
use sluice_e2e::{test_addr, EchoServer, Fixture, HttpClient, Sluice, GATEWAY};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Pins what the folder source reads: a `kind: List` in a `.json` file, a multi-document
/// `.yml` file in a subfolder, unknown kinds ignored, and files that are not manifests
/// (`README.md`, a hidden temp file) ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_formats() {
    let fx = Fixture::new("folder-formats", test_addr(8, 1), 18080);
    let echo = EchoServer::start(&fx.ns, "echo", "echo-0").await;
    // Service + EndpointSlice as a List in JSON.
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "echo", "namespace": fx.ns},
             "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "echo-x", "namespace": fx.ns, "labels": {"kubernetes.io/service-name": "echo"}},
             "addressType": "IPv4",
             "ports": [{"name": "http", "port": echo.port(), "protocol": "TCP"}],
             "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "ignored", "namespace": fx.ns}, "data": {"a": "b"}},
        ],
    });
    fx.write(
        "services.json",
        &serde_json::to_string_pretty(&list).expect("json"),
    );
    std::fs::create_dir_all(fx.path("sub/deeper")).expect("mkdir");
    let route = sluice_e2e::manifests::docs(&[
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: folder-formats\nspec: {}\n".to_owned(),
        mk_route(&fx.ns, "r", GATEWAY, "echo"),
    ]);
    fx.write("sub/deeper/route.yml", &route);
    fx.write("README.md", "# not a manifest: {{{\n");
    fx.write(".route.yaml.tmp", "not: [valid\n");
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "formats.example", "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;
}

/// Pins that a broken file does not stop startup: the binary becomes ready and serves
/// the good files' routes while the broken one is reported in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_broken_file() {
    let fx = Fixture::new("folder-broken-start", test_addr(8, 2), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    fx.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [oops\n",
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "broken.example", "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;
    s.wait_log("a warning naming broken.yaml", T, |l| {
        l.contains("/broken.yaml") && (l.contains("WARN") || l.contains("ERROR"))
    })
    .await;
}

/// Pins starting on an empty folder: ready at once, nothing bound; the Gateway, Service
/// and route written afterwards are served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_folder_then_add() {
    let dir = tempfile::Builder::new()
        .prefix("sluice-e2e-")
        .tempdir()
        .expect("tempdir");
    let mut s = Sluice::start_ready(dir.path()).await;
    let pid = s.pid();
    let gw = SocketAddr::new(test_addr(8, 3), 18080);
    assert!(!sluice_e2e::client::port_open(gw).await);
    // The Fixture writes base.yaml and gateway.yaml into the watched folder.
    let fx = Fixture::new("folder-empty", gw.ip(), gw.port());
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    for f in ["base.yaml", "gateway.yaml", "svc-echo.yaml", "route.yaml"] {
        let text = std::fs::read_to_string(fx.path(f)).expect("read");
        sluice_e2e::manifests::write_atomic(&dir.path().join(f), &text);
    }
    s.wait_reply(gw, "empty.example", "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;
    assert_eq!(s.pid(), pid);
}

/// Pins that Gateways of a class another controller owns are left alone: their address
/// is not bound, and they are not reported as Programmed by us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_class_ignored() {
    let fx = Fixture::new("folder-foreign", test_addr(8, 4), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let foreign = SocketAddr::new(test_addr(8, 5), 18080);
    let gw = mk_gateway(&fx.ns, "foreign", foreign.ip(), foreign.port())
        .replace("gatewayClassName: sluice", "gatewayClassName: other");
    assert!(gw.contains("gatewayClassName: other"), "{gw}");
    fx.write(
        "foreign.yaml",
        &sluice_e2e::manifests::docs(&[
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: other\nspec:\n  controllerName: example.com/other\n".to_owned(),
            gw,
            mk_route(&fx.ns, "rf", "foreign", "echo"),
        ]),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "foreign.example", "/", T, |r| {
        r.status == 200
    })
    .await;
    assert!(
        !sluice_e2e::client::port_open(foreign).await,
        "the foreign Gateway's address {foreign} is bound"
    );
    let status = s.status().await;
    if let Some(g) = find_object(&status, "Gateway", Some(&fx.ns), "foreign") {
        assert!(
            !has_condition(&g["status"]["conditions"], "Programmed", "True", None),
            "a foreign Gateway reported Programmed: {g:#}"
        );
    }
    if let Some(c) = find_object(&status, "GatewayClass", None, "other") {
        assert!(
            !has_condition(&c["status"]["conditions"], "Accepted", "True", None),
            "a foreign GatewayClass reported Accepted by us: {c:#}"
        );
    }
}

/// Pins bind failures: a Gateway whose address:port is taken by another process is not
/// Programmed and counts in `sluice_listener_errors`, while the other Gateway serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_conflict_reported() {
    let taken = SocketAddr::new(test_addr(8, 6), 18080);
    let _squatter = std::net::TcpListener::bind(taken).expect("binding the squatted address");
    let fx = Fixture::new("folder-bind", test_addr(8, 7), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    fx.write(
        "gw-taken.yaml",
        &mk_gateway(&fx.ns, "taken", taken.ip(), taken.port()),
    );
    let mut s = Sluice::start(fx.dir());
    s.wait_ready(T).await;
    s.wait_reply(fx.gateway_addr(), "bind.example", "/", T, |r| {
        r.status == 200
    })
    .await;
    let ns = fx.ns.clone();
    s.wait_status("Gateway taken not Programmed", T, |st| {
        find_object(st, "Gateway", Some(&ns), "taken")
            .is_some_and(|g| has_condition(&g["status"]["conditions"], "Programmed", "False", None))
    })
    .await;
    let m = s.metrics().await;
    let errors = metric_sum(&m, "sluice_listener_errors", &[]).unwrap_or(0.0);
    assert!(errors >= 1.0, "sluice_listener_errors {errors}:\n{m}");
    let mut c = HttpClient::new(fx.gateway_addr());
    assert_eq!(c.get("bind.example", "/").await.expect("GET").status, 200);
}

/// Pins graceful shutdown: SIGTERM makes the process exit with status 0 within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly() {
    let fx = Fixture::new("folder-term", test_addr(8, 8), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "term.example", "/", T, |r| {
        r.status == 200
    })
    .await;
    let started = Instant::now();
    let status = s.terminate(T).await;
    eprintln!("exited {status} after {:?}", started.elapsed());
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Pins the gateway's answer when the backend's endpoint refuses connections: a 5xx
/// (502 or 503) within the request timeout, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_gives_5xx() {
    let fx = Fixture::new("folder-down", test_addr(8, 9), 18080);
    let closed = sluice_e2e::harness::free_local_port();
    fx.write(
        "svc-down.yaml",
        &mk_service_with_endpoints(&fx.ns, "down", SERVICE_PORT, closed.port()),
    );
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "down"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let r = s
        .wait_reply(fx.gateway_addr(), "down.example", "/", T, |r| {
            r.status != 404
        })
        .await;
    assert!(
        r.status == 502 || r.status == 503,
        "backend refusing connections answered {} {}",
        r.status,
        r.text()
    );
}

/// Pins status code passthrough: the backend's own status (503, 204 without a body)
/// reaches the client unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_status_passthrough() {
    let fx = Fixture::new("folder-codes", test_addr(8, 10), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "codes.example", "/", T, |r| {
        r.status == 200
    })
    .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    for code in [503u16, 404, 500, 201] {
        let r = c
            .get("codes.example", &format!("/status/{code}"))
            .await
            .expect("GET");
        assert_eq!(r.status.as_u16(), code, "{}", r.text());
    }
    let r = c.get("codes.example", "/status/204").await.expect("GET");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    // The connection survives a body-less answer.
    let r = c.get("codes.example", "/").await.expect("GET after 204");
    assert_eq!(r.status, 200);
    assert_eq!(c.connects(), 1);
}

/// Pins failing fast on a manifests folder that does not exist: the process exits with
/// an error status within 10 s and its log names the folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_folder_fails_fast() {
    let dir = std::path::Path::new("/nonexistent/sluice-e2e-folder");
    let mut s = Sluice::start(dir);
    let status = s.wait_exit(T).await;
    assert!(!status.success(), "exit status {status}");
    assert!(
        s.log().contains("sluice-e2e-folder"),
        "the log does not name the folder:\n{}",
        s.log()
    );
}

/// Pins failing fast when the admin address is taken: the process exits with an error
/// status within 10 s and says which address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_taken_fails_fast() {
    let fx = Fixture::new("folder-admin", test_addr(8, 11), 18080);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut s = Sluice::start_on(fx.dir(), addr, &[]);
    let addr = addr.to_string();
    let status = s.wait_exit(T).await;
    assert!(!status.success(), "exit status {status}");
    assert!(
        s.log().contains(&addr),
        "the log does not name {addr}:\n{}",
        s.log()
    );
}

/// Pins that `Programmed: True` is never a lie when two Gateways ask for the same
/// address and port: the binary keeps running, at least one Gateway serves its route,
/// and every Gateway reported Programmed True serves its own route (`/a` for `gw`,
/// `/b` for `gw2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_same_address_conflict() {
    let fx = Fixture::new("folder-conflict", test_addr(8, 12), 18080);
    let _a = fx.backend("a").await;
    let _b = fx.backend("b").await;
    let route = |name: &str, gw: &str, path: &str, backend: &str| {
        sluice_e2e::manifests::HttpRoute::new(&fx.ns, name)
            .parent(gw)
            .rule(
                sluice_e2e::manifests::Rule::new()
                    .path_prefix(path)
                    .backend(backend, SERVICE_PORT, None),
            )
            .yaml()
    };
    fx.write("route.yaml", &route("r", GATEWAY, "/a", "a"));
    fx.write("gw2.yaml", &mk_gateway(&fx.ns, "gw2", fx.addr, 18080));
    fx.write("route2.yaml", &route("r2", "gw2", "/b", "b"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("both Gateways have a Programmed condition", T, |st| {
            [GATEWAY, "gw2"].iter().all(|g| {
                find_object(st, "Gateway", Some(&ns), g).is_some_and(|o| {
                    sluice_e2e::harness::condition(&o["status"]["conditions"], "Programmed")
                        .is_some()
                })
            })
        })
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    let mut serving = 0;
    let mut lies = Vec::new();
    for (gw, path, pod) in [(GATEWAY, "/a", "a-0"), ("gw2", "/b", "b-0")] {
        let o = find_object(&status, "Gateway", Some(&ns), gw).expect("gateway");
        let programmed = has_condition(&o["status"]["conditions"], "Programmed", "True", None);
        let r = c.get("conflict.example", path).await.expect("GET");
        let serves = r.pod().as_deref() == Some(pod);
        serving += usize::from(serves);
        if programmed && !serves {
            lies.push(format!(
                "Gateway {gw} is Programmed True but GET {path} answered {} {}; its status: {:#}",
                r.status,
                r.text(),
                o["status"]
            ));
        }
    }
    assert!(serving >= 1, "neither Gateway serves its route");
    assert!(lies.is_empty(), "{}", lies.join("\n"));
    s.assert_running();
}

/// Pins recovery from a bind failure: once the process squatting a Gateway's
/// address:port lets it go, the binary binds it (within 10 s, without any change to the
/// folder) and the Gateway becomes Programmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bind_is_retried() {
    let fx = Fixture::new("folder-rebind", test_addr(8, 13), 18080);
    let squatter = std::net::TcpListener::bind(fx.gateway_addr()).expect("squatting the address");
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    s.wait_status("Gateway gw not Programmed", T, |st| {
        find_object(st, "Gateway", Some(&ns), GATEWAY)
            .is_some_and(|g| has_condition(&g["status"]["conditions"], "Programmed", "False", None))
    })
    .await;
    drop(squatter);
    s.wait_reply(fx.gateway_addr(), "rebind.example", "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;
    s.wait_status("Gateway gw Programmed", T, |st| {
        find_object(st, "Gateway", Some(&ns), GATEWAY)
            .is_some_and(|g| has_condition(&g["status"]["conditions"], "Programmed", "True", None))
    })
    .await;
}
