//! Folder source: walking, parsing, last-good-parse retention, deletion, and the
//! watching task.
use sluice_controller::source::folder::{load_dir, run_folder, EMPTY_GRACE};
use sluice_controller::store::Kind;
use sluice_controller::Settings;
use std::path::Path;
use std::time::Duration;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn names(state: &sluice_controller::source::folder::FolderState) -> Vec<String> {
    state
        .objects()
        .iter()
        .map(|o| format!("{}:{}", o.kind.name(), o.key))
        .collect()
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n";

/// Multi-document YAML, `kind: List`, JSON, nested folders are read; hidden files,
/// editor temporaries and unknown kinds are skipped.
#[test]
fn reads_all_manifest_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "multi.yaml", &format!("{NS}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{{port: 80}}]\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"));
    write(
        d,
        "nested/deeper/list.yml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s1, namespace: x}\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: GatewayClass\n  metadata: {name: gc}\n  spec: {controllerName: c}\n",
    );
    write(
        d,
        "obj.json",
        r#"{"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway","metadata":{"name":"g"},"spec":{"gatewayClassName":"gc","listeners":[{"name":"http","port":80,"protocol":"HTTP"}]}}"#,
    );
    write(
        d,
        ".hidden.yaml",
        NS.replace("name: a", "name: hidden").as_str(),
    );
    write(
        d,
        "backup.yaml~",
        NS.replace("name: a", "name: tilde").as_str(),
    );
    write(d, "notes.txt", "not a manifest");
    let state = load_dir(d);
    assert_eq!(
        names(&state),
        vec![
            "Namespace:a",
            "Service:default/s",
            "Secret:x/s1",
            "GatewayClass:gc",
            "Gateway:default/g",
        ]
    );
    assert!(state.notices().is_empty());
}

/// A file that stops parsing keeps its last good objects in service and reports the
/// file and line; fixing or deleting it takes effect.
#[test]
fn invalid_yaml_keeps_last_good_objects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.yaml",
        &format!("{NS}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n"),
    );
    let mut state = load_dir(d);
    assert_eq!(names(&state), vec!["Namespace:a", "Namespace:b"]);

    write(
        d,
        "a.yaml",
        &format!("{NS}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n   oops: [\n"),
    );
    assert!(state.refresh());
    assert_eq!(
        names(&state),
        vec!["Namespace:a", "Namespace:b"],
        "last good parse stays"
    );
    let err = state.file_error(&d.join("a.yaml")).expect("error recorded");
    assert!(
        err.line >= 9 && err.line <= 10,
        "line {} ({})",
        err.line,
        err.reason
    );
    let notices = state.notices();
    assert_eq!(notices.len(), 1);
    assert!(notices[0].object.name.ends_with("a.yaml"));
    assert_eq!(
        notices[0].field.as_deref(),
        Some(format!("line {}", err.line).as_str())
    );

    // A typed error (wrong field type) counts as a failure too.
    write(
        d,
        "a.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{port: eighty}]\n",
    );
    assert!(state.refresh());
    assert_eq!(names(&state), vec!["Namespace:a", "Namespace:b"]);

    write(
        d,
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n",
    );
    assert!(state.refresh());
    assert_eq!(names(&state), vec!["Namespace:c"]);
    assert!(state.notices().is_empty());

    assert!(!state.refresh(), "nothing changed");
    // A file found blank keeps its objects for EMPTY_GRACE (an editor's truncate
    // before its write), then the blank content is believed.
    write(d, "a.yaml", "");
    let blanked = std::time::Instant::now();
    state.refresh();
    assert!(state.pending());
    assert_eq!(names(&state), vec!["Namespace:c"]);
    assert!(!state.refresh(), "still within the grace period");
    assert_eq!(names(&state), vec!["Namespace:c"]);
    let deadline = blanked + EMPTY_GRACE + std::time::Duration::from_secs(5);
    while !state.refresh() {
        assert!(
            std::time::Instant::now() < deadline,
            "blank file never accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        blanked.elapsed() >= EMPTY_GRACE,
        "accepted before the grace period ended"
    );
    assert!(!state.pending());
    assert!(names(&state).is_empty(), "still empty: accepted");
    write(
        d,
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n",
    );
    state.refresh();
    std::fs::remove_file(d.join("a.yaml")).unwrap();
    assert!(state.refresh());
    assert!(names(&state).is_empty(), "deleted file takes its objects");
}

