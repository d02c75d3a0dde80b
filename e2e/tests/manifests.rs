//! `manifests/` renders with `kubectl kustomize`, every object parses with its
//! k8s-openapi (or gateway-api) type, the Deployment follows the hardening rules, the
//! RBAC grants what cluster mode uses, and the whole set applies (server-side) to the
//! API simulator.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("manifests")
}

fn render() -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(manifests_dir())
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("YAML document");
            serde_json::to_value(v).expect("JSON-compatible")
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{v:#}", v["kind"]))
}

/// Every rendered object parses with its typed struct; the expected set is there.
#[test]
fn renders_valid_objects() {
    let objects = render();
    let mut kinds: Vec<String> = Vec::new();
    for o in &objects {
        let kind = o["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "Namespace" => drop(parse::<Namespace>(o)),
            "ServiceAccount" => drop(parse::<ServiceAccount>(o)),
            "ClusterRole" => drop(parse::<ClusterRole>(o)),
            "ClusterRoleBinding" => drop(parse::<ClusterRoleBinding>(o)),
            "Role" => drop(parse::<Role>(o)),
            "RoleBinding" => drop(parse::<RoleBinding>(o)),
            "Deployment" => drop(parse::<Deployment>(o)),
            "PodDisruptionBudget" => drop(parse::<PodDisruptionBudget>(o)),
            "Service" => drop(parse::<Service>(o)),
            "IngressClass" => drop(parse::<IngressClass>(o)),
            "GatewayClass" => {
                let gc: gateway_api::apis::standard::gatewayclasses::GatewayClass = parse(o);
                assert_eq!(gc.spec.controller_name, "sluice.dev/gateway-controller");
                assert!(
                    gc.metadata.namespace.is_none(),
                    "GatewayClass is cluster-scoped"
                );
            }
            other => panic!("unexpected kind {other}"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "GatewayClass",
            "IngressClass",
            "Namespace",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

/// The Deployment: 2 replicas, probes on /readyz and /healthz, resources, non-root,
/// read-only root filesystem, no capabilities.
#[test]
fn deployment_is_hardened() {
    let objects = render();
    let d: Deployment = parse(
        objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment"),
    );
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
    let c = &pod.containers[0];
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert!(c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .is_some());
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none(), "no capability added");
    assert!(c.args.iter().flatten().any(|a| a == "run"));
    assert!(
        !c.args
            .iter()
            .flatten()
            .any(|a| a.starts_with("--manifests")),
        "cluster mode"
    );
}

/// The RBAC grants list+watch on every kind the watchers read and patch on the status
/// subresources the status writer applies.
#[test]
fn rbac_covers_cluster_mode() {
    let objects = render();
    let cr: ClusterRole = parse(
        objects
            .iter()
            .find(|o| o["kind"] == "ClusterRole")
            .expect("a ClusterRole"),
    );
    let allows = |group: &str, resource: &str, verb: &str| {
        cr.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for (g, r) in [
        ("", "namespaces"),
        ("", "services"),
        ("", "secrets"),
        ("", "configmaps"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("gateway.networking.k8s.io", "gatewayclasses"),
        ("gateway.networking.k8s.io", "gateways"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "referencegrants"),
        ("gateway.networking.k8s.io", "backendtlspolicies"),
    ] {
        assert!(allows(g, r, "list") && allows(g, r, "watch"), "{g}/{r}");
    }
    for r in [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "backendtlspolicies",
    ] {
        assert!(allows(
            "gateway.networking.k8s.io",
            &format!("{r}/status"),
            "patch"
        ));
    }
    assert!(!allows("", "secrets", "get"), "no more than needed");
}

/// `kubectl apply --server-side -k manifests/` against the simulator creates every
/// object.
#[test]
fn applies_to_the_simulator() {
    let sim = sluice_kubesim::Sim::start(sluice_kubesim::SimOptions::default())
        .expect("starting the simulator");
    let out = Command::new("kubectl")
        .env("KUBECONFIG", sim.kubeconfig_path())
        .args(["apply", "--server-side", "-k"])
        .arg(manifests_dir())
        .output()
        .expect("running kubectl apply");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sim.get("Deployment", "sluice-system", "sluice").is_some());
    assert!(sim.get("GatewayClass", "", "sluice").is_some());
    assert!(sim
        .get("Role", "sluice-system", "sluice-leader-election")
        .is_some());
}
