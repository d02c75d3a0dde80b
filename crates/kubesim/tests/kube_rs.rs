//! The simulator driven by kube-rs: the client and runtime Sluice uses in cluster mode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use gateway_api::gateways::Gateway;
use gateway_api::httproutes::HttpRoute as HTTPRoute;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, ResourceExt, WatchEvent,
    WatchParams,
};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Client;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sluice_kubesim::{Sim, SimHandle, SimOptions};

const WAIT: Duration = Duration::from_secs(10);

fn start(opts: SimOptions) -> SimHandle {
    Sim::start(opts).expect("simulator starts")
}

async fn client(sim: &SimHandle) -> Client {
    let kc = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

fn route(name: &str, host: &str) -> HTTPRoute {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "web"}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": "echo", "port": 8080}]}]
        }
    }))
    .unwrap()
}

fn gateway(name: &str, port: u16) -> Gateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "gatewayClassName": "sluice",
            "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]
        }
    }))
    .unwrap()
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Runs a reflector on HTTPRoutes in the background; returns its store and a log of
/// watcher events ("apply:name", "delete:name", "init", "initdone").
fn spawn_reflector(
    client: Client,
) -> (
    reflector::Store<HTTPRoute>,
    Arc<Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let api: Api<HTTPRoute> = Api::all(client);
    let (reader, writer) = reflector::store();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .map_ok(move |ev| {
            let entry = match &ev {
                watcher::Event::Apply(o) => format!("apply:{}", o.name_any()),
                watcher::Event::Delete(o) => format!("delete:{}", o.name_any()),
                watcher::Event::Init => "init".into(),
                watcher::Event::InitApply(o) => format!("initapply:{}", o.name_any()),
                watcher::Event::InitDone => "initdone".into(),
            };
            log2.lock().push(entry);
            ev
        });
    let task = tokio::spawn(async move {
        reflector(writer, stream)
            .for_each(|_| futures::future::ready(()))
            .await;
    });
    (reader, log, task)
}

fn store_hosts(store: &reflector::Store<HTTPRoute>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|r| {
            let host = r
                .spec
                .hostnames
                .as_ref()
                .and_then(|h| h.first().cloned())
                .unwrap_or_default();
            (r.name_any(), host)
        })
        .collect()
}

async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test]
async fn watcher_sees_add_modify_delete() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let (store, log, task) = spawn_reflector(client.clone());
    store.wait_until_ready().await.unwrap();
    let api: Api<HTTPRoute> = Api::namespaced(client, "default");

    api.create(&PostParams::default(), &route("a", "a.example"))
        .await
        .unwrap();
    assert!(
        eventually(|| store_hosts(&store).get("a").map(String::as_str) == Some("a.example")).await
    );

    let patch = json!({"spec": {"hostnames": ["a2.example"]}});
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert!(
        eventually(|| store_hosts(&store).get("a").map(String::as_str) == Some("a2.example")).await
    );

    // A change made behind the API (test helper) is seen too.
    sim.put(serde_json::to_value(route("b", "b.example")).unwrap())
        .unwrap();
    assert!(eventually(|| store_hosts(&store).contains_key("b")).await);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(eventually(|| !store_hosts(&store).contains_key("a")).await);

    let events = log.lock().clone();
    assert!(events.contains(&"apply:a".to_string()), "{events:?}");
    assert!(events.contains(&"apply:b".to_string()), "{events:?}");
    assert!(events.contains(&"delete:a".to_string()), "{events:?}");
    task.abort();
}

