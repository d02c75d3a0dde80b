//! Hot reload: changes in the manifests folder take effect while traffic flows, without
//! failed requests, and a broken file never takes routes down.
//! Addresses: 127.77.4.<test>.

use sluice_e2e::harness::{find_object, has_condition, POLL};
use sluice_e2e::manifests::{docs, mk_route, mk_service_with_endpoints, SERVICE_PORT};
use sluice_e2e::{test_addr, EchoServer, Fixture, HttpClient, Sluice, GATEWAY};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// What one load client saw.
#[derive(Debug, Default)]
struct Load {
    ok: u64,
    failures: Vec<String>,
    /// Backend index of every answer, in order (for the no-flapping check).
    backends: Vec<usize>,
    connects: u64,
    retries: u64,
}

/// A client sending GETs back to back over one keep-alive connection until `stop`.
/// `backend_of` maps an answering pod to its index.
fn spawn_load(
    addr: SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
    backend_of: fn(&str) -> Option<usize>,
) -> tokio::task::JoinHandle<Load> {
    spawn_load_with(addr, host, stop, backend_of, false)
}

/// Like [`spawn_load`]; with `fresh`, every request goes on a new connection.
fn spawn_load_with(
    addr: SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
    backend_of: fn(&str) -> Option<usize>,
    fresh: bool,
) -> tokio::task::JoinHandle<Load> {
    tokio::spawn(async move {
        let mut c = HttpClient::new(addr).with_timeout(Duration::from_secs(2));
        let mut load = Load::default();
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let at = started.elapsed();
            match c.get(host, "/load").await {
                Ok(r) if r.status == 200 => match r.pod().as_deref().and_then(backend_of) {
                    Some(i) => {
                        load.ok += 1;
                        load.backends.push(i);
                    }
                    None => load.failures.push(format!(
                        "{at:?}: 200 not from an echo backend: {}",
                        r.text()
                    )),
                },
                Ok(r) => load
                    .failures
                    .push(format!("{at:?}: status {} {}", r.status, r.text())),
                Err(e) => load.failures.push(format!("{at:?}: {e:#}")),
            }
            if fresh {
                c.disconnect();
            }
        }
        load.connects = c.connects();
        load.retries = c.reconnect_retries();
        load
    })
}

fn backend_index(pod: &str) -> Option<usize> {
    pod.strip_prefix("b")?.strip_suffix("-0")?.parse().ok()
}

