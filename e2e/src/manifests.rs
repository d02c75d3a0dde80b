//! Manifest builders (YAML strings, one object each; join several with [`docs`]) and
//! [`write_atomic`], which writes a file the way the conformance runner does.
//!
//! Objects are built as JSON values and printed as block YAML, so a builder cannot
//! produce badly indented YAML.

use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;

/// The controller name the binary manages by default.
pub const CONTROLLER_NAME: &str = "sluice.dev/gateway-controller";
/// The GatewayClass every test's Gateways use ([`mk_gateway_class`] makes it).
pub const GATEWAY_CLASS: &str = "sluice";
/// The Service port every test Service exposes ([`mk_service_with_endpoints`]).
pub const SERVICE_PORT: u16 = 8080;

fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).expect("a JSON value prints as YAML")
}

/// Several objects as one multi-document YAML file.
pub fn docs<S: AsRef<str>>(objects: &[S]) -> String {
    objects
        .iter()
        .map(|o| {
            let o = o.as_ref();
            if o.ends_with('\n') {
                o.to_owned()
            } else {
                format!("{o}\n")
            }
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

pub fn mk_namespace(name: &str) -> String {
    yaml(&json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))
}

/// A GatewayClass named `name` managed by [`CONTROLLER_NAME`].
pub fn mk_gateway_class(name: &str) -> String {
    yaml(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": CONTROLLER_NAME},
    }))
}

/// One HTTP listener of a Gateway.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub port: u16,
    pub hostname: Option<String>,
    /// `allowedRoutes.namespaces.from`: `Same` (default here) or `All`.
    pub from: String,
}

impl ListenerSpec {
    pub fn http(name: &str, port: u16) -> ListenerSpec {
        ListenerSpec {
            name: name.to_owned(),
            port,
            hostname: None,
            from: "Same".to_owned(),
        }
    }

    pub fn hostname(mut self, hostname: &str) -> ListenerSpec {
        self.hostname = Some(hostname.to_owned());
        self
    }

    /// Sets `allowedRoutes.namespaces.from` (`Same`, `All`).
    pub fn allow_from(mut self, from: &str) -> ListenerSpec {
        self.from = from.to_owned();
        self
    }
}

/// A Gateway of class [`GATEWAY_CLASS`] at `addr` with one HTTP listener `http` on
/// `port` (routes from the same namespace allowed).
pub fn mk_gateway(ns: &str, name: &str, addr: IpAddr, port: u16) -> String {
    mk_gateway_with_listeners(ns, name, addr, &[ListenerSpec::http("http", port)])
}

/// A Gateway of class [`GATEWAY_CLASS`] at `addr` with the given HTTP listeners.
pub fn mk_gateway_with_listeners(
    ns: &str,
    name: &str,
    addr: IpAddr,
    listeners: &[ListenerSpec],
) -> String {
    mk_gateway_at(ns, name, Some(addr), listeners)
}

/// A Gateway of class [`GATEWAY_CLASS`] with the given HTTP listeners, at `addr`, or
/// without `spec.addresses` (folder mode then picks one from its address pool).
pub fn mk_gateway_at(
    ns: &str,
    name: &str,
    addr: Option<IpAddr>,
    listeners: &[ListenerSpec],
) -> String {
    let listeners: Vec<Value> = listeners
        .iter()
        .map(|l| {
            let mut v = json!({
                "name": l.name,
                "protocol": "HTTP",
                "port": l.port,
                "allowedRoutes": {"namespaces": {"from": l.from}},
            });
            if let Some(h) = &l.hostname {
                v["hostname"] = json!(h);
            }
            v
        })
        .collect();
    let mut spec = json!({
        "gatewayClassName": GATEWAY_CLASS,
        "listeners": listeners,
    });
    if let Some(addr) = addr {
        spec["addresses"] = json!([{"type": "IPAddress", "value": addr.to_string()}]);
    }
    yaml(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
}

/// A Service `name` with port `http` [`SERVICE_PORT`] (`service_port`), and an
/// EndpointSlice putting one ready endpoint 127.0.0.1 at `echo_port` behind it.
pub fn mk_service_with_endpoints(
    ns: &str,
    name: &str,
    service_port: u16,
    echo_port: u16,
) -> String {
    mk_service_with_endpoint_ports(ns, name, service_port, &[echo_port])
}

/// Like [`mk_service_with_endpoints`] with several endpoints, each 127.0.0.1 at its
/// own port: one EndpointSlice per port (a slice has one port set).
pub fn mk_service_with_endpoint_ports(
    ns: &str,
    name: &str,
    service_port: u16,
    echo_ports: &[u16],
) -> String {
    let mut objects = vec![yaml(&json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "protocol": "TCP", "port": service_port, "targetPort": echo_ports.first().copied().unwrap_or(service_port)}],
        },
    }))];
    for (i, echo_port) in echo_ports.iter().enumerate() {
        objects.push(yaml(&json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-{i}"),
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": echo_port}],
            "endpoints": [{
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": true},
            }],
        })));
    }
    docs(&objects)
}