#[tokio::test]
async fn forced_compaction_makes_the_watcher_relist() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<HTTPRoute> = Api::namespaced(client.clone(), "default");
    for (n, h) in [("a", "a.example"), ("b", "b.example")] {
        api.create(&PostParams::default(), &route(n, h))
            .await
            .unwrap();
    }
    let (store, log, task) = spawn_reflector(client.clone());
    assert!(eventually(|| store_hosts(&store).len() == 2).await);
    assert!(sim.wait_for_async(WAIT, |s| s.open_watches() >= 1).await);
    let old_rv = sim.resource_version();
    let lists_before = sim
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/httproutes") && !r.watch)
        .count();

    // Changes while the watch is cut by a compaction: the watcher must relist.
    sim.force_compaction();
    sim.delete("HTTPRoute", "default", "a");
    sim.put(serde_json::to_value(route("b", "b2.example")).unwrap())
        .unwrap();
    sim.put(serde_json::to_value(route("c", "c.example")).unwrap())
        .unwrap();

    let want: BTreeMap<String, String> = [("b", "b2.example"), ("c", "c.example")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(
        eventually(|| store_hosts(&store) == want).await,
        "store: {:?}",
        store_hosts(&store)
    );
    let lists_after = sim
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/httproutes") && !r.watch)
        .count();
    assert!(lists_after > lists_before, "the watcher relisted");
    assert!(
        log.lock().iter().filter(|e| *e == "init").count() >= 2,
        "{:?}",
        log.lock()
    );

    // A watch resuming from a resourceVersion before the compaction gets 410 Gone.
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv.to_string())
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected 410, got {other:?}"),
    }
    assert!(stream.try_next().await.unwrap().is_none());
    task.abort();
}

#[tokio::test]
async fn watch_resumes_from_resource_version_and_sends_bookmarks() {
    let sim = start(SimOptions {
        bookmark_interval: Duration::from_millis(200),
        ..SimOptions::default()
    });
    let client = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = |name: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": v}})).unwrap()
    };
    let created = api
        .create(&PostParams::default(), &cm("one", "1"))
        .await
        .unwrap();
    let rv = created.resource_version().unwrap();
    api.create(&PostParams::default(), &cm("two", "2"))
        .await
        .unwrap();
    api.replace(
        "one",
        &PostParams::default(),
        &ConfigMap {
            metadata: created.metadata.clone(),
            data: Some([("k".to_string(), "1b".to_string())].into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    let mut bookmark = None;
    while bookmark.is_none() {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(o)) => seen.push(format!("ADDED {}", o.name_any())),
            Some(WatchEvent::Modified(o)) => seen.push(format!("MODIFIED {}", o.name_any())),
            Some(WatchEvent::Deleted(o)) => seen.push(format!("DELETED {}", o.name_any())),
            Some(WatchEvent::Bookmark(b)) => bookmark = Some(b.metadata.resource_version),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED two", "MODIFIED one"]);
    assert_eq!(bookmark.unwrap(), sim.resource_version().to_string());
}

#[tokio::test]
async fn status_server_side_apply_and_generation() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<Gateway> = Api::namespaced(client, "default");
    let mut gw = gateway("web", 80);
    // Status in a create is ignored: the kind has a status subresource.
    let mut v = serde_json::to_value(&gw).unwrap();
    v["status"] = json!({"conditions": [{"type": "Bogus", "status": "True", "reason": "X",
        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    gw = serde_json::from_value(v).unwrap();
    let created = api.create(&PostParams::default(), &gw).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none());
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let status = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "status": {
            "conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1
            }],
            "listeners": [{"name": "http", "attachedRoutes": 0, "supportedKinds": [],
                "conditions": []}]
        }
    });
    let pp = PatchParams::apply("sluice").force();
    let applied = api
        .patch_status("web", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(
        applied.metadata.generation,
        Some(1),
        "status does not bump generation"
    );
    let conds = applied
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap();
    assert_eq!(conds[0].type_, "Accepted");
    let managers: Vec<(String, Option<String>)> = applied
        .metadata
        .managed_fields
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.manager.clone().unwrap(), m.subresource.clone()))
        .collect();
    assert!(
        managers.contains(&("sluice".into(), Some("status".into()))),
        "{managers:?}"
    );

    // Re-applying the same status is a no-op: no new resourceVersion.
    let again = api
        .patch_status("web", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), applied.resource_version());

    // A status applied without `listeners` drops the field this manager owned.
    let mut less = status.clone();
    less["status"].as_object_mut().unwrap().remove("listeners");
    let dropped = api
        .patch_status("web", &pp, &Patch::Apply(&less))
        .await
        .unwrap();
    assert!(dropped.status.as_ref().unwrap().listeners.is_none());

    // Status sent to the main resource is ignored; spec changes bump generation.
    let merge = json!({"spec": {"listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]},
                       "status": {"conditions": []}});
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(
        patched.status.unwrap().conditions.unwrap().len(),
        1,
        "status unchanged through the main resource"
    );
    // Label changes leave generation alone.
    let labels = json!({"metadata": {"labels": {"team": "a"}}});
    let labelled = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));

    // Status apply on a missing object is NotFound.
    let err = api
        .patch_status("missing", &pp, &Patch::Apply(&status))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(404));
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_reports_conflicts() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 8080}]}
    });
    let created = api
        .patch("echo", &PatchParams::apply("alice"), &Patch::Apply(&svc))
        .await
        .unwrap();
    assert!(created.spec.as_ref().unwrap().cluster_ip.is_some());
    // Another manager changing alice's field conflicts unless forced.
    let bob = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                     "spec": {"selector": {"app": "other"}}});
    let err = api
        .patch("echo", &PatchParams::apply("bob"), &Patch::Apply(&bob))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409));
    let forced = api
        .patch(
            "echo",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.spec.as_ref().unwrap().selector.as_ref().unwrap()["app"],
        "other"
    );
    // alice re-applies without her label: it goes away; her ports stay.
    let mut alice2 = svc.clone();
    alice2["metadata"].as_object_mut().unwrap().remove("labels");
    alice2["spec"].as_object_mut().unwrap().remove("selector");
    let after = api
        .patch("echo", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    assert!(
        after.metadata.labels.is_none(),
        "{:?}",
        after.metadata.labels
    );
    assert_eq!(
        after.spec.as_ref().unwrap().ports.as_ref().unwrap().len(),
        1
    );
    assert_eq!(
        after.spec.as_ref().unwrap().selector.as_ref().unwrap()["app"],
        "other"
    );
    // Apply without a field manager is rejected.
    let raw = kube::core::Request::new("/api/v1/namespaces/default/services")
        .patch("echo", &PatchParams::default(), &Patch::Apply(&svc))
        .unwrap();
    let client = client_for(&sim).await;
    let err = client.request::<Value>(raw).await.unwrap_err();
    assert_eq!(api_code(&err), Some(422));
}