/// Pins hot reload under load: while 4 clients send requests continuously over
/// keep-alive connections, the route file is rewritten 50 times, each time sending
/// traffic to a different backend. No request fails (every answer is a 200 from an echo
/// backend, no connection error), each new backend is seen by traffic within 1 s of
/// the write, no client ever goes back to an older backend, and the clients' keep-alive
/// connections survive the reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load() {
    const VERSIONS: usize = 50;
    const HOST: &str = "reload.example";
    let fx = Fixture::new("reload-load", test_addr(4, 1), 18080);
    let mut echoes: Vec<EchoServer> = Vec::new();
    let mut services = Vec::new();
    for k in 0..=VERSIONS {
        let name = format!("b{k}");
        let echo = EchoServer::start(&fx.ns, &name, &format!("{name}-0")).await;
        services.push(mk_service_with_endpoints(
            &fx.ns,
            &name,
            SERVICE_PORT,
            echo.port(),
        ));
        echoes.push(echo);
    }
    fx.write("services.yaml", &docs(&services));
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "b0"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("b0-0"))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| spawn_load(addr, HOST, stop.clone(), backend_index))
        .collect();

    let mut probe = HttpClient::new(addr).with_timeout(Duration::from_secs(2));
    let mut probe_failures = Vec::new();
    let mut delays = Vec::new();
    for k in 1..=VERSIONS {
        let want = format!("b{k}-0");
        fx.write(
            "route.yaml",
            &mk_route(&fx.ns, "r", GATEWAY, &format!("b{k}")),
        );
        let written = Instant::now();
        loop {
            match probe.get(HOST, "/probe").await {
                Ok(r) if r.status == 200 && r.pod().as_deref() == Some(want.as_str()) => break,
                Ok(r) if r.status == 200 && r.pod().is_some() => {}
                Ok(r) => {
                    probe_failures.push(format!("version {k}: status {} {}", r.status, r.text()))
                }
                Err(e) => probe_failures.push(format!("version {k}: {e:#}")),
            }
            if written.elapsed() > T {
                stop.store(true, Ordering::Relaxed);
                panic!("version {k} (backend {want}) not served {T:?} after the write");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(written.elapsed());
        s.assert_running();
    }
    // Let the load run a little on the last version too.
    let last = Instant::now();
    while last.elapsed() < Duration::from_millis(200) {
        tokio::time::sleep(POLL).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut loads_done = Vec::new();
    for l in loads {
        loads_done.push(l.await.expect("load task"));
    }

    let mut sorted = delays.clone();
    sorted.sort();
    let max = *sorted.last().expect("50 delays");
    let total_ok: u64 = loads_done.iter().map(|l| l.ok).sum();
    eprintln!(
        "reload delays: p50 {:?} p90 {:?} max {max:?}; load: {total_ok} ok, {} failed; connects {:?}, retries {:?}",
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 9 / 10],
        loads_done.iter().map(|l| l.failures.len()).sum::<usize>(),
        loads_done.iter().map(|l| l.connects).collect::<Vec<_>>(),
        loads_done.iter().map(|l| l.retries).collect::<Vec<_>>(),
    );

    let failures: Vec<&String> = loads_done
        .iter()
        .flat_map(|l| &l.failures)
        .chain(&probe_failures)
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed requests during reloads (first 20):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        total_ok >= 200,
        "the load clients sent only {total_ok} requests: no real load"
    );
    let slow: Vec<String> = delays
        .iter()
        .enumerate()
        .filter(|(_, d)| **d >= Duration::from_secs(1))
        .map(|(i, d)| format!("version {}: {d:?}", i + 1))
        .collect();
    assert!(
        slow.is_empty(),
        "changes observed later than 1 s after the write:\n{}",
        slow.join("\n")
    );
    for (i, l) in loads_done.iter().enumerate() {
        if let Some(w) = l.backends.windows(2).find(|w| w[1] < w[0]) {
            panic!(
                "load client {i} went back from backend b{} to b{}",
                w[0], w[1]
            );
        }
    }
    let seen_last = loads_done
        .iter()
        .any(|l| l.backends.last() == Some(&VERSIONS));
    assert!(seen_last, "no load client reached the last backend");
    let reconnects: Vec<u64> = loads_done.iter().map(|l| l.connects + l.retries).collect();
    assert!(
        reconnects.iter().all(|&c| c == 1),
        "keep-alive connections were closed by the gateway during reloads (connections opened + retries per client: {reconnects:?})"
    );
}

