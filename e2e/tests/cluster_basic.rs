//! Cluster mode against the Kubernetes API simulator: the real binary with `KUBECONFIG`
//! pointing at `sluice-kubesim`. Objects are created through the simulator; traffic
//! flows through the proxy; statuses appear on the API objects.
//!
//! Addresses: this file uses `127.77.60.<test>`.

use serde_json::Value;
use sluice_e2e::harness::has_condition;
use sluice_e2e::manifests::{
    docs, mk_gateway, mk_gateway_class, mk_gateway_with_listeners, mk_route,
    mk_service_with_endpoints, HttpRoute, ListenerSpec, Rule, CONTROLLER_NAME, GATEWAY_CLASS,
    SERVICE_PORT,
};
use sluice_e2e::{test_addr, EchoServer, Sluice};
use sluice_kubesim::{Sim, SimOptions};
use std::net::SocketAddr;
use std::time::Duration;

const NS: &str = "default";
const T: Duration = Duration::from_secs(20);

fn programmed(gw: &Value) -> bool {
    has_condition(&gw["status"]["conditions"], "Programmed", "True", None)
}

fn route_accepted(route: &Value) -> bool {
    route["status"]["parents"].as_array().is_some_and(|ps| {
        ps.iter().any(|p| {
            p["controllerName"] == CONTROLLER_NAME
                && has_condition(&p["conditions"], "Accepted", "True", None)
        })
    })
}