async fn client_for(sim: &SimHandle) -> Client {
    client(sim).await
}

#[tokio::test]
async fn lease_create_and_update_with_conflicts() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "sluice-leader"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                 "acquireTime": "2026-01-01T00:00:00.000000Z",
                 "renewTime": "2026-01-01T00:00:00.000000Z"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let err = api
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409));
    if let kube::Error::Api(s) = &err {
        assert_eq!(s.reason, "AlreadyExists");
    }

    // Two candidates read the same version; the first update wins.
    let mut a = created.clone();
    a.spec.as_mut().unwrap().renew_time =
        serde_json::from_value(json!("2026-01-01T00:00:05.000000Z")).unwrap();
    let mut b = created.clone();
    b.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let a2 = api
        .replace("sluice-leader", &PostParams::default(), &a)
        .await
        .unwrap();
    assert_ne!(a2.resource_version(), created.resource_version());
    let err = api
        .replace("sluice-leader", &PostParams::default(), &b)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409));
    if let kube::Error::Api(s) = &err {
        assert_eq!(s.reason, "Conflict");
        assert!(
            s.message.contains("the object has been modified"),
            "{}",
            s.message
        );
    }
    // With the fresh version it goes through.
    let mut b2 = a2.clone();
    b2.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let taken = api
        .replace("sluice-leader", &PostParams::default(), &b2)
        .await
        .unwrap();
    assert_eq!(
        taken.spec.unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    assert_eq!(
        sim.get("Lease", "kube-system", "sluice-leader").unwrap()["spec"]["holderIdentity"],
        "pod-b"
    );
    // A merge patch carrying a stale resourceVersion conflicts as well.
    let stale = json!({"metadata": {"resourceVersion": a2.resource_version()},
                       "spec": {"holderIdentity": "pod-c"}});
    let err = api
        .patch(
            "sluice-leader",
            &PatchParams::default(),
            &Patch::Merge(&stale),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409));
}

