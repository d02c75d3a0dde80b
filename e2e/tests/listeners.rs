//! Listeners follow the Gateway: a listener added to a Gateway is bound and a removed
//! one is closed, without restarting the process or dropping other connections.
//! Addresses: 127.77.5.<test>.

use sluice_e2e::client::port_open;
use sluice_e2e::harness::{find_object, POLL};
use sluice_e2e::manifests::{
    mk_gateway_with_listeners, mk_route, HttpRoute, ListenerSpec, Rule, SERVICE_PORT,
};
use sluice_e2e::{test_addr, Fixture, HttpClient, Sluice, GATEWAY};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// Polls until a TCP connection to `addr` is refused.
async fn wait_closed(s: &mut Sluice, addr: SocketAddr) {
    let deadline = Instant::now() + T;
    while port_open(addr).await {
        s.assert_running();
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections {T:?} after its listener was removed"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn attached_routes(status: &serde_json::Value, ns: &str, listener: &str) -> Option<u64> {
    find_object(status, "Gateway", Some(ns), GATEWAY)?["status"]["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == listener)?["attachedRoutes"]
        .as_u64()
}

/// Pins listener reconciliation: adding listener `b` (new port) to the Gateway binds it
/// and routes attach to it, while a keep-alive connection on listener `a` keeps working
/// on the same connection; removing `a` closes its port while `b` keeps serving on its
/// connection; the process is never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_added_and_removed() {
    let fx = Fixture::new("listeners", test_addr(5, 1), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let pid = s.pid();
    let a = SocketAddr::new(fx.addr, 18080);
    let b = SocketAddr::new(fx.addr, 18081);
    let host = "listeners.example";
    s.wait_reply(a, host, "/", T, |r| r.pod().as_deref() == Some("echo-0"))
        .await;
    assert!(
        !port_open(b).await,
        "{b} accepts connections before any listener asks for it"
    );

    let mut on_a = HttpClient::new(a);
    assert_eq!(on_a.get(host, "/").await.expect("GET on a").status, 200);

    // Add listener b.
    fx.write(
        "gateway.yaml",
        &mk_gateway_with_listeners(
            &fx.ns,
            GATEWAY,
            fx.addr,
            &[
                ListenerSpec::http("a", 18080),
                ListenerSpec::http("b", 18081),
            ],
        ),
    );
    s.wait_reply(b, host, "/", T, |r| r.pod().as_deref() == Some("echo-0"))
        .await;
    let r = on_a
        .get(host, "/")
        .await
        .expect("GET on a's kept-alive connection after b was added");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        on_a.connects(),
        1,
        "the connection on listener a was closed when b was added"
    );
    let ns = fx.ns.clone();
    s.wait_status("both listeners with 1 attached route", T, |st| {
        attached_routes(st, &ns, "a") == Some(1) && attached_routes(st, &ns, "b") == Some(1)
    })
    .await;

    let mut on_b = HttpClient::new(b);
    assert_eq!(on_b.get(host, "/").await.expect("GET on b").status, 200);

    // Remove listener a.
    fx.write(
        "gateway.yaml",
        &mk_gateway_with_listeners(&fx.ns, GATEWAY, fx.addr, &[ListenerSpec::http("b", 18081)]),
    );
    wait_closed(&mut s, a).await;
    let r = on_b
        .get(host, "/")
        .await
        .expect("GET on b's kept-alive connection after a was removed");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        on_b.connects(),
        1,
        "the connection on listener b was closed when a was removed"
    );
    s.wait_status("only listener b", T, |st| {
        attached_routes(st, &ns, "a").is_none() && attached_routes(st, &ns, "b") == Some(1)
    })
    .await;

    assert_eq!(s.pid(), pid);
    s.assert_running();
}

/// Pins that a Gateway added to the folder binds its own address, and a deleted one
/// closes it, while the first Gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_added_and_removed() {
    let fx = Fixture::new("listeners-gw", test_addr(5, 2), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "gw.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;

    let second = SocketAddr::new(test_addr(5, 3), 18080);
    fx.write(
        "gateway2.yaml",
        &sluice_e2e::manifests::mk_gateway(&fx.ns, "gw2", second.ip(), second.port()),
    );
    fx.write("route2.yaml", &mk_route(&fx.ns, "r2", "gw2", "echo"));
    s.wait_reply(second, host, "/", T, |r| {
        r.pod().as_deref() == Some("echo-0")
    })
    .await;

    fx.remove("gateway2.yaml");
    wait_closed(&mut s, second).await;
    let mut c = HttpClient::new(fx.gateway_addr());
    assert_eq!(
        c.get(host, "/")
            .await
            .expect("GET on the first Gateway")
            .status,
        200
    );
}