/// An HTTPRoute attached to Gateway `gateway` with one rule (PathPrefix `/`) sending
/// everything to Service `backend` port [`SERVICE_PORT`].
pub fn mk_route(ns: &str, name: &str, gateway: &str, backend: &str) -> String {
    HttpRoute::new(ns, name)
        .parent(gateway)
        .rule(Rule::new().backend(backend, SERVICE_PORT, None))
        .yaml()
}

/// HTTPRoute builder.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    ns: String,
    name: String,
    parents: Vec<Value>,
    hostnames: Vec<String>,
    rules: Vec<Rule>,
    labels: Vec<(String, String)>,
}

impl HttpRoute {
    pub fn new(ns: &str, name: &str) -> HttpRoute {
        HttpRoute {
            ns: ns.to_owned(),
            name: name.to_owned(),
            parents: Vec::new(),
            hostnames: Vec::new(),
            rules: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Attaches to Gateway `gateway` in the route's namespace.
    pub fn parent(mut self, gateway: &str) -> HttpRoute {
        self.parents.push(json!({"name": gateway}));
        self
    }

    /// Attaches to one listener of Gateway `gateway`.
    pub fn parent_section(mut self, gateway: &str, section: &str) -> HttpRoute {
        self.parents
            .push(json!({"name": gateway, "sectionName": section}));
        self
    }

    /// Attaches to Gateway `namespace/gateway`, optionally to one listener.
    pub fn parent_ref(
        mut self,
        namespace: &str,
        gateway: &str,
        section: Option<&str>,
    ) -> HttpRoute {
        let mut v = json!({"name": gateway, "namespace": namespace});
        if let Some(section) = section {
            v["sectionName"] = json!(section);
        }
        self.parents.push(v);
        self
    }

    /// Adds a label (metadata only: no spec change).
    pub fn label(mut self, key: &str, value: &str) -> HttpRoute {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn hostname(mut self, hostname: &str) -> HttpRoute {
        self.hostnames.push(hostname.to_owned());
        self
    }

    pub fn rule(mut self, rule: Rule) -> HttpRoute {
        self.rules.push(rule);
        self
    }

    pub fn yaml(&self) -> String {
        let mut spec = json!({
            "parentRefs": self.parents,
            "rules": self.rules.iter().map(Rule::value).collect::<Vec<_>>(),
        });
        if !self.hostnames.is_empty() {
            spec["hostnames"] = json!(self.hostnames);
        }
        let mut metadata = json!({"name": self.name, "namespace": self.ns});
        if !self.labels.is_empty() {
            let labels: serde_json::Map<String, Value> = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            metadata["labels"] = Value::Object(labels);
        }
        yaml(&json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": spec,
        }))
    }
}

/// One HTTPRoute rule: matches (ORed) and weighted backendRefs.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    matches: Vec<Value>,
    backends: Vec<Value>,
}

impl Rule {
    pub fn new() -> Rule {
        Rule::default()
    }

    /// Adds a match on the path (`Exact` or `PathPrefix`).
    pub fn path(self, kind: &str, value: &str) -> Rule {
        self.matching(Match::new().path(kind, value))
    }

    pub fn path_exact(self, value: &str) -> Rule {
        self.path("Exact", value)
    }

    pub fn path_prefix(self, value: &str) -> Rule {
        self.path("PathPrefix", value)
    }

    /// Adds a match on one header (Exact).
    pub fn header(self, name: &str, value: &str) -> Rule {
        self.matching(Match::new().header(name, value))
    }

    /// Adds a match (matches of one rule are ORed).
    pub fn matching(mut self, m: Match) -> Rule {
        self.matches.push(m.0);
        self
    }

    /// Adds a backendRef to Service `service` at `port`, with an optional weight.
    pub fn backend(mut self, service: &str, port: u16, weight: Option<u32>) -> Rule {
        let mut v = json!({"name": service, "port": port});
        if let Some(w) = weight {
            v["weight"] = json!(w);
        }
        self.backends.push(v);
        self
    }

    fn value(&self) -> Value {
        let mut v = json!({"backendRefs": self.backends});
        if !self.matches.is_empty() {
            v["matches"] = json!(self.matches);
        }
        v
    }
}

/// One HTTPRoute match: conditions ANDed.
#[derive(Debug, Clone)]
pub struct Match(Value);

impl Default for Match {
    fn default() -> Self {
        Match(json!({}))
    }
}

impl Match {
    pub fn new() -> Match {
        Match::default()
    }

    pub fn path(mut self, kind: &str, value: &str) -> Match {
        self.0["path"] = json!({"type": kind, "value": value});
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Match {
        let headers = self.0["headers"].as_array().cloned().unwrap_or_default();
        let mut headers = headers;
        headers.push(json!({"type": "Exact", "name": name, "value": value}));
        self.0["headers"] = json!(headers);
        self
    }
}

/// Writes `contents` to `path` in one rename (temp file `.<name>.tmp` beside it, as the
/// conformance runner does), so the watcher never sees half a file.
pub fn write_atomic(path: &Path, contents: &str) {
    let dir = path.parent().expect("a file path has a parent");
    let name = path
        .file_name()
        .expect("a file path has a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), path.display()));
}
