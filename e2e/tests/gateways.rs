//! Gateways and listeners as attachment points: several Gateways on one port at their
//! own addresses, the folder-mode address pool, allowedRoutes namespaces, and listener
//! hostnames intersected with route hostnames. Addresses: 127.77.7.<test>
//! (pool: 127.78.7.0/24).

use serde_json::Value;
use sluice_e2e::harness::{condition, find_object, has_condition};
use sluice_e2e::manifests::{
    docs, mk_gateway_at, mk_gateway_with_listeners, mk_namespace, mk_route,
    mk_service_with_endpoints, HttpRoute, ListenerSpec, Rule, SERVICE_PORT,
};
use sluice_e2e::{test_addr, EchoServer, Fixture, HttpClient, Sluice, GATEWAY};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn route_parent_conditions<'a>(
    status: &'a Value,
    ns: &str,
    name: &str,
    section: Option<&str>,
) -> Option<&'a Value> {
    let parents =
        find_object(status, "HTTPRoute", Some(ns), name)?["status"]["parents"].as_array()?;
    let p = parents
        .iter()
        .find(|p| p["parentRef"]["sectionName"].as_str() == section)?;
    Some(&p["conditions"])
}

/// Pins "each Gateway binds its own address": two Gateways on the same port at two
/// addresses each serve only the routes attached to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_same_port() {
    let fx = Fixture::new("gw-two", test_addr(7, 1), 18080);
    let _a = fx.backend("a").await;
    let _b = fx.backend("b").await;
    let second = SocketAddr::new(test_addr(7, 2), 18080);
    fx.write(
        "gateway2.yaml",
        &sluice_e2e::manifests::mk_gateway(&fx.ns, "gw2", second.ip(), second.port()),
    );
    fx.write("route-a.yaml", &mk_route(&fx.ns, "ra", GATEWAY, "a"));
    fx.write("route-b.yaml", &mk_route(&fx.ns, "rb", "gw2", "b"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "x.example", "/", T, |r| r.status == 200)
        .await;
    s.wait_reply(second, "x.example", "/", T, |r| r.status == 200)
        .await;
    for _ in 0..20 {
        let ra = HttpClient::new(fx.gateway_addr())
            .get("x.example", "/")
            .await
            .expect("GET gw");
        assert_eq!(
            ra.pod().as_deref(),
            Some("a-0"),
            "gw answered {} {}",
            ra.status,
            ra.text()
        );
        let rb = HttpClient::new(second)
            .get("x.example", "/")
            .await
            .expect("GET gw2");
        assert_eq!(
            rb.pod().as_deref(),
            Some("b-0"),
            "gw2 answered {} {}",
            rb.status,
            rb.text()
        );
    }
}