/// Pins listener changes under load: while 2 clients send requests continuously over
/// keep-alive connections to listener `a`, a second listener is added to and removed
/// from the Gateway 10 times; no request on `a` fails and the clients keep their
/// connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_changes_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let fx = Fixture::new("listeners-load", test_addr(5, 4), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let a = fx.gateway_addr();
    let b = SocketAddr::new(fx.addr, 18081);
    let host = "load.example";
    s.wait_reply(a, host, "/", T, |r| r.status == 200).await;

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = HttpClient::new(a).with_timeout(Duration::from_secs(2));
                let (mut ok, mut failures) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match c.get(host, "/").await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                        Err(e) => failures.push(format!("{e:#}")),
                    }
                }
                (ok, failures, c.connects() + c.reconnect_retries())
            })
        })
        .collect();
    let two = [
        ListenerSpec::http("a", 18080),
        ListenerSpec::http("b", 18081),
    ];
    let one = [ListenerSpec::http("a", 18080)];
    for _ in 0..10 {
        fx.write(
            "gateway.yaml",
            &mk_gateway_with_listeners(&fx.ns, GATEWAY, fx.addr, &two),
        );
        s.wait_reply(b, host, "/", T, |r| r.status == 200).await;
        fx.write(
            "gateway.yaml",
            &mk_gateway_with_listeners(&fx.ns, GATEWAY, fx.addr, &one),
        );
        wait_closed(&mut s, b).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        let (ok, failures, connects) = l.await.expect("load");
        assert!(
            failures.is_empty(),
            "{} failures on listener a ({ok} ok):\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(ok > 0);
        assert_eq!(
            connects, 1,
            "the client's connection to listener a was closed"
        );
    }
}

/// Pins listener isolation: two listeners on one port with hostnames `*.example.com`
/// and `foo.example.com`; a request for `foo.example.com` is served only by routes of
/// the more specific listener (no fall-through to the wildcard one, even when only the
/// wildcard listener's route matches the path), other hosts by the wildcard listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_isolation_by_hostname() {
    let fx = Fixture::new("listeners-iso", test_addr(5, 5), 18080);
    let _wild = fx.backend("wild").await;
    let _foo = fx.backend("foo").await;
    fx.write(
        "gateway.yaml",
        &mk_gateway_with_listeners(
            &fx.ns,
            GATEWAY,
            fx.addr,
            &[
                ListenerSpec::http("wild", 18080).hostname("*.example.com"),
                ListenerSpec::http("foo", 18080).hostname("foo.example.com"),
            ],
        ),
    );
    let route = |name: &str, section: &str, path: &str, backend: &str| {
        HttpRoute::new(&fx.ns, name)
            .parent_section(GATEWAY, section)
            .rule(
                Rule::new()
                    .path_prefix(path)
                    .backend(backend, SERVICE_PORT, None),
            )
            .yaml()
    };
    fx.write("route-wild.yaml", &route("wild", "wild", "/", "wild"));
    fx.write("route-foo.yaml", &route("foo", "foo", "/foo-only", "foo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = fx.gateway_addr();
    s.wait_reply(addr, "foo.example.com", "/foo-only", T, |r| {
        r.pod().as_deref() == Some("foo-0")
    })
    .await;
    let mut c = HttpClient::new(addr);
    let mut bad = Vec::new();
    for (host, path, want) in [
        ("foo.example.com", "/foo-only/x", Some("foo-0")),
        ("foo.example.com", "/", None),
        ("bar.example.com", "/", Some("wild-0")),
        ("bar.example.com", "/foo-only", Some("wild-0")),
        ("example.com", "/", None),
    ] {
        let r = c.get(host, path).await.expect("GET");
        let ok = match want {
            Some(pod) => r.status == 200 && r.pod().as_deref() == Some(pod),
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
    assert!(bad.is_empty(), "listener isolation:\n{}", bad.join("\n"));
}

/// Pins a listener's port change: the old port closes, the new one serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_port_changed() {
    let fx = Fixture::new("listeners-port", test_addr(5, 6), 18080);
    let _echo = fx.backend("echo").await;
    fx.write("route.yaml", &mk_route(&fx.ns, "r", GATEWAY, "echo"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "port.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| r.status == 200)
        .await;
    fx.write(
        "gateway.yaml",
        &mk_gateway_with_listeners(
            &fx.ns,
            GATEWAY,
            fx.addr,
            &[ListenerSpec::http("http", 18082)],
        ),
    );
    let new = SocketAddr::new(fx.addr, 18082);
    s.wait_reply(new, host, "/", T, |r| r.pod().as_deref() == Some("echo-0"))
        .await;
    wait_closed(&mut s, fx.gateway_addr()).await;
}