/// An HTTPRoute file cut off mid-edit: not valid YAML.
fn broken_route(ns: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: {ns}\nspec:\n  parentRefs: [ {{name: {GATEWAY}\n  rules:\n  - backendRefs:\n    - name: \"new\n"
    )
}

/// Waits until the binary has reacted to the broken `route.yaml`: it logs a warning or
/// an error naming the file (not its temp file `.route.yaml.tmp`).
async fn wait_parse_error_logged(s: &mut Sluice) -> String {
    s.wait_log("a warning naming route.yaml", T, |l| {
        l.contains("/route.yaml") && (l.contains("WARN") || l.contains("ERROR"))
    })
    .await
}

/// Sends GETs for `d` and returns the answers that are not 200 from `pod`.
async fn unexpected_answers(
    addr: SocketAddr,
    host: &str,
    pod: &str,
    d: Duration,
) -> (u64, Vec<String>) {
    let mut c = HttpClient::new(addr).with_timeout(Duration::from_secs(2));
    let start = Instant::now();
    let mut n = 0;
    let mut bad = Vec::new();
    while start.elapsed() < d {
        n += 1;
        match c.get(host, "/").await {
            Ok(r) if r.status == 200 && r.pod().as_deref() == Some(pod) => {}
            Ok(r) => bad.push(format!("{:?}: {} {}", start.elapsed(), r.status, r.text())),
            Err(e) => bad.push(format!("{:?}: {e:#}", start.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (n, bad)
}

/// Pins "editing a file never takes routes down": an HTTPRoute file rewritten with
/// invalid YAML is reported in the log with its name, the route from its last good
/// parse keeps serving the old backend (2 s of requests all succeed there) and stays in
/// `/status`, and fixing the file applies the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_keeps_old_routes() {
    let fx = Fixture::new("reload-broken", test_addr(4, 2), 18080);
    let _old = fx.backend("old").await;
    let _new = fx.backend("new").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "old"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    let host = "broken.example";
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("old-0"))
        .await;
    let generation = s.config_generation().await;

    fx.write("route.yaml", &broken_route(&fx.ns));
    let line = wait_parse_error_logged(&mut s).await;
    eprintln!("the binary reported: {line}");

    let (n, bad) = unexpected_answers(addr, host, "old-0", Duration::from_secs(2)).await;
    assert!(
        bad.is_empty(),
        "{} of {n} requests did not reach the old backend after the broken write:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let ns = fx.ns.clone();
    let status = s.status().await;
    let route = find_object(&status, "HTTPRoute", Some(&ns), "r")
        .unwrap_or_else(|| panic!("the route of the broken file left /status: {status:#}"));
    assert!(
        has_condition(
            &route["status"]["parents"][0]["conditions"],
            "Accepted",
            "True",
            None
        ),
        "the route of the broken file is no longer Accepted: {route:#}"
    );
    let after = s.config_generation().await;
    assert!(
        after >= generation,
        "config generation went back from {generation} to {after}"
    );

    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "new"));
    s.wait_reply(addr, host, "/", Duration::from_secs(2), |r| {
        r.pod().as_deref() == Some("new-0")
    })
    .await;
    let (n, bad) = unexpected_answers(addr, host, "new-0", Duration::from_millis(300)).await;
    assert!(
        bad.is_empty(),
        "{} of {n} requests did not reach the new backend after the fix:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Pins the other way out of a broken file: deleting it removes the objects of its
/// last good parse (the route stops serving: 404) and they leave `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_deleted_removes_its_objects() {
    let fx = Fixture::new("reload-broken-del", test_addr(4, 3), 18080);
    let _old = fx.backend("old").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "old"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    let host = "broken.example";
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("old-0"))
        .await;

    fx.write("route.yaml", &broken_route(&fx.ns));
    wait_parse_error_logged(&mut s).await;
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("old-0"))
        .await;

    fx.remove("route.yaml");
    s.wait_reply(addr, host, "/", T, |r| r.status == 404).await;
    let ns = fx.ns.clone();
    s.wait_status("HTTPRoute r gone", T, |st| {
        find_object(st, "HTTPRoute", Some(&ns), "r").is_none()
    })
    .await;
}

/// Pins that a Service added after start is picked up: a route to a Service that does
/// not exist yet answers 500, and writing the Service and its EndpointSlice makes it
/// answer from the backend without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_added_later() {
    let fx = Fixture::new("reload-svc", test_addr(4, 4), 18080);
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "late"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let pid = s.pid();
    let addr = fx.gateway_addr();
    let host = "late.example";
    s.wait_reply(addr, host, "/", T, |r| r.status == 500).await;
    let _late = fx.backend("late").await;
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("late-0"))
        .await;
    assert_eq!(s.pid(), pid);
    s.assert_running();
}

/// Pins endpoint changes under load: while 4 clients send requests continuously, the
/// EndpointSlice behind the route's Service is rewritten 10 times, each time moving the
/// Service to another echo server (port). No request fails and each move is seen by
/// traffic within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_change_under_load() {
    const MOVES: usize = 10;
    const HOST: &str = "endpoints.example";
    let fx = Fixture::new("reload-endpoints", test_addr(4, 5), 18080);
    let mut echoes = Vec::new();
    for k in 0..=MOVES {
        echoes.push(EchoServer::start(&fx.ns, "svc", &format!("b{k}-0")).await);
    }
    let svc = |k: usize| mk_service_with_endpoints(&fx.ns, "svc", SERVICE_PORT, echoes[k].port());
    fx.write("svc.yaml", &svc(0));
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "svc"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("b0-0"))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| spawn_load(addr, HOST, stop.clone(), backend_index))
        .collect();
    let mut probe = HttpClient::new(addr).with_timeout(Duration::from_secs(2));
    let mut delays = Vec::new();
    let mut probe_failures = Vec::new();
    for k in 1..=MOVES {
        let want = format!("b{k}-0");
        fx.write("svc.yaml", &svc(k));
        let written = Instant::now();
        loop {
            match probe.get(HOST, "/probe").await {
                Ok(r) if r.status == 200 && r.pod().as_deref() == Some(want.as_str()) => break,
                Ok(r) if r.status == 200 && r.pod().is_some() => {}
                Ok(r) => probe_failures.push(format!("move {k}: status {} {}", r.status, r.text())),
                Err(e) => probe_failures.push(format!("move {k}: {e:#}")),
            }
            if written.elapsed() > T {
                stop.store(true, Ordering::Relaxed);
                panic!("move {k} (endpoint {want}) not served {T:?} after the write");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(written.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures: Vec<String> = probe_failures;
    let mut total_ok = 0;
    for l in loads {
        let l = l.await.expect("load task");
        total_ok += l.ok;
        failures.extend(l.failures);
    }
    let max = delays.iter().max().copied().unwrap_or_default();
    eprintln!(
        "endpoint moves: max delay {max:?}; {total_ok} ok, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests during endpoint moves (first 20):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        max < Duration::from_secs(1),
        "an endpoint move took {max:?} to reach traffic: {delays:?}"
    );
}

/// Pins "requests in flight keep the snapshot they started with": a slow request
/// (1.5 s at the backend) started before the route moves to another backend, and one
/// started before the route is deleted, both complete with 200 from the old backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_survives_reload() {
    let fx = Fixture::new("reload-inflight", test_addr(4, 6), 18080);
    let old = fx.backend("old").await;
    let _new = fx.backend("new").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "old"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    let host = "inflight.example";
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("old-0"))
        .await;

    // Phase 1: the route moves to another backend while the slow request is in flight.
    let slow = start_slow_request(addr, host, &old).await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "new"));
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("new-0"))
        .await;
    let r = slow
        .await
        .expect("task")
        .unwrap_or_else(|e| panic!("the in-flight request failed when the route moved: {e:#}"));
    assert_eq!(
        (r.status.as_u16(), r.pod()),
        (200, Some("old-0".to_owned())),
        "moved: {}",
        r.text()
    );

    // Phase 2: the route is deleted while the slow request is in flight.
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "old"));
    s.wait_reply(addr, host, "/", T, |r| r.pod().as_deref() == Some("old-0"))
        .await;
    let slow = start_slow_request(addr, host, &old).await;
    fx.remove("route.yaml");
    s.wait_reply(addr, host, "/", T, |r| r.status == 404).await;
    let r = slow.await.expect("task").unwrap_or_else(|e| {
        panic!("the in-flight request failed when its route was deleted: {e:#}")
    });
    assert_eq!(
        (r.status.as_u16(), r.pod()),
        (200, Some("old-0".to_owned())),
        "deleted: {}",
        r.text()
    );
}

