//! backendRefs → IR backends: Service port → EndpointSlices → ready endpoints.
use crate::k8s::*;
use crate::status::conditions::{self as c, reasons, Cond};
use crate::store::{ObjectKey, Store};
use gateway_api::apis::experimental::httproutes::HttpRouteRulesBackendRefs;
use sluice_ir as ir;
use std::collections::BTreeSet;
use std::net::IpAddr;

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
    route: &ObjectKey,
    source: &ir::Source,
    br: &HttpRouteRulesBackendRefs,
) -> (ir::Backend, Option<Cond>) {
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
        (backend, Some(cond))
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
        && !reference_permitted(
            store,
            "HTTPRoute",
            &route.namespace,
            "",
            "Service",
            ns,
            name,
        )
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
    let protocol = match app_protocol.as_deref() {
        Some("kubernetes.io/h2c") => ir::UpstreamProtocol::H2c,
        _ => ir::UpstreamProtocol::Http1,
    };
    let backend = ir::Backend {
        name: format!("{ns}/{name}:{port}"),
        source: source.clone(),
        weight,
        filters: vec![],
        kind: ir::BackendKind::Endpoints(ir::EndpointSet {
            protocol,
            endpoints: endpoints.into_iter().collect(),
            tls: None,
        }),
    };
    (backend, None)
}
