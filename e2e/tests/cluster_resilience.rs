//! Cluster mode when the API server misbehaves: an outage of 10 s and a forced
//! compaction (`410 Gone`) never interrupt traffic, and Sluice resyncs afterwards.
//!
//! Addresses: this file uses `127.77.61.<test>`.

use sluice_e2e::manifests::{
    docs, mk_gateway, mk_gateway_class, mk_route, mk_service_with_endpoints, HttpRoute, Rule,
    GATEWAY_CLASS, SERVICE_PORT,
};
use sluice_e2e::{test_addr, EchoServer, HttpClient, Sluice};
use sluice_kubesim::{Sim, SimHandle, SimOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "default";
const T: Duration = Duration::from_secs(20);

/// Sends requests in a loop until `stop`; counts answers that are not 200 from `a-0`.
fn traffic(
    gw: SocketAddr,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (ok2, bad2) = (ok.clone(), bad.clone());
    let task = tokio::spawn(async move {
        let mut http = HttpClient::new(gw).with_timeout(Duration::from_secs(2));
        let host = gw.to_string();
        while !stop.load(Ordering::Relaxed) {
            match http.get(&host, "/").await {
                Ok(r) if r.status == 200 && r.pod().as_deref() == Some("a-0") => {
                    ok2.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    eprintln!("bad answer: {:?}", other.map(|r| (r.status, r.text())));
                    bad2.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (task, ok, bad)
}

async fn setup(
    sim: &SimHandle,
    test: u8,
    pod: &str,
) -> (Sluice, SocketAddr, EchoServer, EchoServer) {
    let gw = SocketAddr::new(test_addr(61, test), 8080);
    let a = EchoServer::start(NS, "a", "a-0").await;
    let b = EchoServer::start(NS, "b", "b-0").await;
    sim.put_yaml(&docs(&[
        mk_gateway_class(GATEWAY_CLASS),
        mk_gateway(NS, "gw", gw.ip(), gw.port()),
        mk_service_with_endpoints(NS, "a", SERVICE_PORT, a.port()),
        mk_service_with_endpoints(NS, "b", SERVICE_PORT, b.port()),
        mk_route(NS, "r", "gw", "a"),
    ]))
    .expect("creating objects");
    let mut sluice = Sluice::start_cluster(sim.kubeconfig_path(), pod, &[]);
    sluice.wait_ready(T).await;
    sluice
        .wait_reply(gw, &gw.to_string(), "/", T, |r| r.status == 200)
        .await;
    (sluice, gw, a, b)
}

fn route_b(path: &str) -> String {
    HttpRoute::new(NS, "rb")
        .parent("gw")
        .rule(
            Rule::new()
                .path_prefix(path)
                .backend("b", SERVICE_PORT, None),
        )
        .yaml()
}

/// The API server is down for 10 s: traffic never stops (the last good config stays in
/// service while the watchers back off), and after the restart Sluice resyncs: an object
/// created then takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_traffic_and_resyncs() {
    let sim = Sim::start(SimOptions::default()).expect("starting the simulator");
    let (mut sluice, gw, _a, _b) = setup(&sim, 1, "outage").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, ok, bad) = traffic(gw, stop.clone());

    sim.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    sluice.assert_running();
    sim.restart().expect("restarting the simulator");
    sim.put_yaml(&route_b("/b"))
        .expect("creating a route after the outage");
    sluice
        .wait_reply(gw, &gw.to_string(), "/b", Duration::from_secs(45), |r| {
            r.pod().as_deref() == Some("b-0")
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("traffic task");
    assert!(ok.load(Ordering::Relaxed) > 50, "requests went through");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "no request failed during the outage"
    );
    sim.wait_for_object_async("HTTPRoute", NS, "rb", T, |r| {
        r["status"]["parents"].is_array()
    })
    .await
    .expect("status of the new route written after the outage");
}

/// Every open watch gets `410 Gone`: the watchers relist with no traffic loss, and
/// changes made afterwards still take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_relists_without_traffic_loss() {
    let sim = Sim::start(SimOptions::default()).expect("starting the simulator");
    let (mut sluice, gw, _a, _b) = setup(&sim, 2, "compaction").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, ok, bad) = traffic(gw, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.clear_request_log();
    sim.force_compaction();
    // The watchers relist (plain GETs of the collections, not watches).
    let relisted = sim
        .wait_for_async(T, |s| {
            s.request_log()
                .iter()
                .any(|r| r.method == "GET" && !r.watch && r.path.ends_with("/httproutes"))
        })
        .await;
    assert!(
        relisted,
        "HTTPRoutes relisted after 410: {:?}",
        sim.request_log()
    );
    sim.put_yaml(&route_b("/b"))
        .expect("creating a route after the compaction");
    sluice
        .wait_reply(gw, &gw.to_string(), "/b", T, |r| {
            r.pod().as_deref() == Some("b-0")
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("traffic task");
    assert!(ok.load(Ordering::Relaxed) > 10, "requests went through");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "no request failed around the relist"
    );
}
