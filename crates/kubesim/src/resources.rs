//! Resource types the simulator serves: built-in kinds and kinds defined by
//! CustomResourceDefinitions, plus the discovery documents that describe them.

use serde_json::{json, Value};

/// The group of the Gateway API kinds.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// One REST resource (a plural name in a group), possibly served in several versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Served versions; the first is the preferred (and storage) version.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Has a `status` subresource: writes to the main resource ignore `status`,
    /// writes to `/status` change only `status`.
    pub status: bool,
    /// Maintains `metadata.generation`.
    pub generation: bool,
    /// Defined by a CustomResourceDefinition (named `crd_name`).
    pub crd_name: Option<String>,
}

impl ResourceType {
    /// The storage key: `group/plural`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `plural.group` (or `plural` for the core group), as used in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `apiVersion` for a version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn preferred_version(&self) -> &str {
        &self.versions[0]
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// True if `name` designates this type: kind, plural, singular or a short name
    /// (case-insensitive), optionally qualified with `.group`.
    pub fn matches_name(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (lower.clone(), None),
        };
        if let Some(g) = group {
            if g != self.group {
                return false;
            }
        }
        base == self.kind.to_ascii_lowercase()
            || base == self.plural
            || base == self.singular
            || self.short_names.contains(&base)
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        let mut out = vec![main];
        if self.status {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    generation: bool,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short: &["svc"],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short: &["ep"],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        status: false,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
        status: true,
        generation: false,
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short: &["sa"],
        status: false,
        generation: false,
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        status: false,
        generation: false,
    },
    Builtin {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        singular: "ingress",
        kind: "Ingress",
        namespaced: true,
        short: &["ing"],
        status: true,
        generation: true,
    },
    Builtin {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingressclasses",
        singular: "ingressclass",
        kind: "IngressClass",
        namespaced: false,
        short: &[],
        status: false,
        generation: true,
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short: &["deploy"],
        status: true,
        generation: true,
    },
    Builtin {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short: &["pdb"],
        status: true,
        generation: true,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short: &[],
        status: false,
        generation: false,
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short: &["crd", "crds"],
        status: true,
        generation: true,
    },
];

/// The built-in resource types.
pub fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            versions: vec![b.version.to_string()],
            plural: b.plural.to_string(),
            singular: b.singular.to_string(),
            kind: b.kind.to_string(),
            list_kind: format!("{}List", b.kind),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| s.to_string()).collect(),
            status: b.status,
            generation: b.generation,
            crd_name: None,
        })
        .collect()
}

/// The resource type a CustomResourceDefinition object defines, if it is well formed.
pub fn from_crd(crd: &Value) -> Option<ResourceType> {
    let name = crd.pointer("/metadata/name")?.as_str()?.to_string();
    let spec = crd.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let names = spec.get("names")?;
    let plural = names.get("plural")?.as_str()?.to_string();
    let kind = names.get("kind")?.as_str()?.to_string();
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let list_kind = names
        .get("listKind")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let short_names = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let mut versions = Vec::new();
    let mut status = false;
    for v in spec.get("versions")?.as_array()? {
        let served = v.get("served").and_then(Value::as_bool).unwrap_or(true);
        if !served {
            continue;
        }
        let vname = v.get("name")?.as_str()?.to_string();
        let storage = v.get("storage").and_then(Value::as_bool).unwrap_or(false);
        if v.pointer("/subresources/status").is_some() {
            status = true;
        }
        if storage {
            versions.insert(0, vname);
        } else {
            versions.push(vname);
        }
    }
    if versions.is_empty() {
        return None;
    }
    Some(ResourceType {
        group,
        versions,
        plural,
        singular,
        kind,
        list_kind,
        namespaced,
        short_names,
        status,
        generation: true,
        crd_name: Some(name),
    })
}

/// A minimal CustomResourceDefinition object (no schema: everything is preserved).
pub fn crd_object(
    group: &str,
    kind: &str,
    plural: &str,
    short_names: &[&str],
    namespaced: bool,
    versions: &[&str],
    status: bool,
) -> Value {
    let storage = versions[0];
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let mut ver = json!({
                "name": v,
                "served": true,
                "storage": *v == storage,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true
                }},
            });
            if status {
                ver["subresources"] = json!({"status": {}});
            }
            ver
        })
        .collect();
    let mut names = json!({
        "plural": plural,
        "singular": kind.to_ascii_lowercase(),
        "kind": kind,
        "listKind": format!("{kind}List"),
    });
    if !short_names.is_empty() {
        names["shortNames"] = json!(short_names);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{group}"),
            "annotations": {"gateway.networking.k8s.io/bundle-version": "v1.4.0"},
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": versions,
        },
    })
}