/// Pins the folder-mode address pool: a Gateway without `spec.addresses` gets an
/// address of `--gateway-address-pool`, reports it in `status.addresses`, and serves
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_address() {
    let fx = Fixture::new("gw-pool", test_addr(7, 3), 18080);
    let _echo = fx.backend("echo").await;
    fx.write(
        "gateway.yaml",
        &mk_gateway_at(&fx.ns, GATEWAY, None, &[ListenerSpec::http("http", 18080)]),
    );
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_with_args(fx.dir(), &["--gateway-address-pool", "127.78.7.0/24"]);
    s.wait_ready(T).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("Gateway gw with an address", T, |st| {
            find_object(st, "Gateway", Some(&ns), GATEWAY)
                .is_some_and(|g| g["status"]["addresses"][0]["value"].is_string())
        })
        .await;
    let gw = find_object(&status, "Gateway", Some(&ns), GATEWAY).expect("gateway");
    let addr: IpAddr = gw["status"]["addresses"][0]["value"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("status.addresses[0] is not an IP: {gw:#}"));
    let IpAddr::V4(v4) = addr else {
        panic!("pool address {addr} is not IPv4")
    };
    assert_eq!(
        v4.octets()[..3],
        [127, 78, 7],
        "address {addr} is outside 127.78.7.0/24: {gw:#}"
    );
    s.wait_reply(SocketAddr::new(addr, 18080), "pool.example", "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;
}

/// Pins allowedRoutes namespaces: a route in namespace `apps` attaches to a listener
/// with `from: All` of a Gateway in `infra` and is served there, but not to a listener
/// with `from: Same` (NotAllowedByListeners when it names that listener; 404 there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_allowed_routes() {
    let fx = Fixture::new("gw-infra", test_addr(7, 4), 18080);
    let apps = "gw-apps";
    let echo = EchoServer::start(apps, "app", "app-0").await;
    fx.write(
        "gateway.yaml",
        &mk_gateway_with_listeners(
            &fx.ns,
            GATEWAY,
            fx.addr,
            &[
                ListenerSpec::http("same", 18080),
                ListenerSpec::http("all", 18081).allow_from("All"),
            ],
        ),
    );
    fx.write(
        "apps.yaml",
        &docs(&[
            mk_namespace(apps),
            mk_service_with_endpoints(apps, "app", SERVICE_PORT, echo.port()),
        ]),
    );
    fx.write(
        "route-any.yaml",
        &HttpRoute::new(apps, "any")
            .parent_ref(&fx.ns, GATEWAY, None)
            .hostname("any.example")
            .rule(Rule::new().backend("app", SERVICE_PORT, None))
            .yaml(),
    );
    fx.write(
        "route-same.yaml",
        &HttpRoute::new(apps, "same")
            .parent_ref(&fx.ns, GATEWAY, Some("same"))
            .hostname("same.example")
            .rule(Rule::new().backend("app", SERVICE_PORT, None))
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let status = s
        .wait_status("routes any Accepted, same NotAllowedByListeners", T, |st| {
            route_parent_conditions(st, apps, "any", None)
                .is_some_and(|c| has_condition(c, "Accepted", "True", None))
                && route_parent_conditions(st, apps, "same", Some("same"))
                    .is_some_and(|c| has_condition(c, "Accepted", "False", None))
        })
        .await;
    let same = route_parent_conditions(&status, apps, "same", Some("same")).expect("same");
    assert_eq!(
        condition(same, "Accepted").expect("Accepted")["reason"],
        "NotAllowedByListeners",
        "{status:#}"
    );
    let all = SocketAddr::new(fx.addr, 18081);
    let same_listener = SocketAddr::new(fx.addr, 18080);
    s.wait_reply(all, "any.example", "/", T, |r| {
        r.pod().as_deref() == Some("app-0")
    })
    .await;
    let mut c = HttpClient::new(same_listener);
    for host in ["any.example", "same.example"] {
        let r = c.get(host, "/").await.expect("GET on listener same");
        assert_eq!(
            r.status,
            404,
            "{host} on listener `same` (from: Same): {} {}",
            r.status,
            r.text()
        );
    }
    let gw = find_object(&status, "Gateway", Some(&fx.ns), GATEWAY).expect("gateway");
    let attached = |name: &str| {
        gw["status"]["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name))
            .map(|l| l["attachedRoutes"].clone())
    };
    assert_eq!(attached("all"), Some(Value::from(1)), "{gw:#}");
    assert_eq!(attached("same"), Some(Value::from(0)), "{gw:#}");
}

/// Pins hostname intersection: with a listener hostname `*.example.com`, a route's
/// hostnames are served only where they intersect it, a route without hostnames takes
/// the listener's, and a route with no intersecting hostname is not Accepted
/// (NoMatchingListenerHostname).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_intersection() {
    let fx = Fixture::new("gw-hosts", test_addr(7, 5), 18080);
    let _some = fx.backend("some").await;
    let _none = fx.backend("nohosts").await;
    let _never = fx.backend("never").await;
    fx.write(
        "gateway.yaml",
        &mk_gateway_with_listeners(
            &fx.ns,
            GATEWAY,
            fx.addr,
            &[ListenerSpec::http("http", 18080).hostname("*.example.com")],
        ),
    );
    let route = |name: &str, hosts: &[&str], backend: &str, path: &str| {
        let mut r = HttpRoute::new(&fx.ns, name).parent(GATEWAY);
        for h in hosts {
            r = r.hostname(h);
        }
        r.rule(
            Rule::new()
                .path_prefix(path)
                .backend(backend, SERVICE_PORT, None),
        )
        .yaml()
    };
    fx.write(
        "route-some.yaml",
        &route("some", &["foo.example.com", "bar.other.org"], "some", "/"),
    );
    fx.write(
        "route-nohosts.yaml",
        &route("nohosts", &[], "nohosts", "/nohosts"),
    );
    fx.write(
        "route-never.yaml",
        &route("never", &["only.other.org"], "never", "/"),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("route never not Accepted", T, |st| {
            route_parent_conditions(st, &ns, "never", None)
                .is_some_and(|c| has_condition(c, "Accepted", "False", None))
        })
        .await;
    let never = route_parent_conditions(&status, &ns, "never", None).expect("never");
    assert_eq!(
        condition(never, "Accepted").expect("Accepted")["reason"],
        "NoMatchingListenerHostname",
        "{status:#}"
    );
    s.wait_reply(fx.gateway_addr(), "foo.example.com", "/", T, |r| {
        r.status == 200
    })
    .await;

    let mut c = HttpClient::new(fx.gateway_addr());
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("foo.example.com", "/", Some("some-0")),
        ("bar.other.org", "/", None),
        ("only.other.org", "/", None),
        ("x.example.com", "/nohosts", Some("nohosts-0")),
        ("a.b.example.com", "/nohosts/x", Some("nohosts-0")),
        ("other.org", "/nohosts", None),
        ("example.com", "/nohosts", None),
    ];
    let mut bad = Vec::new();
    for (host, path, want) in cases {
        let r = c.get(host, path).await.expect("GET");
        let got = if r.status == 200 { r.pod() } else { None };
        let ok = match want {
            Some(_) => got.as_deref() == *want,
            None => r.status == 404,
        };
        if !ok {
            bad.push(format!(
                "http://{host}{path}: want {want:?}, got {} {}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(bad.is_empty(), "hostname intersection:\n{}", bad.join("\n"));
}

/// Pins a bad listener affecting only itself: a `UDP` listener next to an HTTP one is
/// not Accepted (UnsupportedProtocol) and its port is not bound, while the HTTP
/// listener serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_listener_protocol() {
    let fx = Fixture::new("gw-proto", test_addr(7, 6), 18080);
    let _echo = fx.backend("echo").await;
    let gw = mk_gateway_with_listeners(
        &fx.ns,
        GATEWAY,
        fx.addr,
        &[
            ListenerSpec::http("http", 18080),
            ListenerSpec::http("udp", 18081),
        ],
    );
    // The builder writes HTTP listeners: turn the second one into UDP.
    let (head, tail) = gw.split_at(gw.rfind("protocol: HTTP").expect("second listener"));
    let gw = format!(
        "{head}{}",
        tail.replacen("protocol: HTTP", "protocol: UDP", 1)
    );
    assert!(gw.contains("protocol: UDP"), "{gw}");
    fx.write("gateway.yaml", &gw);
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("listener udp not Accepted", T, |st| {
            find_object(st, "Gateway", Some(&ns), GATEWAY).is_some_and(|g| {
                g["status"]["listeners"].as_array().is_some_and(|ls| {
                    ls.iter().any(|l| {
                        l["name"] == "udp"
                            && has_condition(&l["conditions"], "Accepted", "False", None)
                    })
                })
            })
        })
        .await;
    let g = find_object(&status, "Gateway", Some(&ns), GATEWAY).expect("gateway");
    let udp = g["status"]["listeners"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "udp"))
        .expect("udp listener status");
    assert_eq!(
        condition(&udp["conditions"], "Accepted").expect("Accepted")["reason"],
        "UnsupportedProtocol",
        "{udp:#}"
    );
    s.wait_reply(fx.gateway_addr(), "proto.example", "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;
    assert!(
        !sluice_e2e::client::port_open(SocketAddr::new(fx.addr, 18081)).await,
        "the UDP listener's port is bound for TCP"
    );
}