/// Starts `GET /delay/1500` and returns once the backend `at` has received it.
async fn start_slow_request(
    addr: SocketAddr,
    host: &'static str,
    at: &EchoServer,
) -> tokio::task::JoinHandle<anyhow::Result<sluice_e2e::Reply>> {
    let before = at.requests();
    let slow = tokio::spawn(async move { HttpClient::new(addr).get(host, "/delay/1500").await });
    let deadline = Instant::now() + T;
    while at.requests() == before {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached {}",
            at.pod()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    slow
}

/// Pins convergence after a burst: 30 rewrites of the route file back to back (no
/// waiting between them) end with the last version served, and nothing fails meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_writes_converges() {
    const WRITES: usize = 30;
    const HOST: &str = "burst.example";
    let fx = Fixture::new("reload-burst", test_addr(4, 7), 18080);
    let mut echoes = Vec::new();
    let mut services = Vec::new();
    for k in 0..=WRITES {
        let name = format!("b{k}");
        let echo = EchoServer::start(&fx.ns, &name, &format!("{name}-0")).await;
        services.push(mk_service_with_endpoints(
            &fx.ns,
            &name,
            SERVICE_PORT,
            echo.port(),
        ));
        echoes.push(echo);
    }
    fx.write("services.yaml", &docs(&services));
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "b0"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("b0-0"))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| spawn_load(addr, HOST, stop.clone(), backend_index))
        .collect();
    for k in 1..=WRITES {
        fx.write(
            "route.yaml",
            &mk_route(&fx.ns, "r", GATEWAY, &format!("b{k}")),
        );
    }
    let last = format!("b{WRITES}-0");
    s.wait_reply(addr, HOST, "/", Duration::from_secs(3), |r| {
        r.pod().as_deref() == Some(last.as_str())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for l in loads {
        failures.extend(l.await.expect("load").failures);
    }
    assert!(
        failures.is_empty(),
        "failed requests during the burst:\n{}",
        failures.join("\n")
    );
    // And it stays there.
    let mut c = HttpClient::new(addr);
    for _ in 0..20 {
        assert_eq!(
            c.get(HOST, "/").await.expect("GET").pod().as_deref(),
            Some(last.as_str())
        );
    }
}

/// Pins in-place edits (the file truncated and rewritten, as many editors and `cp` do,
/// instead of a rename): 20 such rewrites under load, each switching the backend, give
/// no failed request and each version is served within 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_writes_under_load() {
    const VERSIONS: usize = 20;
    const HOST: &str = "inplace.example";
    let fx = Fixture::new("reload-inplace", test_addr(4, 8), 18080);
    let mut echoes = Vec::new();
    let mut services = Vec::new();
    for k in 0..=VERSIONS {
        let name = format!("b{k}");
        let echo = EchoServer::start(&fx.ns, &name, &format!("{name}-0")).await;
        services.push(mk_service_with_endpoints(
            &fx.ns,
            &name,
            SERVICE_PORT,
            echo.port(),
        ));
        echoes.push(echo);
    }
    fx.write("services.yaml", &docs(&services));
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "b0"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("b0-0"))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| spawn_load(addr, HOST, stop.clone(), backend_index))
        .collect();
    let mut probe = HttpClient::new(addr).with_timeout(Duration::from_secs(2));
    let mut delays = Vec::new();
    for k in 1..=VERSIONS {
        let want = format!("b{k}-0");
        std::fs::write(
            fx.path("route.yaml"),
            mk_route(&fx.ns, "r", GATEWAY, &format!("b{k}")),
        )
        .expect("write");
        let written = Instant::now();
        loop {
            if let Ok(r) = probe.get(HOST, "/probe").await {
                if r.pod().as_deref() == Some(want.as_str()) {
                    break;
                }
            }
            if written.elapsed() > T {
                stop.store(true, Ordering::Relaxed);
                panic!("version {k} not served {T:?} after the write");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(written.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for l in loads {
        failures.extend(l.await.expect("load").failures);
    }
    assert!(
        failures.is_empty(),
        "{} failed requests during in-place rewrites (first 20):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let max = delays.iter().max().copied().unwrap_or_default();
    assert!(
        max < Duration::from_secs(1),
        "a rewrite took {max:?} to reach traffic: {delays:?}"
    );
}

/// Pins "editing a file never takes routes down" for a slow in-place edit: the route
/// file is truncated (as an editor saving in place does first), stays empty for 500 ms
/// while traffic flows, then gets the new version. No request fails meanwhile (the old
/// route keeps serving), and the new version is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_in_place_edit_keeps_routes() {
    const HOST: &str = "slowedit.example";
    let fx = Fixture::new("reload-slowedit", test_addr(4, 9), 18080);
    let _old = fx.backend("old").await;
    let _new = fx.backend("new").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "old"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("old-0"))
        .await;

    // Truncate in place, keep the file empty for a while, then write the new version.
    let file = std::fs::File::create(fx.path("route.yaml")).expect("truncate route.yaml");
    let (n, bad) = unexpected_answers(addr, HOST, "old-0", Duration::from_millis(500)).await;
    std::io::Write::write_all(&mut &file, mk_route(&fx.ns, "r", GATEWAY, "new").as_bytes())
        .expect("write route.yaml");
    drop(file);
    assert!(
        bad.is_empty(),
        "{} of {n} requests failed while route.yaml was empty mid-edit (first 5):\n{}",
        bad.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("new-0"))
        .await;
}

/// Pins hot reload for clients that open a new connection per request: while 2 such
/// clients run, the route file is rewritten 20 times (each time to another backend); no
/// connection is refused or reset and no request fails (route changes never re-open
/// the listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_new_connections() {
    const VERSIONS: usize = 20;
    const HOST: &str = "fresh.example";
    let fx = Fixture::new("reload-fresh", test_addr(4, 10), 18080);
    let mut echoes = Vec::new();
    let mut services = Vec::new();
    for k in 0..=VERSIONS {
        let name = format!("b{k}");
        let echo = EchoServer::start(&fx.ns, &name, &format!("{name}-0")).await;
        services.push(mk_service_with_endpoints(
            &fx.ns,
            &name,
            SERVICE_PORT,
            echo.port(),
        ));
        echoes.push(echo);
    }
    fx.write("services.yaml", &docs(&services));
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "b0"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, HOST, "/", T, |r| r.pod().as_deref() == Some("b0-0"))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| spawn_load_with(addr, HOST, stop.clone(), backend_index, true))
        .collect();
    for k in 1..=VERSIONS {
        fx.write(
            "route.yaml",
            &mk_route(&fx.ns, "r", GATEWAY, &format!("b{k}")),
        );
        let want = format!("b{k}-0");
        s.wait_reply(addr, HOST, "/", T, |r| {
            r.pod().as_deref() == Some(want.as_str())
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut ok = 0;
    for l in loads {
        let l = l.await.expect("load");
        ok += l.ok;
        failures.extend(l.failures);
    }
    assert!(ok > 0, "no load went through");
    assert!(
        failures.is_empty(),
        "{} of {} requests on new connections failed during reloads (first 20):\n{}",
        failures.len(),
        failures.len() as u64 + ok,
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