/// CustomResourceDefinitions for the Gateway API kinds (standard and experimental
/// channels), as installed by default.
pub fn gateway_api_crds() -> Vec<Value> {
    let g = GATEWAY_GROUP;
    vec![
        crd_object(
            g,
            "GatewayClass",
            "gatewayclasses",
            &["gc"],
            false,
            &["v1", "v1beta1"],
            true,
        ),
        crd_object(
            g,
            "Gateway",
            "gateways",
            &["gtw"],
            true,
            &["v1", "v1beta1"],
            true,
        ),
        crd_object(
            g,
            "HTTPRoute",
            "httproutes",
            &[],
            true,
            &["v1", "v1beta1"],
            true,
        ),
        crd_object(g, "GRPCRoute", "grpcroutes", &[], true, &["v1"], true),
        crd_object(
            g,
            "ReferenceGrant",
            "referencegrants",
            &["refgrant"],
            true,
            &["v1beta1", "v1"],
            false,
        ),
        crd_object(
            g,
            "ListenerSet",
            "listenersets",
            &["lset"],
            true,
            &["v1"],
            true,
        ),
        crd_object(
            g,
            "TLSRoute",
            "tlsroutes",
            &[],
            true,
            &["v1", "v1alpha2"],
            true,
        ),
        crd_object(
            g,
            "BackendTLSPolicy",
            "backendtlspolicies",
            &["btlspolicy"],
            true,
            &["v1"],
            true,
        ),
        crd_object(g, "TCPRoute", "tcproutes", &[], true, &["v1alpha2"], true),
        crd_object(g, "UDPRoute", "udproutes", &[], true, &["v1alpha2"], true),
    ]
}

/// `APIResourceList` for one group version.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Value {
    let resources: Vec<Value> = types
        .iter()
        .filter(|t| t.group == group && t.serves(version))
        .flat_map(ResourceType::discovery_entries)
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    })
}

/// `APIGroup` for one group, or `None` if no type is served in it.
pub fn api_group(types: &[ResourceType], group: &str) -> Option<Value> {
    let mut versions: Vec<String> = Vec::new();
    let mut preferred: Option<String> = None;
    for t in types.iter().filter(|t| t.group == group) {
        if preferred.is_none() {
            preferred = Some(t.preferred_version().to_string());
        }
        for v in &t.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    let preferred = preferred?;
    // The preferred version goes first, the rest by descending stability.
    versions.sort_by_key(|v| (v != &preferred, version_rank(v)));
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": vs,
        "preferredVersion": {"groupVersion": format!("{group}/{preferred}"), "version": preferred},
    }))
}

fn version_rank(v: &str) -> (u8, i64, i64) {
    // v1 < v1beta1 < v1alpha1 by stability, higher major first.
    let rest = v.trim_start_matches('v');
    let major: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let tail = &rest[major.len()..];
    let major: i64 = major.parse().unwrap_or(0);
    let (stab, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m.parse().unwrap_or(0))
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (2, m.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stab, -major, -minor)
}

/// `APIGroupList` for `/apis`.
pub fn group_list(types: &[ResourceType]) -> Value {
    let mut groups: Vec<String> = Vec::new();
    for t in types {
        if !t.group.is_empty() && !groups.contains(&t.group) {
            groups.push(t.group.clone());
        }
    }
    let gs: Vec<Value> = groups
        .iter()
        .filter_map(|g| {
            let mut v = api_group(types, g)?;
            let obj = v.as_object_mut()?;
            obj.remove("kind");
            obj.remove("apiVersion");
            Some(v)
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

fn gv_hash(types: &[ResourceType], group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.serves(version))
    {
        t.plural.hash(&mut h);
        t.kind.hash(&mut h);
        t.namespaced.hash(&mut h);
        t.status.hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` root: one entry per group version.
pub fn openapi_v3_root(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for t in types {
        for v in &t.versions {
            let p = gv_path(&t.group, v);
            let hash = gv_hash(types, &t.group, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    json!({ "paths": paths })
}

/// A minimal OpenAPI v3 document for one group version: the paths with their verbs,
/// the `x-kubernetes-group-version-kind` extension and the query parameters kubectl
/// checks for (`fieldValidation`, `fieldManager`, `dryRun`, `force`), and permissive
/// schemas (every kind preserves unknown fields).
pub fn openapi_v3_group_version(
    types: &[ResourceType],
    group: &str,
    version: &str,
) -> Option<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.serves(version))
        .collect();
    if served.is_empty() {
        return None;
    }
    let prefix = format!("/{}", gv_path(group, version));
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        param("dryRun"),
        param("fieldManager"),
        param("fieldValidation"),
    ]);
    let mut patch_params = write_params.clone();
    if let Some(a) = patch_params.as_array_mut() {
        a.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in served {
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let schema_name = format!(
            "{}.{}.{}",
            if group.is_empty() {
                "io.k8s.api.core"
            } else {
                group
            },
            version,
            t.kind
        );
        let schema_ref = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let body = json!({"content": {"*/*": {"schema": schema_ref}}, "required": true});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}});
        let op = |action: &str, params: &Value, with_body: bool| {
            let mut o = json!({
                "operationId": format!("{action}{}", t.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": ok,
            });
            if with_body {
                o["requestBody"] = body.clone();
            }
            o
        };
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        paths.insert(
            base.clone(),
            json!({
                "get": op("list", &json!([]), false),
                "post": op("post", &write_params, true),
                "delete": op("deletecollection", &json!([]), false),
            }),
        );
        let item = format!("{base}/{{name}}");
        paths.insert(
            item.clone(),
            json!({
                "get": op("get", &json!([]), false),
                "put": op("put", &write_params, true),
                "patch": op("patch", &patch_params, true),
                "delete": op("delete", &json!([param("dryRun")]), false),
            }),
        );
        if t.status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": op("get", &json!([]), false),
                    "put": op("put", &write_params, true),
                    "patch": op("patch", &patch_params, true),
                }),
            );
        }
        schemas.insert(
            schema_name,
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