#[tokio::test]
async fn crd_absent_kind_is_404_until_installed() {
    let sim = start(SimOptions::default().without_gateway_api());
    let client = client(&sim).await;
    let api: Api<Gateway> = Api::all(client.clone());
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), Some(404));
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(!discovery.has_group("gateway.networking.k8s.io"));

    sim.install_gateway_api().unwrap();
    assert!(api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let group = discovery.get("gateway.networking.k8s.io").unwrap();
    let kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r.kind)
        .collect();
    for k in [
        "Gateway",
        "GatewayClass",
        "HTTPRoute",
        "GRPCRoute",
        "ReferenceGrant",
        "ListenerSet",
    ] {
        assert!(kinds.contains(&k.to_string()), "{k} in {kinds:?}");
    }

    let gws: Api<Gateway> = Api::namespaced(client.clone(), "default");
    gws.create(&PostParams::default(), &gateway("web", 80))
        .await
        .unwrap();
    sim.uninstall_crd("Gateway").unwrap();
    assert!(sim.objects("CustomResourceDefinition").len() >= 5);
    let err = gws.get("web").await.unwrap_err();
    assert_eq!(api_code(&err), Some(404));
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&err), Some(404));
}

#[tokio::test]
async fn selectors_generate_name_and_errors() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front")] {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}}))
                .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.iter().map(|o| o.name_any()).collect()
    };
    let front = api
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert!(front.metadata.resource_version.is_some());
    assert_eq!(names(front), ["a", "c"]);
    let not_front = api
        .list(&ListParams::default().labels("tier notin (front)"))
        .await
        .unwrap();
    assert_eq!(names(not_front), ["b"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["b"]);
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    assert!(other
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());

    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "auto-"}})).unwrap();
    let made = api.create(&PostParams::default(), &gen).await.unwrap();
    assert!(made.name_any().starts_with("auto-") && made.name_any().len() == 10);

    let err = api.get("nope").await.unwrap_err();
    assert_eq!(api_code(&err), Some(404));
    if let kube::Error::Api(s) = &err {
        assert_eq!(s.reason, "NotFound");
        assert_eq!(s.message, "configmaps \"nope\" not found");
    }
    let err = api
        .delete("nope", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(404));
    let deleted = api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left());
}

#[tokio::test]
async fn restart_keeps_objects_and_port() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<HTTPRoute> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &route("a", "a.example"))
        .await
        .unwrap();
    let (store, _log, task) = spawn_reflector(client.clone());
    assert!(eventually(|| store_hosts(&store).len() == 1).await);

    sim.stop();
    assert!(!sim.is_running());
    assert!(
        api.get("a").await.is_err(),
        "the API is unreachable while stopped"
    );
    // Changed during the outage (behind the API).
    sim.put(serde_json::to_value(route("b", "b.example")).unwrap())
        .unwrap();
    // The reflector keeps its last state while the API is down.
    assert_eq!(store_hosts(&store).len(), 1);

    sim.restart().unwrap();
    assert!(sim.is_running());
    assert_eq!(api.get("a").await.unwrap().name_any(), "a");
    assert!(
        eventually(|| store_hosts(&store).len() == 2).await,
        "{:?}",
        store_hosts(&store)
    );
    task.abort();
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_end() {
    let sim = start(SimOptions::default());
    sim.put(serde_json::to_value(route("a", "a.example")).unwrap())
        .unwrap();
    let client = client(&sim).await;
    let api: Api<HTTPRoute> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().streaming_lists()).default_backoff();
    let task = tokio::spawn(async move {
        reflector(writer, stream)
            .for_each(|_| futures::future::ready(()))
            .await;
    });
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .expect("initial-events-end bookmark received")
        .unwrap();
    assert_eq!(store_hosts(&reader).len(), 1);
    sim.put(serde_json::to_value(route("b", "b.example")).unwrap())
        .unwrap();
    assert!(eventually(|| store_hosts(&reader).len() == 2).await);
    assert!(sim
        .request_log()
        .iter()
        .any(|r| r.watch && r.query.contains("sendInitialEvents=true")));
    task.abort();
}

