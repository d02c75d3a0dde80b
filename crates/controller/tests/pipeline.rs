//! Pipeline state: generations, creation timestamps, addresses, transition times,
//! dataplane feedback.
use chrono::{DateTime, TimeZone, Utc};
use sluice_controller::pipeline::Pipeline;
use sluice_controller::source::parse::{parse_manifest, RawObject};
use sluice_controller::status::Status;
use sluice_controller::{ObjectKey, Settings};
use std::net::IpAddr;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn objs(text: &str) -> Vec<RawObject> {
    parse_manifest(text, false).unwrap()
}

fn gateway(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: ns}}
spec:
  gatewayClassName: sluice{extra}
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
---
"
    )
}

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.dev/gateway-controller}
---
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Generation: 1 when first seen, unchanged by label-only edits, +1 on spec change,
/// back to 1 after delete and recreate. creationTimestamp: first load time, stable.
#[test]
fn generation_and_creation_timestamp() {
    let mut p = Pipeline::new(Settings::default());
    let v1 = objs("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {ports: [{port: 80}]}\n");
    let (store, _) = p.build_store(&v1, t(0));
    let key = ObjectKey::new("ns", "s");
    let meta = |s: &sluice_controller::Store| s.services[&key].metadata.clone();
    assert_eq!(meta(&store).generation, Some(1));
    let created = meta(&store).creation_timestamp.unwrap();
    assert_eq!(created.0.as_second(), t(0).timestamp());

    let labels = objs("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns, labels: {a: b}}\nspec: {ports: [{port: 80}]}\n");
    let (store, _) = p.build_store(&labels, t(10));
    assert_eq!(meta(&store).generation, Some(1), "labels only: no bump");
    assert_eq!(
        meta(&store).creation_timestamp.unwrap(),
        created,
        "creation time stable"
    );

    let spec = objs("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {ports: [{port: 81}]}\n");
    let (store, _) = p.build_store(&spec, t(20));
    assert_eq!(meta(&store).generation, Some(2));
    let (store, _) = p.build_store(&spec, t(30));
    assert_eq!(meta(&store).generation, Some(2), "unchanged: no bump");

    let (store, _) = p.build_store(&[], t(40));
    assert!(store.services.is_empty());
    let (store, _) = p.build_store(&spec, t(50));
    assert_eq!(meta(&store).generation, Some(1), "recreated: starts again");
    assert_eq!(
        meta(&store).creation_timestamp.unwrap().0.as_second(),
        t(50).timestamp()
    );

    // A creationTimestamp written in the manifest is kept.
    let written = objs("apiVersion: v1\nkind: Service\nmetadata: {name: w, namespace: ns, creationTimestamp: '2020-01-01T00:00:00Z'}\n");
    let (store, _) = p.build_store(&written, t(60));
    assert_eq!(
        store.services[&ObjectKey::new("ns", "w")]
            .metadata
            .creation_timestamp
            .as_ref()
            .unwrap()
            .0
            .to_string(),
        "2020-01-01T00:00:00Z"
    );
}

/// Namespaces get the `kubernetes.io/metadata.name` label; undefined namespaces count
/// as existing with only that label.
#[test]
fn namespace_defaults() {
    let mut p = Pipeline::new(Settings::default());
    let (store, _) = p.build_store(
        &objs("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: y}}\n"),
        t(0),
    );
    let labels = store.namespace_labels("a");
    assert_eq!(
        labels
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("a")
    );
    assert_eq!(labels.get("x").map(String::as_str), Some("y"));
    let ns = &store.namespaces[&ObjectKey::new("", "a")];
    assert_eq!(
        ns.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("a")
    );
    assert_eq!(store.namespace_labels("undefined").len(), 1);
}