/// Create → traffic flows and statuses (GatewayClass, Gateway, HTTPRoute) are written to
/// the API server by field manager `sluice` with server-side apply; an update and a
/// delete take effect; another controller's `parents[]` entry is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_and_statuses() {
    let sim = Sim::start(SimOptions::default()).expect("starting the simulator");
    let addr = test_addr(60, 1);
    let gw_addr = SocketAddr::new(addr, 8080);
    let a = EchoServer::start(NS, "a", "a-0").await;
    let b = EchoServer::start(NS, "b", "b-0").await;
    sim.put_yaml(&docs(&[
        mk_gateway_class(GATEWAY_CLASS),
        mk_gateway(NS, "gw", addr, 8080),
        mk_service_with_endpoints(NS, "a", SERVICE_PORT, a.port()),
        mk_service_with_endpoints(NS, "b", SERVICE_PORT, b.port()),
        mk_route(NS, "r", "gw", "a"),
    ]))
    .expect("creating objects");

    let mut sluice = Sluice::start_cluster(sim.kubeconfig_path(), "solo", &[]);
    sluice.wait_ready(T).await;
    let host = gw_addr.to_string();
    sluice
        .wait_reply(gw_addr, &host, "/x", T, |r| {
            r.status == 200 && r.pod().as_deref() == Some("a-0")
        })
        .await;

    // Statuses on the API objects.
    sim.wait_for_object_async("GatewayClass", "", GATEWAY_CLASS, T, |gc| {
        has_condition(&gc["status"]["conditions"], "Accepted", "True", None)
    })
    .await
    .expect("GatewayClass Accepted on the API server");
    let gw = sim
        .wait_for_object_async("Gateway", NS, "gw", T, programmed)
        .await
        .expect("Gateway Programmed on the API server");
    let gen = gw["metadata"]["generation"].as_i64();
    assert!(gen.is_some());
    assert_eq!(
        gw["status"]["conditions"][0]["observedGeneration"].as_i64(),
        gen,
        "observedGeneration is the API server's generation: {gw}"
    );
    sim.wait_for_object_async("HTTPRoute", NS, "r", T, route_accepted)
        .await
        .expect("HTTPRoute Accepted on the API server");
    let status_writes: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write() && r.is_status())
        .collect();
    assert!(!status_writes.is_empty());
    for w in &status_writes {
        assert_eq!(w.method, "PATCH", "{w:?}");
        assert_eq!(w.field_manager.as_deref(), Some("sluice"), "{w:?}");
        assert!(w.content_type.contains("apply-patch"), "{w:?}");
        assert!(
            w.user_agent.contains("solo-"),
            "user agent names the holder: {w:?}"
        );
    }

    let metrics = sluice.metrics().await;
    assert!(metrics.contains("sluice_leader 1"), "{metrics}");
    assert!(
        sluice_e2e::harness::metric_sum(
            &metrics,
            "sluice_status_writes_total",
            &[("result", "written")]
        )
        .is_some_and(|n| n >= 3.0),
        "{metrics}"
    );

    // No churn: with nothing changing, no further status writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sim
        .request_log()
        .iter()
        .filter(|r| r.is_write() && r.is_status())
        .count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sim
        .request_log()
        .iter()
        .filter(|r| r.is_write() && r.is_status())
        .count();
    assert_eq!(before, after, "status writes while nothing changed");

    // Update: the route now sends to b.
    sim.put_yaml(&mk_route(NS, "r", "gw", "b"))
        .expect("updating the route");
    sluice
        .wait_reply(gw_addr, &host, "/x", T, |r| {
            r.status == 200 && r.pod().as_deref() == Some("b-0")
        })
        .await;

    // Another controller's parents[] entry survives our next write. (`Sim::put` replaces
    // the whole object, status included: change spec and status in place.)
    let mut route = sim
        .wait_for_object_async("HTTPRoute", NS, "r", T, |r| {
            route_accepted(r) && r["metadata"]["generation"] == 2
        })
        .await
        .expect("route status for generation 2");
    let mut parents = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    parents.insert(
        0,
        serde_json::json!({
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": NS, "name": "other"},
            "controllerName": "example.com/other",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1, "lastTransitionTime": "2020-01-01T00:00:00Z"}],
        }),
    );
    route["status"]["parents"] = Value::Array(parents);
    sim.put(route.clone()).expect("writing a foreign parent");
    // A spec change (generation 3) makes us rewrite the route status.
    route["spec"]["rules"][0]["matches"] =
        serde_json::json!([{"path": {"type": "PathPrefix", "value": "/only"}}]);
    sim.put(route).expect("updating the route");
    let route = sim
        .wait_for_object_async("HTTPRoute", NS, "r", T, |r| {
            r["status"]["parents"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["controllerName"] == CONTROLLER_NAME
                        && p["conditions"][0]["observedGeneration"] == r["metadata"]["generation"]
                })
            })
        })
        .await
        .expect("route status rewritten for the new generation");
    assert!(
        route["status"]["parents"].as_array().is_some_and(|ps| ps
            .iter()
            .any(|p| p["controllerName"] == "example.com/other")),
        "the other controller's entry is kept: {route}"
    );
    sluice
        .wait_reply(gw_addr, &host, "/x", T, |r| r.status == 404)
        .await;

    // Delete: the route goes, traffic gets 404 on its path.
    sim.delete("HTTPRoute", NS, "r");
    sluice
        .wait_reply(gw_addr, &host, "/only", T, |r| r.status == 404)
        .await;
}

/// A Gateway API kind whose CRD is missing is skipped (Sluice still becomes ready and
/// serves the rest), and picked up when the CRD appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_is_picked_up_later() {
    let sim =
        Sim::start(SimOptions::default().without_gateway_api()).expect("starting the simulator");
    let mut sluice = Sluice::start_cluster(sim.kubeconfig_path(), "crd", &[]);
    sluice.wait_ready(T).await;
    sluice
        .wait_log("CRD warning", T, |l| l.contains("CRD not installed"))
        .await;

    let addr = test_addr(60, 2);
    let gw_addr = SocketAddr::new(addr, 8080);
    let a = EchoServer::start(NS, "a", "a-0").await;
    sim.install_gateway_api().expect("installing the CRDs");
    sim.put_yaml(&docs(&[
        mk_gateway_class(GATEWAY_CLASS),
        mk_gateway(NS, "gw", addr, 8080),
        mk_service_with_endpoints(NS, "a", SERVICE_PORT, a.port()),
        mk_route(NS, "r", "gw", "a"),
    ]))
    .expect("creating objects");
    sluice
        .wait_reply(
            gw_addr,
            &gw_addr.to_string(),
            "/",
            Duration::from_secs(30),
            |r| r.status == 200,
        )
        .await;
}

