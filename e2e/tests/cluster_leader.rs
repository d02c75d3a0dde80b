//! Cluster mode with two replicas: both serve traffic, only the Lease holder writes
//! status, and the follower takes over when the leader is killed.
//!
//! Each replica has its own Gateway address pool (`127.77.62.0/30` and
//! `127.77.63.0/30`), so the Gateway's `status.addresses` tells which replica wrote it.

use sluice_e2e::harness::has_condition;
use sluice_e2e::manifests::{
    docs, mk_gateway_at, mk_gateway_class, mk_route, mk_service_with_endpoints, ListenerSpec,
    GATEWAY_CLASS, SERVICE_PORT,
};
use sluice_e2e::{EchoServer, Sluice};
use sluice_kubesim::{Sim, SimOptions};
use std::net::SocketAddr;
use std::time::Duration;

const NS: &str = "default";
const T: Duration = Duration::from_secs(20);

fn holder(sim: &sluice_kubesim::SimHandle) -> String {
    sim.get("Lease", NS, "sluice-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn gateway_address(gw: &serde_json::Value) -> String {
    gw["status"]["addresses"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Two replicas: both serve; every status write comes from the lease holder (user
/// agent carries the identity); killing the leader hands the lease and the status
/// writes to the other replica within the lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_follower_takes_over() {
    let sim = Sim::start(SimOptions::default()).expect("starting the simulator");
    let a = EchoServer::start(NS, "a", "a-0").await;
    sim.put_yaml(&docs(&[
        mk_gateway_class(GATEWAY_CLASS),
        mk_gateway_at(NS, "gw", None, &[ListenerSpec::http("http", 8080)]),
        mk_service_with_endpoints(NS, "a", SERVICE_PORT, a.port()),
        mk_route(NS, "r", "gw", "a"),
    ]))
    .expect("creating objects");

    let mut one = Sluice::start_cluster(
        sim.kubeconfig_path(),
        "replica-one",
        &["--gateway-address-pool", "127.77.62.0/30"],
    );
    one.wait_ready(T).await;
    let mut two = Sluice::start_cluster(
        sim.kubeconfig_path(),
        "replica-two",
        &["--gateway-address-pool", "127.77.63.0/30"],
    );
    two.wait_ready(T).await;
    let addr_one: SocketAddr = "127.77.62.1:8080".parse().expect("literal");
    let addr_two: SocketAddr = "127.77.63.1:8080".parse().expect("literal");
    for (s, addr) in [(&mut one, addr_one), (&mut two, addr_two)] {
        s.wait_reply(addr, &addr.to_string(), "/", T, |r| r.status == 200)
            .await;
    }

    // replica-one started first and leads.
    assert!(
        holder(&sim).starts_with("replica-one-"),
        "holder {}",
        holder(&sim)
    );
    let gw = sim
        .wait_for_object_async("Gateway", NS, "gw", T, |gw| {
            has_condition(&gw["status"]["conditions"], "Programmed", "True", None)
        })
        .await
        .expect("Gateway status written");
    assert_eq!(
        gateway_address(&gw),
        "127.77.62.1",
        "written by the leader: {gw}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write() && r.is_status())
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(
            w.user_agent.contains("replica-one-"),
            "status written by a follower: {w:?}"
        );
    }

    // Kill the leader: replica-two takes over within the lease duration (15 s) and
    // writes its own view.
    one.kill();
    let killed = std::time::Instant::now();
    let took_over = sim
        .wait_for_async(Duration::from_secs(25), |s| {
            holder(s).starts_with("replica-two-")
        })
        .await;
    assert!(took_over, "lease holder after the kill: {}", holder(&sim));
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "failover took {:?}",
        killed.elapsed()
    );
    sim.wait_for_object_async("Gateway", NS, "gw", T, |gw| {
        gateway_address(gw) == "127.77.63.1"
    })
    .await
    .expect("the new leader writes status");
    two.wait_reply(addr_two, &addr_two.to_string(), "/", T, |r| r.status == 200)
        .await;
}