/// Pool addresses are stable across rebuilds (a new Gateway sorting first does not
/// shift the others), released when a Gateway goes, and spec.addresses wins.
#[test]
fn gateway_addresses() {
    let mut p = Pipeline::new(Settings::default());
    let (s, _) = p.build_store(&objs(&format!("{CLASS}{}", gateway("m", ""))), t(0));
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "m")],
        ip("127.0.1.1")
    );

    let two = format!("{CLASS}{}{}", gateway("a", ""), gateway("m", ""));
    let (s, _) = p.build_store(&objs(&two), t(1));
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "m")],
        ip("127.0.1.1"),
        "stable"
    );
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "a")],
        ip("127.0.1.2")
    );

    // m deleted: its address is free again and goes to the next new Gateway.
    let (s, _) = p.build_store(&objs(&format!("{CLASS}{}", gateway("a", ""))), t(2));
    assert_eq!(s.gateway_addresses.len(), 1);
    let (s, _) = p.build_store(
        &objs(&format!("{CLASS}{}{}", gateway("a", ""), gateway("z", ""))),
        t(3),
    );
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "z")],
        ip("127.0.1.1")
    );
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "a")],
        ip("127.0.1.2")
    );

    // spec.addresses: the first IP address is used, the pool is not consumed.
    let fixed = gateway(
        "f",
        "\n  addresses:\n  - {type: Hostname, value: x.example}\n  - {value: 127.0.9.9}",
    );
    let (s, _) = p.build_store(&objs(&format!("{CLASS}{fixed}{}", gateway("a", ""))), t(4));
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "f")],
        ip("127.0.9.9")
    );
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "a")],
        ip("127.0.1.2")
    );

    // A static address taking a pool address already in use moves the pool Gateway.
    let clash = gateway(
        "f",
        "\n  addresses:\n  - {type: IPAddress, value: 127.0.1.2}",
    );
    let (s, _) = p.build_store(&objs(&format!("{CLASS}{clash}{}", gateway("a", ""))), t(5));
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "f")],
        ip("127.0.1.2")
    );
    assert_eq!(
        s.gateway_addresses[&ObjectKey::new("ns", "a")],
        ip("127.0.1.1")
    );
}

fn listener_programmed(p: &Pipeline) -> (String, String, String) {
    let status = p.status();
    let gw = status.objects.iter().find(|o| o.kind == "Gateway").unwrap();
    let Status::Gateway(g) = &gw.status else {
        panic!()
    };
    let c = g.listeners[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Programmed")
        .unwrap();
    (
        c.status.clone(),
        c.reason.clone(),
        c.last_transition_time.clone(),
    )
}

/// Config generations move only when the translated config changes;
/// lastTransitionTime moves only when a condition's status or reason changes; proxy
/// bind failures turn Programmed False.
#[test]
fn generations_transition_times_and_feedback() {
    let mut p = Pipeline::new(Settings::default());
    let input = objs(&format!("{CLASS}{}", gateway("g", "")));
    let u = p.rebuild(&input, t(0));
    assert!(u.config_changed && u.status_changed);
    assert_eq!(p.config().generation, 1);
    let (s, _, time0) = listener_programmed(&p);
    assert_eq!(s, "True");
    assert_eq!(time0, "2023-11-14T22:13:20Z");

    // Same objects: nothing changes, times kept.
    let u = p.rebuild(&input, t(5));
    assert!(!u.config_changed && !u.status_changed);
    assert_eq!(p.config().generation, 1);

    // An unrelated object changes nothing in the config.
    let mut more = input.clone();
    more.extend(objs(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
    ));
    let u = p.rebuild(&more, t(6));
    assert!(!u.config_changed);

    // The proxy reports a bind failure for generation 1.
    let mut applied = sluice_ir::Applied {
        generation: 1,
        ..Default::default()
    };
    applied
        .listener_errors
        .insert("127.0.1.1:80".into(), "address in use".into());
    assert!(p.set_applied(applied.clone(), t(10)));
    let (s, reason, time1) = listener_programmed(&p);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "Invalid"));
    assert_eq!(time1, "2023-11-14T22:13:30Z");
    let status = p.status();
    let Status::Gateway(g) = &status
        .objects
        .iter()
        .find(|o| o.kind == "Gateway")
        .unwrap()
        .status
    else {
        panic!()
    };
    let gp = g
        .conditions
        .iter()
        .find(|c| c.type_ == "Programmed")
        .unwrap();
    assert_eq!(gp.status, "False");
    let la = g.listeners[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(la.reason, "PortUnavailable");

    // Same report again: no change.
    assert!(!p.set_applied(applied, t(11)));
    // Bound now.
    assert!(p.set_applied(
        sluice_ir::Applied {
            generation: 1,
            ..Default::default()
        },
        t(20)
    ));
    let (s, _, time2) = listener_programmed(&p);
    assert_eq!(s, "True");
    assert_eq!(time2, "2023-11-14T22:13:40Z");
}
