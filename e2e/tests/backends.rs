//! Backend resolution: Service ports without names, endpoint readiness, weights that
//! leave nothing to send to, backendRefs to ports a Service does not have.
//! Addresses: 127.77.9.<test>.

use serde_json::json;
use sluice_e2e::harness::{find_object, has_condition};
use sluice_e2e::manifests::{docs, HttpRoute, Rule, SERVICE_PORT};
use sluice_e2e::{test_addr, EchoServer, Fixture, HttpClient, Sluice, GATEWAY};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn to_yaml(v: &serde_json::Value) -> String {
    serde_yaml::to_string(v).expect("yaml")
}

/// Pins the most common Service shape: one port without a name, and an EndpointSlice
/// whose port has no name either; the route's backendRef (by port number) resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_service_port() {
    let fx = Fixture::new("backends-unnamed", test_addr(9, 1), 18080);
    let echo = EchoServer::start(&fx.ns, "plain", "plain-0").await;
    fx.write(
        "svc.yaml",
        &docs(&[
            to_yaml(&json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "plain", "namespace": fx.ns},
                "spec": {"ports": [{"port": SERVICE_PORT, "protocol": "TCP", "targetPort": echo.port()}]},
            })),
            to_yaml(&json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "plain-abc", "namespace": fx.ns,
                             "labels": {"kubernetes.io/service-name": "plain"}},
                "addressType": "IPv4",
                "ports": [{"port": echo.port(), "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
            })),
        ]),
    );
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .rule(Rule::new().backend("plain", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "plain.example", "/", T, |r| {
        r.pod().as_deref() == Some("plain-0")
    })
    .await;
}

/// Pins "ready endpoints only": of two endpoints, the one with `ready: false` gets no
/// traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_endpoints_skipped() {
    let fx = Fixture::new("backends-ready", test_addr(9, 2), 18080);
    let ready = EchoServer::start(&fx.ns, "svc", "ready-0").await;
    let unready = EchoServer::start(&fx.ns, "svc", "unready-0").await;
    let slice = |name: &str, port: u16, is_ready: bool| {
        to_yaml(&json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": fx.ns, "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": is_ready}}],
        }))
    };
    fx.write(
        "svc.yaml",
        &docs(&[
            to_yaml(&json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "svc", "namespace": fx.ns},
                "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]},
            })),
            slice("svc-a", ready.port(), true),
            slice("svc-b", unready.port(), false),
        ]),
    );
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .rule(Rule::new().backend("svc", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "ready.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    for _ in 0..100 {
        let r = c.get(host, "/").await.expect("GET");
        assert_eq!(
            r.pod().as_deref(),
            Some("ready-0"),
            "{} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(
        unready.requests(),
        0,
        "the not-ready endpoint received traffic"
    );
}

/// Pins the spec's rule for a rule whose backendRefs all have weight 0: every request
/// gets 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_zero_weights_get_500() {
    let fx = Fixture::new("backends-zero", test_addr(9, 3), 18080);
    let a = fx.backend("a").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .rule(Rule::new().backend("a", SERVICE_PORT, Some(0)))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "zero.example";
    let r = s
        .wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status != 404)
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let mut c = HttpClient::new(fx.gateway_addr());
    for _ in 0..20 {
        assert_eq!(c.get(host, "/").await.expect("GET").status, 500);
    }
    assert_eq!(a.requests(), 0);
}

/// Pins a backendRef to a port the Service does not expose: its share answers 500 and
/// the route says ResolvedRefs False.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_port_not_in_service() {
    let fx = Fixture::new("backends-port", test_addr(9, 4), 18080);
    let a = fx.backend("a").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .rule(Rule::new().backend("a", 9999, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("route r ResolvedRefs False", T, |st| {
            find_object(st, "HTTPRoute", Some(&ns), "r").is_some_and(|r| {
                has_condition(
                    &r["status"]["parents"][0]["conditions"],
                    "ResolvedRefs",
                    "False",
                    None,
                )
            })
        })
        .await;
    let route = find_object(&status, "HTTPRoute", Some(&ns), "r").expect("route");
    assert!(
        has_condition(
            &route["status"]["parents"][0]["conditions"],
            "Accepted",
            "True",
            None
        ),
        "{route:#}"
    );
    let host = "port.example";
    let r = s
        .wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status != 404)
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(a.requests(), 0);
}

/// Pins the cross-namespace rule for backendRefs: without a ReferenceGrant, a route may
/// not send traffic to a Service in another namespace. The route says ResolvedRefs False
/// RefNotPermitted and the request gets 500; the other namespace's backend sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_backend_needs_grant() {
    let fx = Fixture::new("backends-xns", test_addr(9, 5), 18080);
    let other = "backends-xns-other";
    let echo = EchoServer::start(other, "secret", "secret-0").await;
    fx.write(
        "other.yaml",
        &docs(&[
            sluice_e2e::manifests::mk_namespace(other),
            sluice_e2e::manifests::mk_service_with_endpoints(
                other,
                "secret",
                SERVICE_PORT,
                echo.port(),
            ),
        ]),
    );
    let route = to_yaml(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": fx.ns},
        "spec": {
            "parentRefs": [{"name": GATEWAY}],
            "rules": [{"backendRefs": [{"name": "secret", "namespace": other, "port": SERVICE_PORT}]}],
        },
    }));
    fx.write("route.yaml", &route);
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("route r ResolvedRefs False", T, |st| {
            find_object(st, "HTTPRoute", Some(&ns), "r").is_some_and(|r| {
                has_condition(
                    &r["status"]["parents"][0]["conditions"],
                    "ResolvedRefs",
                    "False",
                    None,
                )
            })
        })
        .await;
    let r = find_object(&status, "HTTPRoute", Some(&ns), "r").expect("route");
    assert!(
        has_condition(
            &r["status"]["parents"][0]["conditions"],
            "ResolvedRefs",
            "False",
            Some("RefNotPermitted")
        ),
        "{r:#}"
    );
    let reply = s
        .wait_reply(fx.gateway_addr(), "xns.example", "/", T, |r| {
            r.status != 404
        })
        .await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(
        echo.requests(),
        0,
        "traffic reached a Service in another namespace without a ReferenceGrant"
    );
}