/// A notice (here: a parentRef naming a listener that does not exist) becomes one
/// Kubernetes Event on the route, published by the leader, not repeated while the
/// problem stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_become_events() {
    let sim = Sim::start(SimOptions::default()).expect("starting the simulator");
    let addr = test_addr(60, 3);
    let a = EchoServer::start(NS, "a", "a-0").await;
    sim.put_yaml(&docs(&[
        mk_gateway_class(GATEWAY_CLASS),
        mk_gateway(NS, "gw", addr, 8080),
        mk_service_with_endpoints(NS, "a", SERVICE_PORT, a.port()),
        sluice_e2e::manifests::HttpRoute::new(NS, "bad")
            .parent_section("gw", "nope")
            .rule(sluice_e2e::manifests::Rule::new().backend("a", SERVICE_PORT, None))
            .yaml(),
    ]))
    .expect("creating objects");
    let mut sluice = Sluice::start_cluster(sim.kubeconfig_path(), "events", &[]);
    sluice.wait_ready(T).await;
    let about_bad =
        |e: &Value| e["regarding"]["name"] == "bad" || e["involvedObject"]["name"] == "bad";
    let found = sim
        .wait_for_async(T, |s| {
            s.objects("events.events.k8s.io").iter().any(about_bad)
        })
        .await;
    assert!(
        found,
        "no Event about route bad; events: {:?}",
        sim.objects("Event")
    );
    // Rebuilds (another object changes) do not publish it again.
    sim.put_yaml(&mk_route(NS, "good", "gw", "a"))
        .expect("creating a route");
    let gw_addr = SocketAddr::new(addr, 8080);
    sluice
        .wait_reply(gw_addr, &gw_addr.to_string(), "/", T, |r| r.status == 200)
        .await;
    let creates = sim
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/events"))
        .count();
    assert_eq!(
        creates,
        1,
        "one Event created: {:?}",
        sim.objects("events.events.k8s.io")
    );
}

/// `--watch-namespace` limits the namespaced kinds: a route in another namespace is
/// neither served nor given a status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespace_limits_namespaced_kinds() {
    let sim = Sim::start(SimOptions::default()).expect("starting the simulator");
    let addr = test_addr(60, 4);
    let gw_addr = SocketAddr::new(addr, 8080);
    let a = EchoServer::start("team-a", "a", "a-0").await;
    let b = EchoServer::start("team-b", "b", "b-0").await;
    let shared_gw = mk_gateway_with_listeners(
        "team-a",
        "gw",
        addr,
        &[ListenerSpec::http("http", 8080).allow_from("All")],
    );
    sim.put_yaml(&docs(&[
        mk_gateway_class(GATEWAY_CLASS),
        shared_gw,
        mk_service_with_endpoints("team-a", "a", SERVICE_PORT, a.port()),
        mk_service_with_endpoints("team-b", "b", SERVICE_PORT, b.port()),
        HttpRoute::new("team-a", "ra")
            .parent("gw")
            .rule(
                Rule::new()
                    .path_prefix("/a")
                    .backend("a", SERVICE_PORT, None),
            )
            .yaml(),
        HttpRoute::new("team-b", "rb")
            .parent_ref("team-a", "gw", None)
            .rule(
                Rule::new()
                    .path_prefix("/b")
                    .backend("b", SERVICE_PORT, None),
            )
            .yaml(),
    ]))
    .expect("creating objects");
    let mut sluice = Sluice::start_cluster(
        sim.kubeconfig_path(),
        "scoped",
        &["--watch-namespace", "team-a"],
    );
    sluice.wait_ready(T).await;
    let host = gw_addr.to_string();
    sluice
        .wait_reply(gw_addr, &host, "/a", T, |r| r.status == 200)
        .await;
    let r = sluice_e2e::client::get(gw_addr, &host, "/b")
        .await
        .expect("GET /b");
    assert_eq!(
        r.status, 404,
        "route of an unwatched namespace is not served"
    );
    sim.wait_for_object_async("HTTPRoute", "team-a", "ra", T, route_accepted)
        .await
        .expect("route in the watched namespace gets a status");
    let rb = sim.get("HTTPRoute", "team-b", "rb").expect("rb exists");
    assert!(rb["status"]["parents"].is_null(), "no status outside: {rb}");
}
