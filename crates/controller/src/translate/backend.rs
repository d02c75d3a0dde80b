//! backendRefs → IR backends: Service port → EndpointSlices → ready endpoints.
use crate::k8s::*;
use crate::status::conditions::{self as c, reasons, Cond};
use crate::store::{ObjectKey, Store};
use gateway_api::apis::experimental::httproutes::HttpRouteRulesBackendRefs;
use sluice_ir as ir;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// BackendTLSPolicies by target: `(Service, sectionName)` → indexes of the policies
/// naming it in `tls` (and in `Graph::policies`), the one in effect first.
#[derive(Debug, Default, Clone)]
pub struct BackendTlsTable {
    /// `(Service, port name)` (`None`: the whole Service) → policy indexes, winner first.
    pub by_target: BTreeMap<(ObjectKey, Option<String>), Vec<usize>>,
    /// Per policy: TLS settings, or why the policy cannot be used.
    pub tls: Vec<Result<ir::UpstreamTls, String>>,
}

impl BackendTlsTable {
    /// The policies for a Service port, the one in effect first: those naming the port
    /// win over those for the whole Service.
    pub fn lookup(&self, service: &ObjectKey, port_name: &str) -> Option<&[usize]> {
        let by_port = (!port_name.is_empty())
            .then(|| {
                self.by_target
                    .get(&(service.clone(), Some(port_name.to_string())))
            })
            .flatten();
        by_port
            .or_else(|| self.by_target.get(&(service.clone(), None)))
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}

/// A resolved backendRef.
#[derive(Debug)]
pub struct Resolved {
    /// The backend (`Invalid` when it does not resolve).
    pub backend: ir::Backend,
    /// Route ResolvedRefs condition explaining why it does not resolve.
    pub failure: Option<Cond>,
    /// Indexes of the BackendTLSPolicies naming the backend, the one applied first.
    pub policies: Vec<usize>,
}

/// The PEM CA bundle under `ca.crt` of a ConfigMap or Secret (`kind`); the error
/// says what is missing.
pub fn ca_certificate(store: &Store, kind: &str, ns: &str, name: &str) -> Result<String, String> {
    let k = ObjectKey::new(ns, name);
    let ca = if kind == "ConfigMap" {
        let Some(cm) = store.config_maps.get(&k) else {
            return Err(format!("ConfigMap {ns}/{name} does not exist."));
        };
        cm.data.as_ref().and_then(|d| d.get("ca.crt").cloned())
    } else {
        let Some(s) = store.secrets.get(&k) else {
            return Err(format!("Secret {ns}/{name} does not exist."));
        };
        s.data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .or_else(|| s.string_data.as_ref()?.get("ca.crt").cloned())
    };
    match ca {
        Some(pem)
            if pem.contains("-----BEGIN CERTIFICATE-----")
                && pem.contains("-----END CERTIFICATE-----") =>
        {
            Ok(pem)
        }
        Some(_) => Err(format!(
            "{kind} {ns}/{name}: ca.crt does not hold a PEM certificate."
        )),
        None => Err(format!("{kind} {ns}/{name} has no ca.crt.")),
    }
}

/// Does a ReferenceGrant in `to_ns` allow `from_kind` objects (Gateway API group) in
/// `from_ns` to reference the `to_group`/`to_kind` object `to_name`?
pub fn reference_permitted(
    store: &Store,
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_ns: &str,
    to_name: &str,
) -> bool {
    let core = |g: &str| if g == "core" { "" } else { g }.to_string();
    store
        .reference_grants
        .iter()
        .filter(|(k, _)| k.namespace == to_ns)
        .any(|(_, rg)| {
            let from_ok =
                rg.spec.from.iter().any(|f| {
                    f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns
                });
            let to_ok = rg.spec.to.iter().any(|t| {
                core(&t.group) == core(to_group)
                    && t.kind == to_kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to_name)
            });
            from_ok && to_ok
        })
}

/// Resolves one backendRef (its `filters` are lowered per match, in `lower`). A reference that does not resolve gives an
/// [`ir::BackendKind::Invalid`] backend (500 for its share) and the ResolvedRefs
/// condition that explains it.
pub fn resolve(
    store: &Store,
    tls_table: &BackendTlsTable,
    route: &ObjectKey,
    source: &ir::Source,
    br: &HttpRouteRulesBackendRefs,
) -> Resolved {
    resolve_from(store, tls_table, "HTTPRoute", route, source, br)
}

