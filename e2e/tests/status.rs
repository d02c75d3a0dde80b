//! Statuses in `/status`, shaped as the Kubernetes API holds them: GatewayClass and
//! Gateway conditions, addresses, per-listener attachedRoutes, HTTPRoute per-parent
//! conditions with `observedGeneration` following `metadata.generation`.
//! Addresses: 127.77.6.<test>.

use serde_json::Value;
use sluice_e2e::harness::{condition, find_object, has_condition};
use sluice_e2e::manifests::{
    mk_route, HttpRoute, Rule, CONTROLLER_NAME, GATEWAY_CLASS, SERVICE_PORT,
};
use sluice_e2e::{test_addr, Fixture, Sluice, GATEWAY};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Every condition in `conditions` has `observedGeneration == generation`.
fn all_observed(conditions: &Value, generation: u64) -> bool {
    conditions.as_array().is_some_and(|cs| {
        !cs.is_empty()
            && cs
                .iter()
                .all(|c| c["observedGeneration"].as_u64() == Some(generation))
    })
}

/// Pins the Gateway's status: GatewayClass Accepted; Gateway Accepted and Programmed
/// (observedGeneration current), `addresses[0]` the IPAddress it binds, and listener
/// `http` Accepted, Programmed, ResolvedRefs with `attachedRoutes` 2 and HTTPRoute
/// among its supportedKinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status() {
    let fx = Fixture::new("status-gw", test_addr(6, 1), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route1.yaml", &mk_route(&fx.ns, "r1", GATEWAY, "echo"));
    fx.write("route2.yaml", &mk_route(&fx.ns, "r2", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("Gateway gw Programmed with 2 attached routes", T, |st| {
            find_object(st, "Gateway", Some(&ns), GATEWAY).is_some_and(|g| {
                has_condition(&g["status"]["conditions"], "Programmed", "True", None)
                    && g["status"]["listeners"][0]["attachedRoutes"] == 2
            })
        })
        .await;

    let class =
        find_object(&status, "GatewayClass", None, GATEWAY_CLASS).expect("GatewayClass in /status");
    assert!(
        has_condition(
            &class["status"]["conditions"],
            "Accepted",
            "True",
            Some("Accepted")
        ),
        "GatewayClass: {class:#}"
    );

    let gw = find_object(&status, "Gateway", Some(&ns), GATEWAY).expect("Gateway in /status");
    assert_eq!(gw["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(gw["metadata"]["generation"], 1, "{gw:#}");
    let conds = &gw["status"]["conditions"];
    assert!(
        has_condition(conds, "Accepted", "True", Some("Accepted")),
        "{gw:#}"
    );
    assert!(
        has_condition(conds, "Programmed", "True", Some("Programmed")),
        "{gw:#}"
    );
    assert!(
        all_observed(conds, 1),
        "Gateway conditions' observedGeneration: {gw:#}"
    );
    let address = &gw["status"]["addresses"][0];
    assert_eq!(address["value"], fx.addr.to_string(), "{gw:#}");
    assert_eq!(address["type"], "IPAddress", "{gw:#}");

    let listeners = gw["status"]["listeners"]
        .as_array()
        .expect("status.listeners");
    assert_eq!(listeners.len(), 1, "{gw:#}");
    let l = &listeners[0];
    assert_eq!(l["name"], "http");
    assert_eq!(l["attachedRoutes"], 2);
    for t in ["Accepted", "Programmed", "ResolvedRefs"] {
        assert!(
            has_condition(&l["conditions"], t, "True", None),
            "listener condition {t}: {l:#}"
        );
    }
    assert!(
        l["supportedKinds"]
            .as_array()
            .is_some_and(|ks| ks.iter().any(|k| k["kind"] == "HTTPRoute")),
        "supportedKinds: {l:#}"
    );
}

/// Pins the HTTPRoute's status and generation tracking: a new route has generation 1
/// and a parent entry (our controllerName, parentRef gw) Accepted and ResolvedRefs
/// True with observedGeneration 1; changing its spec bumps `metadata.generation` to 2
/// and the conditions follow to observedGeneration 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_status_follows_generation() {
    let fx = Fixture::new("status-route", test_addr(6, 2), 18080);
    let _echo = fx.backend("echo").await;
    let route = |path: &str| {
        HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .rule(
                Rule::new()
                    .path_prefix(path)
                    .backend("echo", SERVICE_PORT, None),
            )
            .yaml()
    };
    fx.write("route.yaml", &route("/v1"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let accepted_at = |generation: u64| {
        let ns = ns.clone();
        move |st: &Value| {
            find_object(st, "HTTPRoute", Some(&ns), "r").is_some_and(|r| {
                r["metadata"]["generation"] == generation
                    && all_observed(&r["status"]["parents"][0]["conditions"], generation)
            })
        }
    };
    let status = s
        .wait_status("HTTPRoute r at generation 1", T, accepted_at(1))
        .await;
    let r = find_object(&status, "HTTPRoute", Some(&ns), "r").expect("route");
    let parents = r["status"]["parents"].as_array().expect("status.parents");
    assert_eq!(parents.len(), 1, "{r:#}");
    let p = &parents[0];
    assert_eq!(p["controllerName"], CONTROLLER_NAME, "{r:#}");
    assert_eq!(p["parentRef"]["name"], GATEWAY, "{r:#}");
    assert!(
        has_condition(&p["conditions"], "Accepted", "True", Some("Accepted")),
        "{r:#}"
    );
    assert!(
        has_condition(
            &p["conditions"],
            "ResolvedRefs",
            "True",
            Some("ResolvedRefs")
        ),
        "{r:#}"
    );

    fx.write("route.yaml", &route("/v2"));
    let status = s
        .wait_status("HTTPRoute r at generation 2", T, accepted_at(2))
        .await;
    let r = find_object(&status, "HTTPRoute", Some(&ns), "r").expect("route");
    let accepted =
        condition(&r["status"]["parents"][0]["conditions"], "Accepted").expect("Accepted");
    assert_eq!(accepted["status"], "True", "{r:#}");
    s.wait_reply(fx.gateway_addr(), "status.example", "/v2", T, |r| {
        r.status == 200
    })
    .await;
}

/// Pins NotAllowedByListeners/NoMatchingParent-style rejection surfacing in status: a
/// route naming a listener (sectionName) the Gateway does not have is not Accepted,
/// and the Gateway's listener counts no attached route for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_to_missing_listener_not_accepted() {
    let fx = Fixture::new("status-nomatch", test_addr(6, 3), 18080);
    let _echo = fx.backend("echo").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "r")
            .parent_section(GATEWAY, "nope")
            .rule(Rule::new().backend("echo", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("HTTPRoute r Accepted False", T, |st| {
            find_object(st, "HTTPRoute", Some(&ns), "r").is_some_and(|r| {
                has_condition(
                    &r["status"]["parents"][0]["conditions"],
                    "Accepted",
                    "False",
                    None,
                )
            })
        })
        .await;
    let r = find_object(&status, "HTTPRoute", Some(&ns), "r").expect("route");
    let reason = condition(&r["status"]["parents"][0]["conditions"], "Accepted").expect("Accepted")
        ["reason"]
        .clone();
    assert_eq!(reason, "NoMatchingParent", "{r:#}");
    let gw = find_object(&status, "Gateway", Some(&ns), GATEWAY).expect("gateway");
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 0, "{gw:#}");
}

/// Pins that `metadata.generation` follows the spec only: in one file write, route
/// `meta` gets a new label (metadata only) while route `spec` gets a new path; `spec`
/// goes to generation 2, `meta` stays at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_change_keeps_generation() {
    let fx = Fixture::new("status-meta", test_addr(6, 4), 18080);
    let _echo = fx.backend("echo").await;
    let routes = |label: &str, path: &str| {
        sluice_e2e::manifests::docs(&[
            HttpRoute::new(&fx.ns, "meta")
                .label("edit", label)
                .parent(GATEWAY)
                .rule(
                    Rule::new()
                        .path_prefix("/meta")
                        .backend("echo", SERVICE_PORT, None),
                )
                .yaml(),
            HttpRoute::new(&fx.ns, "spec")
                .parent(GATEWAY)
                .rule(
                    Rule::new()
                        .path_prefix(path)
                        .backend("echo", SERVICE_PORT, None),
                )
                .yaml(),
        ])
    };
    fx.write("routes.yaml", &routes("one", "/spec1"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    s.wait_status("both routes at generation 1", T, |st| {
        ["meta", "spec"].iter().all(|n| {
            find_object(st, "HTTPRoute", Some(&ns), n)
                .is_some_and(|r| r["metadata"]["generation"] == 1)
        })
    })
    .await;
    fx.write("routes.yaml", &routes("two", "/spec2"));
    let status = s
        .wait_status("route spec at generation 2", T, |st| {
            find_object(st, "HTTPRoute", Some(&ns), "spec")
                .is_some_and(|r| r["metadata"]["generation"] == 2)
        })
        .await;
    let meta = find_object(&status, "HTTPRoute", Some(&ns), "meta").expect("meta");
    assert_eq!(
        meta["metadata"]["generation"], 1,
        "a label change bumped the generation: {meta:#}"
    );
    assert!(
        all_observed(&meta["status"]["parents"][0]["conditions"], 1),
        "{meta:#}"
    );
}

/// Pins status following changes: a route to a Service that does not exist yet has
/// ResolvedRefs False BackendNotFound; writing the Service flips it to True; attaching
/// a second route raises the listener's attachedRoutes to 2 and deleting it lowers it
/// back to 1; deleting the Gateway's file removes the Gateway from `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_changes() {
    let fx = Fixture::new("status-changes", test_addr(6, 5), 18080);
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "late"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let resolved = |want: &'static str, reason: &'static str| {
        let ns = ns.clone();
        move |st: &Value| {
            find_object(st, "HTTPRoute", Some(&ns), "r").is_some_and(|r| {
                has_condition(
                    &r["status"]["parents"][0]["conditions"],
                    "ResolvedRefs",
                    want,
                    Some(reason),
                )
            })
        }
    };
    s.wait_status(
        "ResolvedRefs False BackendNotFound",
        T,
        resolved("False", "BackendNotFound"),
    )
    .await;
    let _late = fx.backend("late").await;
    s.wait_status("ResolvedRefs True", T, resolved("True", "ResolvedRefs"))
        .await;

    let attached = |n: u64| {
        let ns = ns.clone();
        move |st: &Value| {
            find_object(st, "Gateway", Some(&ns), GATEWAY)
                .is_some_and(|g| g["status"]["listeners"][0]["attachedRoutes"] == n)
        }
    };
    s.wait_status("attachedRoutes 1", T, attached(1)).await;
    fx.write("route2.yaml", &mk_route(&fx.ns, "r2", GATEWAY, "late"));
    s.wait_status("attachedRoutes 2", T, attached(2)).await;
    fx.remove("route2.yaml");
    s.wait_status("attachedRoutes 1 again", T, attached(1))
        .await;

    fx.remove("gateway.yaml");
    s.wait_status("Gateway gone", T, |st| {
        find_object(st, "Gateway", Some(&ns), GATEWAY).is_none()
    })
    .await;
}

/// Pins per-parent route status: a route attached to two Gateways has one `parents`
/// entry for each, both Accepted, and is served by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_with_two_parents() {
    let fx = Fixture::new("status-two", test_addr(6, 6), 18080);
    let _echo = fx.backend("echo").await;
    let second = std::net::SocketAddr::new(test_addr(6, 7), 18080);
    fx.write(
        "gw2.yaml",
        &sluice_e2e::manifests::mk_gateway(&fx.ns, "gw2", second.ip(), second.port()),
    );
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "r")
            .parent(GATEWAY)
            .parent("gw2")
            .rule(Rule::new().backend("echo", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("two Accepted parents", T, |st| {
            find_object(st, "HTTPRoute", Some(&ns), "r").is_some_and(|r| {
                r["status"]["parents"].as_array().is_some_and(|ps| {
                    ps.len() == 2
                        && ps
                            .iter()
                            .all(|p| has_condition(&p["conditions"], "Accepted", "True", None))
                })
            })
        })
        .await;
    let r = find_object(&status, "HTTPRoute", Some(&ns), "r").expect("route");
    let mut names: Vec<&str> = r["status"]["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .filter_map(|p| p["parentRef"]["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["gw", "gw2"], "{r:#}");
    for addr in [fx.gateway_addr(), second] {
        s.wait_reply(addr, "two.example", "/", T, |r| {
            r.pod().as_deref() == Some("echo-0")
        })
        .await;
    }
}