/// An object moving between files stays one object (the later path wins when both
/// define it, with a notice).
#[test]
fn duplicate_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "1.yaml", NS);
    write(
        d,
        "2.yaml",
        &NS.replace("name: a", "name: a\n  labels: {x: y}"),
    );
    let state = load_dir(d);
    let objs = state.objects();
    assert_eq!(objs.len(), 1);
    assert_eq!(
        objs[0]
            .value
            .pointer("/metadata/labels/x")
            .and_then(|v| v.as_str()),
        Some("y")
    );
    assert_eq!(state.notices().len(), 1);
    assert_eq!(objs[0].kind, Kind::Namespace);
}

const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sluice}
spec: {controllerName: sluice.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
";

fn route(path: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
"
    )
}

async fn wait_for<T>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    mut pred: impl FnMut(&T) -> bool,
) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if pred(&rx.borrow_and_update()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok()
}

/// The watching task: the initial config is published before `run_folder` returns;
/// a change publishes generation + 1; a broken file keeps the config; statuses follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_folder_hot_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    write(&d, "gw.yaml", GATEWAY);
    write(&d, "route.yaml", &route("/one"));
    let (_applied_tx, applied_rx) = tokio::sync::watch::channel(sluice_ir::Applied::default());
    let mut h = run_folder(d.clone(), Settings::default(), applied_rx)
        .await
        .unwrap();
    let first = h.config.borrow().clone();
    assert_eq!(first.generation, 1);
    assert_eq!(first.listeners.len(), 1);
    assert!(!h.status.borrow().objects.is_empty());

    write(&d, "route.yaml", &route("/two"));
    assert!(
        wait_for(&mut h.config, |c| c.generation == 2).await,
        "config generation 2 not published"
    );
    let config = h.config.borrow().clone();
    let routes = &config.listeners[0].servers[0].virtual_hosts[0].routes;
    assert_eq!(
        routes[0].matcher.path,
        sluice_ir::PathMatch::Prefix("/two".into())
    );
    // The route's generation is 2 in the status.
    assert!(
        wait_for(&mut h.status, |s| s
            .objects
            .iter()
            .any(|o| o.kind == "HTTPRoute" && o.metadata.generation == 2))
        .await
    );

    // A broken edit keeps the config.
    write(&d, "route.yaml", "kind: [\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        h.config.borrow().generation,
        2,
        "{}",
        h.config.borrow().to_redacted_json()
    );
    assert!(h.reloads.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    // Deleting the route file removes the route.
    std::fs::remove_file(d.join("route.yaml")).unwrap();
    assert!(wait_for(&mut h.config, |c| c.generation == 3).await);
    assert!(h.config.borrow().listeners[0].servers[0]
        .virtual_hosts
        .is_empty());
}

/// Fifty atomic rewrites (write + rename, as editors and the conformance runner do):
/// every published config still has the route, generations only grow, and the last
/// edit wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_rewrites_never_drop_routes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    write(&d, "gw.yaml", GATEWAY);
    write(&d, "route.yaml", &route("/v0"));
    let (_applied_tx, applied_rx) = tokio::sync::watch::channel(sluice_ir::Applied::default());
    let mut h = run_folder(d.clone(), Settings::default(), applied_rx)
        .await
        .unwrap();
    let mut observer = h.config.clone();
    let watcher = tokio::spawn(async move {
        let mut last = 0;
        let mut bad = Vec::new();
        while observer.changed().await.is_ok() {
            let c = observer.borrow_and_update().clone();
            if c.generation <= last {
                bad.push(format!("generation went from {last} to {}", c.generation));
            }
            last = c.generation;
            let routes = c
                .listeners
                .first()
                .map(|l| l.servers[0].virtual_hosts.len())
                .unwrap_or(0);
            if routes == 0 {
                bad.push(format!("generation {} has no route", c.generation));
                continue;
            }
            let path = &c.listeners[0].servers[0].virtual_hosts[0].routes[0]
                .matcher
                .path;
            if *path == sluice_ir::PathMatch::Prefix("/v50".into()) {
                break;
            }
        }
        bad
    });
    for i in 1..=50 {
        let tmp = d.join(format!(".route.yaml.tmp{i}"));
        std::fs::write(&tmp, route(&format!("/v{i}"))).unwrap();
        std::fs::rename(&tmp, d.join("route.yaml")).unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(
        wait_for(&mut h.config, |c| c.listeners[0].servers[0].virtual_hosts
            [0]
        .routes[0]
            .matcher
            .path
            == sluice_ir::PathMatch::Prefix("/v50".into()))
        .await,
        "last edit not published"
    );
    let bad = tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("observer saw the last edit");
    let bad = bad.expect("observer task");
    assert!(bad.is_empty(), "{bad:?}");
}