#[tokio::test]
async fn label_selected_watch_sees_objects_enter_and_leave() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = api
        .watch(&WatchParams::default().labels("app=web"), "0")
        .await
        .unwrap()
        .boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let label = |v: &str| json!({"metadata": {"labels": {"app": v}}});
    api.patch("c", &PatchParams::default(), &Patch::Merge(&label("web")))
        .await
        .unwrap();
    api.patch("c", &PatchParams::default(), &Patch::Merge(&label("db")))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(o)) => seen.push(format!("ADDED {}", o.name_any())),
            Some(WatchEvent::Modified(o)) => seen.push(format!("MODIFIED {}", o.name_any())),
            Some(WatchEvent::Deleted(o)) => seen.push(format!("DELETED {}", o.name_any())),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED c", "DELETED c"]);
}

#[tokio::test]
async fn finalizers_and_owner_references() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let gws: Api<Gateway> = Api::namespaced(client.clone(), "default");
    let mut gw = gateway("web", 80);
    gw.metadata.finalizers = Some(vec!["sluice.dev/cleanup".into()]);
    let gw = gws.create(&PostParams::default(), &gw).await.unwrap();
    // A Service owned by the Gateway, as the controller provisions.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web-sluice", "ownerReferences": [{
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "web",
            "uid": gw.metadata.uid.clone().unwrap(), "controller": true}]},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();

    // Delete marks it; removing the finalizer completes the deletion.
    gws.delete("web", &DeleteParams::default()).await.unwrap();
    let marked = gws.get("web").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(svcs.get("web-sluice").await.is_ok());
    let clear = json!({"metadata": {"finalizers": null}});
    gws.patch("web", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .unwrap();
    assert_eq!(api_code(&gws.get("web").await.unwrap_err()), Some(404));
    // The owned Service is garbage collected.
    assert_eq!(
        api_code(&svcs.get("web-sluice").await.unwrap_err()),
        Some(404)
    );
}

#[tokio::test]
async fn event_recorder_creates_and_updates_events() {
    use kube::runtime::events::{Event, EventType, Recorder};
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let ing: serde_json::Value = sim
        .put(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": "shop", "namespace": "default"},
                    "spec": {"ingressClassName": "sluice"}}),
        )
        .unwrap();
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        name: Some("shop".into()),
        namespace: Some("default".into()),
        uid: ing["metadata"]["uid"].as_str().map(String::from),
        ..Default::default()
    };
    let recorder = Recorder::new(client, "sluice".into());
    let ev = Event {
        type_: EventType::Warning,
        reason: "BadAnnotation".into(),
        note: Some("nginx.ingress.kubernetes.io/rewrite-target: bad value".into()),
        action: "Translate".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = sim.objects("events.events.k8s.io");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "BadAnnotation");
    assert_eq!(events[0]["series"]["count"], 2);
    assert_eq!(events[0]["regarding"]["name"], "shop");
}

