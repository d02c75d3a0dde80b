//! Traffic splitting: backendRef weights, a backendRef that does not resolve (500 for
//! its share), and load balancing across a Service's endpoints.
//! Addresses: 127.77.3.<test>.

use sluice_e2e::harness::{find_object, has_condition};
use sluice_e2e::manifests::{mk_service_with_endpoint_ports, HttpRoute, Rule, SERVICE_PORT};
use sluice_e2e::{test_addr, EchoServer, Fixture, HttpClient, Sluice, GATEWAY};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Sends `n` GETs over `conns` keep-alive connections in parallel; returns how many
/// answers each outcome got: the echo pod, or `status <code>` when no echo server
/// answered. A transport error fails the test.
async fn tally(addr: SocketAddr, host: &str, n: usize, conns: usize) -> BTreeMap<String, usize> {
    let mut tasks = Vec::new();
    for i in 0..conns {
        let host = host.to_owned();
        let count = n / conns + usize::from(i < n % conns);
        tasks.push(tokio::spawn(async move {
            let mut c = HttpClient::new(addr);
            let mut out: BTreeMap<String, usize> = BTreeMap::new();
            for _ in 0..count {
                let r = c
                    .get(&host, "/")
                    .await
                    .unwrap_or_else(|e| panic!("GET: {e:#}"));
                let key = match r.pod() {
                    Some(pod) if r.status == 200 => pod,
                    _ => format!("status {}", r.status.as_u16()),
                };
                *out.entry(key).or_default() += 1;
            }
            out
        }));
    }
    let mut total = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("client task") {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

fn share(counts: &BTreeMap<String, usize>, key: &str, n: usize) -> f64 {
    counts.get(key).copied().unwrap_or(0) as f64 / n as f64
}

/// Pins weighted backendRefs: weights 70/30/0 over 1000 requests give shares within
/// ±0.05 of 0.7 and 0.3 (more than 3 standard deviations), and the weight-0 backend
/// receives no request at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_backends() {
    let fx = Fixture::new("weights", test_addr(3, 1), 18080);
    let _a = fx.backend("a").await;
    let _b = fx.backend("b").await;
    let zero = fx.backend("zero").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "split")
            .parent(GATEWAY)
            .rule(
                Rule::new()
                    .backend("a", SERVICE_PORT, Some(70))
                    .backend("b", SERVICE_PORT, Some(30))
                    .backend("zero", SERVICE_PORT, Some(0)),
            )
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "weights.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;

    let n = 1000;
    let counts = tally(fx.gateway_addr(), host, n, 4).await;
    let (a, b) = (share(&counts, "a-0", n), share(&counts, "b-0", n));
    assert!(
        (a - 0.7).abs() <= 0.05,
        "backend a got {a:.3} of the traffic, want 0.70±0.05: {counts:?}"
    );
    assert!(
        (b - 0.3).abs() <= 0.05,
        "backend b got {b:.3} of the traffic, want 0.30±0.05: {counts:?}"
    );
    assert_eq!(
        counts.get("zero-0"),
        None,
        "the weight-0 backend answered: {counts:?}"
    );
    assert_eq!(zero.requests(), 0, "the weight-0 backend received requests");
    assert_eq!(counts.values().sum::<usize>(), n);
    assert_eq!(counts.len(), 2, "only a and b answer: {counts:?}");
}

/// Pins the fail-closed rule for unresolvable backendRefs: with weights 1:1 between a
/// good Service and one that does not exist, about half of the requests get 500 and
/// the rest reach the good backend; the route's status says ResolvedRefs False
/// BackendNotFound while staying Accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_backend_gets_500_share() {
    let fx = Fixture::new("weights-missing", test_addr(3, 2), 18080);
    let _good = fx.backend("good").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "half-missing")
            .parent(GATEWAY)
            .rule(Rule::new().backend("good", SERVICE_PORT, Some(1)).backend(
                "missing",
                SERVICE_PORT,
                Some(1),
            ))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    s.wait_status(
        "HTTPRoute half-missing: Accepted True, ResolvedRefs False BackendNotFound",
        T,
        |st| {
            find_object(st, "HTTPRoute", Some(&ns), "half-missing").is_some_and(|o| {
                let c = &o["status"]["parents"][0]["conditions"];
                has_condition(c, "Accepted", "True", None)
                    && has_condition(c, "ResolvedRefs", "False", Some("BackendNotFound"))
            })
        },
    )
    .await;
    let host = "missing.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;

    let n = 600;
    let counts = tally(fx.gateway_addr(), host, n, 4).await;
    let errors = share(&counts, "status 500", n);
    let good = share(&counts, "good-0", n);
    assert!(
        (errors - 0.5).abs() <= 0.08,
        "500 share {errors:.3}, want 0.50±0.08: {counts:?}"
    );
    assert!(
        (good - 0.5).abs() <= 0.08,
        "good share {good:.3}, want 0.50±0.08: {counts:?}"
    );
    assert_eq!(
        counts.len(),
        2,
        "only 500s and the good backend: {counts:?}"
    );
}

/// Pins that a route whose only backendRef does not resolve answers 500 for every
/// request (not 404, not 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_missing_backend_gets_500() {
    let fx = Fixture::new("weights-all-missing", test_addr(3, 3), 18080);
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "all-missing")
            .parent(GATEWAY)
            .rule(Rule::new().backend("missing", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "missing.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status != 404)
        .await;
    let counts = tally(fx.gateway_addr(), host, 50, 1).await;
    assert_eq!(counts.get("status 500"), Some(&50), "{counts:?}");
}

/// Pins load balancing across a Service's endpoints: two ready endpoints (two
/// EndpointSlices) both receive a fair part of 400 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_load_balanced() {
    let fx = Fixture::new("weights-lb", test_addr(3, 4), 18080);
    let e0 = EchoServer::start(&fx.ns, "lb", "lb-0").await;
    let e1 = EchoServer::start(&fx.ns, "lb", "lb-1").await;
    fx.write(
        "svc-lb.yaml",
        &mk_service_with_endpoint_ports(&fx.ns, "lb", SERVICE_PORT, &[e0.port(), e1.port()]),
    );
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "lb")
            .parent(GATEWAY)
            .rule(Rule::new().backend("lb", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "lb.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;
    let n = 400;
    let counts = tally(fx.gateway_addr(), host, n, 4).await;
    for pod in ["lb-0", "lb-1"] {
        let sh = share(&counts, pod, n);
        assert!(
            sh >= 0.25,
            "endpoint {pod} got {sh:.3} of the traffic: {counts:?}"
        );
    }
}
