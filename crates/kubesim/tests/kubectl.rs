//! Fidelity check with the real `kubectl`: `apply --server-side`, `get -o yaml`,
//! `get -w`, `delete`, and status applies through `--subresource=status`.
//!
//! Every test skips (passing, with a message on stderr) when kubectl is not
//! installed; set `KUBECTL` to use another binary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_kubesim::{Sim, SimHandle, SimOptions};

fn kubectl_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("/usr/bin/kubectl");
    if default.exists() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.exists())
    })
}

macro_rules! kubectl_or_skip {
    ($opts:expr) => {
        match Kubectl::new($opts) {
            Some(k) => k,
            None => {
                eprintln!("SKIPPED: kubectl not found (set KUBECTL or install /usr/bin/kubectl)");
                return;
            }
        }
    };
}

struct Kubectl {
    bin: PathBuf,
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(opts: SimOptions) -> Option<Kubectl> {
        let bin = kubectl_bin()?;
        let sim = Sim::start(opts).expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        Some(Kubectl { bin, sim, dir })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(self.sim.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn get_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

const OBJECTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: sluice
spec:
  controllerName: sluice.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: default
spec:
  gatewayClassName: sluice
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: route1
  namespace: default
spec:
  parentRefs:
  - name: web
  hostnames: ["a.example"]
  rules:
  - backendRefs:
    - name: echo
      port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
spec:
  selector:
    app: echo
  ports:
  - port: 8080
"#;

const GATEWAY_STATUS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: default
status:
  conditions:
  - type: Programmed
    status: "True"
    reason: Programmed
    message: ""
    lastTransitionTime: "2026-01-01T00:00:00Z"
    observedGeneration: 2
"#;

#[test]
fn apply_server_side_get_yaml_generation_status_and_delete() {
    let k = kubectl_or_skip!(SimOptions::default());
    let file = k.write("objects.yaml", OBJECTS);
    let out = k.ok(&["apply", "--server-side", "-f", &file]);
    assert!(
        out.contains("gateway.gateway.networking.k8s.io/web serverside-applied"),
        "{out}"
    );
    assert!(out.contains("service/echo serverside-applied"), "{out}");

    let yaml = k.ok(&["get", "gateways", "-A", "-o", "yaml"]);
    let list: Value = serde_yaml::from_str(&yaml).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "web");
    assert_eq!(items[0]["metadata"]["generation"], 1);
    assert_eq!(items[0]["spec"]["listeners"][0]["port"], 80);
    let rv1 = items[0]["metadata"]["resourceVersion"].clone();

    // Same file again: nothing changes, not even the resourceVersion.
    k.ok(&["apply", "--server-side", "-f", &file]);
    let gw = k.get_json(&["gateway", "web"]);
    assert_eq!(gw["metadata"]["resourceVersion"], rv1);

    // A spec change bumps generation.
    let changed = k.write(
        "changed.yaml",
        &OBJECTS.replace("port: 80\n", "port: 8080\n"),
    );
    k.ok(&["apply", "--server-side", "-f", &changed]);
    let gw = k.get_json(&["gateway", "web"]);
    assert_eq!(gw["metadata"]["generation"], 2);
    assert_eq!(gw["spec"]["listeners"][0]["port"], 8080);

    // Status through the status subresource, under its own field manager.
    let status = k.write("status.yaml", GATEWAY_STATUS);
    let out = k.ok(&[
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=sluice",
        "-f",
        &status,
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    let yaml = k.ok(&[
        "get",
        "gateway",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    let gw: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(gw["status"]["conditions"][0]["type"], "Programmed");
    assert_eq!(
        gw["metadata"]["generation"], 2,
        "status does not bump generation"
    );
    assert_eq!(gw["spec"]["listeners"][0]["port"], 8080);
    let managers: Vec<(String, String, String)> = gw["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or("").to_string(),
                m["operation"].as_str().unwrap_or("").to_string(),
                m["subresource"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("kubectl".into(), "Apply".into(), "".into())),
        "{managers:?}"
    );
    assert!(
        managers.contains(&("sluice".into(), "Apply".into(), "status".into())),
        "{managers:?}"
    );
    // The simulator holds the same.
    assert_eq!(
        k.sim.get("Gateway", "default", "web").unwrap()["status"]["conditions"][0]["reason"],
        "Programmed"
    );

    // Plain listing across kinds with the table printer.
    let table = k.ok(&["get", "gatewayclasses,gateways,httproutes,services", "-A"]);
    for name in ["sluice", "web", "route1", "echo"] {
        assert!(table.contains(name), "{table}");
    }

    // Delete.
    let out = k.ok(&["delete", "-f", &file]);
    assert!(out.contains("\"web\" deleted"), "{out}");
    assert!(k.sim.objects("Gateway").is_empty());
    assert!(k.sim.objects("HTTPRoute").is_empty());
    let err = k.fails(&["get", "gateway", "web"]);
    assert!(err.contains("NotFound"), "{err}");
}

/// Reads `kubectl get -w -o json --output-watch-events` lines as they come.
fn watch_events(child: &mut Child) -> mpsc::Receiver<Value> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

fn next_event(rx: &mpsc::Receiver<Value>) -> (String, String, Value) {
    let v = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("kubectl reports a watch event");
    (
        v["type"].as_str().unwrap_or("").to_string(),
        v["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["object"].clone(),
    )
}

#[test]
fn get_watch_follows_changes() {
    let k = kubectl_or_skip!(SimOptions::default());
    let file = k.write("objects.yaml", OBJECTS);
    k.ok(&["apply", "--server-side", "-f", &file]);

    let mut child = k
        .command(&[
            "get",
            "httproutes",
            "-w",
            "-o",
            "json",
            "--output-watch-events",
            "--request-timeout=60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut table = k
        .command(&["get", "httproutes", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = watch_events(&mut child);

    let (t, name, _) = next_event(&rx);
    assert_eq!((t.as_str(), name.as_str()), ("ADDED", "route1"));
    // Both kubectl watches are open before changing anything.
    assert!(k
        .sim
        .wait_for(Duration::from_secs(15), |s| s.open_watches() >= 2));

    let changed = k.write("route.yaml", &OBJECTS.replace("a.example", "b.example"));
    k.ok(&["apply", "--server-side", "-f", &changed]);
    let (t, name, obj) = next_event(&rx);
    assert_eq!((t.as_str(), name.as_str()), ("MODIFIED", "route1"));
    assert_eq!(obj["spec"]["hostnames"][0], "b.example");
    assert_eq!(obj["metadata"]["generation"], 2);

    // A change behind the API, then one through another kubectl.
    let mut r2 = obj.clone();
    r2["metadata"] = serde_json::json!({"name": "route2", "namespace": "default"});
    k.sim.put(r2).unwrap();
    let (t, name, _) = next_event(&rx);
    assert_eq!((t.as_str(), name.as_str()), ("ADDED", "route2"));

    k.ok(&["delete", "httproute", "route1"]);
    let (t, name, _) = next_event(&rx);
    assert_eq!((t.as_str(), name.as_str()), ("DELETED", "route1"));

    let _ = child.kill();
    let _ = child.wait();
    let _ = table.kill();
    let out = table.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NAME"), "{text}");
    assert!(text.matches("route1").count() >= 2, "{text}");
    assert!(text.contains("route2"), "{text}");
}

#[test]
fn kubectl_sees_a_crd_installed_later() {
    let k = kubectl_or_skip!(SimOptions::default().without_gateway_api());
    let err = k.fails(&["get", "gateways", "-A"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");
    let apis = k.ok(&["api-resources"]);
    assert!(!apis.contains("gateway.networking.k8s.io"), "{apis}");

    // Install the Gateway API CRDs with kubectl itself.
    let crds: Vec<String> = sluice_kubesim::gateway_api_crds()
        .iter()
        .map(|c| serde_yaml::to_string(c).unwrap())
        .collect();
    let file = k.write("crds.yaml", &crds.join("---\n"));
    k.ok(&["apply", "--server-side", "-f", &file]);
    let crd = k.get_json(&["crd", "gateways.gateway.networking.k8s.io"]);
    assert_eq!(crd["status"]["conditions"][1]["type"], "Established");

    let objects = k.write("objects.yaml", OBJECTS);
    k.ok(&["apply", "--server-side", "-f", &objects]);
    let out = k.ok(&["get", "gateways", "-A", "-o", "name"]);
    assert_eq!(out.trim(), "gateway.gateway.networking.k8s.io/web");
    let apis = k.ok(&["api-resources", "--api-group=gateway.networking.k8s.io"]);
    assert!(apis.contains("httproutes"), "{apis}");
    assert!(apis.contains("gtw"), "{apis}");
}

#[test]
fn kubectl_errors_and_other_verbs() {
    let k = kubectl_or_skip!(SimOptions::default());
    let file = k.write("objects.yaml", OBJECTS);
    k.ok(&["create", "-f", &file]);
    let err = k.fails(&["create", "-f", &file]);
    assert!(err.contains("AlreadyExists"), "{err}");
    assert!(err.contains("\"web\" already exists"), "{err}");
    let err = k.fails(&["get", "httproute", "missing"]);
    assert!(
        err.contains("httproutes.gateway.networking.k8s.io \"missing\" not found"),
        "{err}"
    );

    // Client-side apply, label, JSON patch, selectors.
    k.ok(&["apply", "-f", &file]);
    k.ok(&["label", "httproute", "route1", "team=a"]);
    let out = k.ok(&["get", "httproutes", "-l", "team=a", "-o", "name"]);
    assert_eq!(out.trim(), "httproute.gateway.networking.k8s.io/route1");
    let out = k.ok(&["get", "httproutes", "-l", "team=b", "-o", "name"]);
    assert_eq!(out.trim(), "");
    k.ok(&[
        "patch",
        "gateway",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/listeners/0/port","value":9090}]"#,
    ]);
    let gw = k.get_json(&["gateway", "web"]);
    assert_eq!(gw["spec"]["listeners"][0]["port"], 9090);
    assert_eq!(gw["metadata"]["generation"], 2);
    k.ok(&[
        "patch",
        "gateway",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    ]);
    assert_eq!(k.get_json(&["gateway", "web"])["metadata"]["generation"], 2);

    // A conflicting server-side apply is refused without --force-conflicts.
    let changed = k.write("changed.yaml", &OBJECTS.replace("port: 80\n", "port: 81\n"));
    let err = k.fails(&["apply", "--server-side", "-f", &changed]);
    assert!(err.contains("conflict"), "{err}");
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &changed,
    ]);
    assert_eq!(
        k.get_json(&["gateway", "web"])["spec"]["listeners"][0]["port"],
        81
    );

    // Namespaces and cascading delete.
    k.ok(&["create", "namespace", "team-a"]);
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "team-a",
        "--from-literal=k=v",
    ]);
    // `kubectl create <kind>` sends protobuf bodies for these built-in kinds.
    k.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "team-a",
        "--from-literal=pw=hunter2",
    ]);
    let secret = k.sim.get("Secret", "team-a", "pw").unwrap();
    assert_eq!(secret["data"]["pw"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        k.sim.get("ConfigMap", "team-a", "cfg").unwrap()["data"]["k"],
        "v"
    );
    let ns = k.get_json(&["namespace", "team-a"]);
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(k.sim.objects("ConfigMap").len(), 1);
    let start = Instant::now();
    k.ok(&["delete", "namespace", "team-a"]);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(k.sim.objects("ConfigMap").is_empty());
    assert!(k.sim.objects("Secret").is_empty());
}