#[tokio::test]
async fn gateway_api_schema_and_update_rules() {
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::discovery::ApiResource::erase::<Gateway>(&()),
    );
    // A listener without a port is refused, as the CRD schema requires one.
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"gatewayClassName": "sluice", "listeners": [{"name": "http", "protocol": "HTTP"}]}
    }))
    .unwrap();
    let err = raw.create(&PostParams::default(), &bad).await.unwrap_err();
    assert_eq!(api_code(&err), Some(422), "{err}");

    let gws: Api<Gateway> = Api::namespaced(client.clone(), "default");
    gws.create(&PostParams::default(), &gateway("web", 80))
        .await
        .unwrap();
    // A status condition missing required fields is refused too.
    let status = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                        "status": {"conditions": [{"type": "Accepted", "status": "True"}]}});
    let err = gws
        .patch_status("web", &PatchParams::apply("sluice"), &Patch::Apply(&status))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(422), "{err}");
    // Custom resources need a resourceVersion on PUT.
    let mut gw = gws.get("web").await.unwrap();
    gw.metadata.resource_version = None;
    let err = gws
        .replace("web", &PostParams::default(), &gw)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(422), "{err}");

    // Objects put by tests have no field owner: a later apply does not conflict.
    sim.put(serde_json::to_value(gateway("owned-by-none", 80)).unwrap())
        .unwrap();
    let apply = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "owned-by-none"},
        "spec": {"gatewayClassName": "other",
                 "listeners": [{"name": "http", "port": 81, "protocol": "HTTP"}]}});
    let applied = gws
        .patch(
            "owned-by-none",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&apply),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.gateway_class_name, "other");
    assert_eq!(applied.metadata.generation, Some(2));
}

#[tokio::test]
async fn injected_faults_fail_matching_requests() {
    use sluice_kubesim::Fault;
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let gws: Api<Gateway> = Api::namespaced(client.clone(), "default");
    gws.create(&PostParams::default(), &gateway("web", 80))
        .await
        .unwrap();
    sim.inject_fault(Fault::new("PATCH", "/status", 500, 1));
    sim.inject_fault(Fault::new("GET", "/gateways", 429, 1));
    let status = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let pp = PatchParams::apply("sluice");
    let err = gws
        .patch_status("web", &pp, &Patch::Apply(&status))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(500));
    gws.patch_status("web", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    // kube-rs retries a 429 by itself.
    gws.get("web").await.unwrap();
    assert!(sim.request_log().iter().any(|r| r.status == 429));

    // A watcher whose watch calls fail keeps retrying and gets there.
    sim.inject_fault(Fault {
        method: None,
        path_contains: "/httproutes".into(),
        watch: Some(true),
        code: 503,
        times: 2,
    });
    let (store, _log, task) = spawn_reflector(client.clone());
    sim.put(serde_json::to_value(route("a", "a.example")).unwrap())
        .unwrap();
    assert!(eventually(|| store_hosts(&store).len() == 1).await);
    let failed = sim.request_log().iter().filter(|r| r.status == 503).count();
    assert_eq!(failed, 2);
    let status_writes: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|r| r.is_write() && r.is_status())
        .collect();
    assert_eq!(status_writes.len(), 2);
    assert_eq!(status_writes[1].field_manager.as_deref(), Some("sluice"));
    task.abort();
}

#[tokio::test]
async fn metadata_watcher_and_get_metadata() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::core::PartialObjectMeta;
    let sim = start(SimOptions::default());
    let client = client(&sim).await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tls", "labels": {"a": "b"}},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();
    let stored = sim.get("Secret", "default", "tls").unwrap();
    assert_eq!(stored["data"]["tls.crt"], "Q0VSVA==");
    assert!(stored.get("stringData").is_none());

    let meta = api.get_metadata("tls").await.unwrap();
    assert_eq!(meta.metadata.labels.unwrap()["a"], "b");
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);

    let names = Arc::new(Mutex::new(Vec::<String>::new()));
    let names2 = names.clone();
    let meta_api: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), "default");
    let task = tokio::spawn(async move {
        watcher(meta_api, watcher::Config::default())
            .default_backoff()
            .try_for_each(move |ev| {
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = ev {
                    names2.lock().push(o.name_any());
                }
                futures::future::ready(Ok(()))
            })
            .await
            .ok();
    });
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let mut s2 = secret.clone();
    s2.metadata.name = Some("second".into());
    secrets.create(&PostParams::default(), &s2).await.unwrap();
    assert!(eventually(|| names.lock().contains(&"second".to_string())).await);
    assert!(sim
        .request_log()
        .iter()
        .any(|r| r.watch && r.path.ends_with("/secrets")));
    task.abort();
}