/// [`resolve`] for a backendRef of a route of kind `route_kind` (the `from` kind a
/// ReferenceGrant must name).
pub fn resolve_from(
    store: &Store,
    tls_table: &BackendTlsTable,
    route_kind: &str,
    route: &ObjectKey,
    source: &ir::Source,
    br: &HttpRouteRulesBackendRefs,
) -> Resolved {
    let HttpRouteRulesBackendRefs {
        filters: _,
        group,
        kind,
        name,
        namespace,
        port,
        weight,
    } = br;
    let group = group.as_deref().unwrap_or("");
    let kind = kind.as_deref().unwrap_or("Service");
    let ns = namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&route.namespace);
    let weight = weight.unwrap_or(1).max(0) as u32;
    let written = match port {
        Some(p) => format!("{ns}/{name}:{p}"),
        None => format!("{ns}/{name}"),
    };
    let invalid = |cond: Cond| {
        let backend = ir::Backend {
            name: written.clone(),
            source: source.clone(),
            weight,
            filters: vec![],
            kind: ir::BackendKind::Invalid {
                reason: cond.message.clone(),
                status: 500,
            },
        };
        Resolved {
            backend,
            failure: Some(cond),
            policies: Vec::new(),
        }
    };
    if !(group.is_empty() || group == "core") || kind != "Service" {
        return invalid(c::route_unresolved_refs(
            reasons::INVALID_KIND,
            format!(
                "Backend {} {written} is not a Service.",
                crate::translate::group_kind(group, kind)
            ),
        ));
    }
    if ns != route.namespace
        && !reference_permitted(store, route_kind, &route.namespace, "", "Service", ns, name)
    {
        return invalid(c::route_unresolved_refs(
            reasons::REF_NOT_PERMITTED,
            format!("Service {ns}/{name} is in another namespace and no ReferenceGrant allows it."),
        ));
    }
    let Some(port) = port else {
        return invalid(c::route_unresolved_refs(
            reasons::BACKEND_NOT_FOUND,
            format!("Backend Service {ns}/{name} has no port."),
        ));
    };
    let Some(svc) = store.services.get(&ObjectKey::new(ns, name)) else {
        return invalid(c::route_unresolved_refs(
            reasons::BACKEND_NOT_FOUND,
            format!("Service {ns}/{name} does not exist."),
        ));
    };
    let Some(sp) = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ps| ps.iter().find(|p| p.port == *port))
    else {
        return invalid(c::route_unresolved_refs(
            reasons::BACKEND_NOT_FOUND,
            format!("Service {ns}/{name} has no port {port}."),
        ));
    };
    let port_name = sp.name.as_deref().unwrap_or("");
    let mut app_protocol = sp.app_protocol.clone();
    let mut endpoints = BTreeSet::new();
    for (k, slice) in &store.endpoint_slices {
        if k.namespace != ns
            || slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                != Some(name.as_str())
        {
            continue;
        }
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(ep_port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
        else {
            continue;
        };
        let Some(number) = ep_port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        if app_protocol.is_none() {
            app_protocol = ep_port.app_protocol.clone();
        }
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(address) = a.parse::<IpAddr>() {
                    endpoints.insert(ir::Endpoint {
                        address,
                        port: number,
                    });
                }
            }
        }
    }
    let mut protocol = match app_protocol.as_deref() {
        Some("kubernetes.io/h2c") => ir::UpstreamProtocol::H2c,
        _ => ir::UpstreamProtocol::Http1,
    };
    let svc_key = ObjectKey::new(ns, name);
    let policies = tls_table
        .lookup(&svc_key, port_name)
        .map(<[usize]>::to_vec)
        .unwrap_or_default();
    let mut tls = None;
    if let Some(&i) = policies.first() {
        match &tls_table.tls[i] {
            Ok(t) => {
                protocol = ir::UpstreamProtocol::Https;
                tls = Some(t.clone());
            }
            Err(msg) => {
                // The policy asks for TLS but cannot be used: fail closed rather than
                // speak clear text to a backend that expects TLS.
                let backend = ir::Backend {
                    name: format!("{ns}/{name}:{port}"),
                    source: source.clone(),
                    weight,
                    filters: vec![],
                    kind: ir::BackendKind::Invalid {
                        reason: msg.clone(),
                        status: 500,
                    },
                };
                return Resolved {
                    backend,
                    failure: None,
                    policies,
                };
            }
        }
    }
    let backend = ir::Backend {
        name: format!("{ns}/{name}:{port}"),
        source: source.clone(),
        weight,
        filters: vec![],
        kind: ir::BackendKind::Endpoints(ir::EndpointSet {
            protocol,
            endpoints: endpoints.into_iter().collect(),
            tls,
        }),
    };
    Resolved {
        backend,
        failure: None,
        policies,
    }
}
