//! Gateways and their listeners: validity, conflicts, TLS references.
use super::*;
use crate::status::conditions::{self as c, reasons, Cond};
use crate::translate::backend;
use gateway_api::apis::experimental::gateways::{
    GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
    GatewayListenersAllowedRoutesNamespacesSelector as Selector,
};

pub(super) fn gateway_node(
    store: &Store,
    key: &ObjectKey,
    gw: &Gateway,
    g: &mut Graph,
) -> GatewayNode {
    let generation = gw.metadata.generation.unwrap_or(1);
    let obj = ObjectRef::new("Gateway", &key.namespace, &key.name);
    let mut listeners: Vec<ListenerNode> = gw
        .spec
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| listener_node(store, key, i, l, g, &obj))
        .collect();
    let insecure_frontend = frontend_validation(store, key, gw, &mut listeners, g, &obj);
    detect_conflicts(&mut listeners);

    let mut conditions = Vec::new();
    let mut accepted = true;
    // spec.addresses: only IP addresses are supported.
    let mut bad_addresses = Vec::new();
    for a in gw.spec.addresses.iter().flatten() {
        let t = a.r#type.as_deref().unwrap_or("IPAddress");
        let v = a.value.as_deref().unwrap_or("");
        if t != "IPAddress" {
            bad_addresses.push(format!("type {t:?} is not supported"));
        } else if !v.is_empty() && v.parse::<IpAddr>().is_err() {
            bad_addresses.push(format!("{v:?} is not an IP address"));
        }
    }
    // spec.infrastructure.parametersRef: no parameters kind is supported.
    let mut invalid_parameters = None;
    if let Some(p) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    {
        let msg = format!(
            "parametersRef {}/{} {:?} is not supported.",
            p.group, p.kind, p.name
        );
        g.notices.push(Notice::warning(
            obj.clone(),
            Some("spec.infrastructure.parametersRef".into()),
            msg.clone(),
        ));
        invalid_parameters = Some(c::gateway_invalid_parameters(msg));
    }
    let invalid: Vec<String> = listeners
        .iter()
        .filter(|l| !l.attachable)
        .map(|l| l.name.clone())
        .collect();
    if let Some(cond) = invalid_parameters {
        accepted = false;
        conditions.push(cond);
    } else if !bad_addresses.is_empty() {
        accepted = false;
        conditions.push(c::gateway_not_accepted_address(format!(
            "Addresses cannot be used: {}.",
            bad_addresses.join("; ")
        )));
    } else if !invalid.is_empty() && invalid.len() == listeners.len() {
        accepted = false;
        conditions.push(c::gateway_not_accepted_listeners_not_valid(&invalid));
    } else if !invalid.is_empty() {
        conditions.push(c::gateway_accepted_listeners_not_valid(&invalid));
    } else {
        conditions.push(c::gateway_accepted());
    }
    let mut backend_client_certificate = None;
    if let Some((cond, cert)) = backend_client_certificate_ref(store, key, gw, g, &obj) {
        conditions.push(cond);
        backend_client_certificate = cert;
    }
    if !insecure_frontend.is_empty() {
        conditions.push(c::gateway_insecure_frontend_validation(&insecure_frontend));
    }
    let address = if accepted {
        store.gateway_addresses.get(key).copied()
    } else {
        None
    };
    if !accepted {
        conditions.push(c::gateway_not_programmed("Gateway is not accepted."));
        for l in &mut listeners {
            l.programmable = false;
            for cond in &mut l.conditions {
                if cond.type_ == c::types::PROGRAMMED && cond.status {
                    *cond = c::listener_not_programmed("Gateway is not accepted.");
                }
            }
        }
    } else if address.is_none() {
        conditions.push(c::gateway_address_not_assigned());
    } else {
        conditions.push(c::gateway_programmed());
    }
    GatewayNode {
        key: key.clone(),
        generation,
        address,
        accepted,
        conditions,
        listeners,
        backend_client_certificate,
    }
}

fn listener_node(
    store: &Store,
    gw: &ObjectKey,
    index: usize,
    l: &GatewayListeners,
    g: &mut Graph,
    obj: &ObjectRef,
) -> ListenerNode {
    // Exhaustive: a new upstream field is a compile error here.
    let GatewayListeners {
        allowed_routes,
        hostname,
        name,
        port: spec_port,
        protocol: spec_protocol,
        tls,
    } = l;
    let field = |f: &str| Some(format!("spec.listeners[{index}]{f}"));
    let protocol = match spec_protocol.as_str() {
        "HTTP" => ListenerProtocol::Http,
        "HTTPS" => ListenerProtocol::Https,
        "TLS" => tls_listener_protocol(tls.as_ref()),
        other => ListenerProtocol::Unsupported(other.to_string()),
    };
    // The route kind the listener serves.
    let route_kind = match protocol {
        ListenerProtocol::TlsPassthrough => "TLSRoute",
        _ => "HTTPRoute",
    };
    let mut conditions = Vec::new();
    let mut attachable = true;
    let mut resolved = true;
    let port = match u16::try_from(*spec_port) {
        Ok(p) if p > 0 => p,
        _ => {
            attachable = false;
            0
        }
    };
    // Kinds.
    let mut supported_kinds = Vec::new();
    let mut bad_kinds = Vec::new();
    if let ListenerProtocol::Unsupported(p) = &protocol {
        attachable = false;
        conditions.push(if p == "TLS" {
            c::listener_unsupported_value(
                "TLS listeners support tls.mode Passthrough only; Terminate is not supported.",
            )
        } else {
            c::listener_unsupported_protocol(p)
        });
    } else {
        match allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
            Some(kinds) if !kinds.is_empty() => {
                for k in kinds {
                    let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                    if group == GATEWAY_GROUP && k.kind == route_kind {
                        let rgk = RouteGroupKind {
                            group: GATEWAY_GROUP.into(),
                            kind: route_kind.into(),
                        };
                        if !supported_kinds.contains(&rgk) {
                            supported_kinds.push(rgk);
                        }
                    } else {
                        bad_kinds.push(format!("{group}/{}", k.kind));
                    }
                }
            }
            _ => supported_kinds.push(RouteGroupKind {
                group: GATEWAY_GROUP.into(),
                kind: route_kind.into(),
            }),
        }
        conditions.push(if port == 0 {
            c::listener_not_programmed(format!("Port {spec_port} is not valid."))
        } else {
            c::listener_accepted()
        });
    }
    if !bad_kinds.is_empty() {
        resolved = false;
        conditions.push(c::listener_invalid_route_kinds(format!(
            "Route kinds {} are not supported; supported kinds are {route_kind}.",
            bad_kinds.join(", ")
        )));
    }
    // TLS.
    let mut certificates = Vec::new();
    let mut certs_ok = true;
    if protocol == ListenerProtocol::Https {
        let refs = tls
            .as_ref()
            .and_then(|t| t.certificate_refs.clone())
            .unwrap_or_default();
        if refs.is_empty() {
            resolved = false;
            certs_ok = false;
            conditions.push(c::listener_invalid_certificate_ref(
                "HTTPS listener has no certificateRefs.",
            ));
        }
        for (ri, r) in refs.iter().enumerate() {
            let group = r.group.as_deref().unwrap_or("");
            let kind = r.kind.as_deref().unwrap_or("Secret");
            let ns = r.namespace.clone().unwrap_or_else(|| gw.namespace.clone());
            let res = if !(group.is_empty() || group == "core") || kind != "Secret" {
                Err(c::listener_invalid_certificate_ref(format!(
                    "Certificate reference {} {} is not a Secret.",
                    crate::translate::group_kind(group, kind),
                    r.name
                )))
            } else if ns != gw.namespace
                && !backend::reference_permitted(
                    store,
                    "Gateway",
                    &gw.namespace,
                    "",
                    "Secret",
                    &ns,
                    &r.name,
                )
            {
                Err(c::listener_ref_not_permitted(format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it.",
                    r.name
                )))
            } else {
                match tls_certificate(store, &ns, &r.name) {
                    Ok(cert) => {
                        certificates.push(cert.name.clone());
                        g.certificates.insert(cert.name.clone(), cert);
                        Ok(())
                    }
                    Err(msg) => Err(c::listener_invalid_certificate_ref(msg)),
                }
            };
            if let Err(cond) = res {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    field(&format!(".tls.certificateRefs[{ri}]")),
                    cond.message.clone(),
                ));
                if resolved {
                    conditions.push(cond);
                }
                resolved = false;
                certs_ok = false;
            }
        }
    }
    if resolved {
        conditions.push(c::listener_resolved_refs());
    }
    // Namespaces.
    let allowed = match l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        None => AllowedNamespaces::Same,
        Some(n) => match (&n.from, &n.selector) {
            (None | Some(From::Same), _) => AllowedNamespaces::Same,
            (Some(From::All), _) => AllowedNamespaces::All,
            (Some(From::Selector), Some(sel)) => AllowedNamespaces::Selector(sel.clone()),
            (Some(From::Selector), None) => {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    field(".allowedRoutes.namespaces.selector"),
                    "From: Selector without a selector; no namespace is allowed.",
                ));
                AllowedNamespaces::Selector(Selector {
                    match_expressions: None,
                    match_labels: Some([("\u{0}".to_string(), String::new())].into()),
                })
            }
        },
    };
    ListenerNode {
        name: name.clone(),
        port,
        protocol,
        hostname: hostname
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(ir::HostMatch::parse),
        allowed,
        supported_kinds,
        attachable,
        programmable: attachable && certs_ok,
        certificates,
        client_validation: None,
        conditions,
        attached_routes: 0,
    }
}

/// Protocol of a `TLS` listener: `tls.mode` Passthrough is served; Terminate (the
/// default) is not supported yet (kept as `Unsupported("TLS")`).
fn tls_listener_protocol(
    tls: Option<&gateway_api::apis::experimental::gateways::GatewayListenersTls>,
) -> ListenerProtocol {
    use gateway_api::apis::experimental::gateways::GatewayListenersTlsMode as Mode;
    match tls.and_then(|t| t.mode.as_ref()) {
        Some(Mode::Passthrough) => ListenerProtocol::TlsPassthrough,
        _ => ListenerProtocol::Unsupported("TLS".to_string()),
    }
}

/// `spec.tls.backend.clientCertificateRef`: the Gateway's ResolvedRefs condition and,
/// when it resolves, the certificate (added to `Graph::certificates`) presented to
/// backends reached over TLS.
fn backend_client_certificate_ref(
    store: &Store,
    key: &ObjectKey,
    gw: &Gateway,
    g: &mut Graph,
    obj: &ObjectRef,
) -> Option<(Cond, Option<String>)> {
    let r = gw
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    let ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| key.namespace.clone());
    let field = Some("spec.tls.backend.clientCertificateRef".to_string());
    let res = if !(group.is_empty() || group == "core") || kind != "Secret" {
        Err(c::gateway_unresolved_refs(
            reasons::INVALID_CLIENT_CERTIFICATE_REF,
            format!(
                "Client certificate reference {} {} is not a Secret.",
                crate::translate::group_kind(group, kind),
                r.name
            ),
        ))
    } else if ns != key.namespace
        && !backend::reference_permitted(
            store,
            "Gateway",
            &key.namespace,
            "",
            "Secret",
            &ns,
            &r.name,
        )
    {
        Err(c::gateway_unresolved_refs(
            reasons::REF_NOT_PERMITTED,
            format!(
                "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it.",
                r.name
            ),
        ))
    } else {
        tls_certificate(store, &ns, &r.name)
            .map_err(|msg| c::gateway_unresolved_refs(reasons::INVALID_CLIENT_CERTIFICATE_REF, msg))
    };
    match res {
        Ok(cert) => {
            let name = cert.name.clone();
            g.certificates.insert(name.clone(), cert);
            Some((c::gateway_resolved_refs(), Some(name)))
        }
        Err(cond) => {
            g.notices.push(Notice::warning(
                obj.clone(),
                field,
                format!(
                    "{} Backends reached over TLS get no client certificate.",
                    cond.message
                ),
            ));
            Some((cond, None))
        }
    }
}

/// `spec.tls.frontend`: client certificate validation of HTTPS listeners (the `perPort`
/// entry of the listener's port, else `default`). CA references go to ConfigMaps or
/// Secrets (`ca.crt`), across namespaces with a ReferenceGrant. A listener keeps the
/// valid CAs; with none it is not accepted (NoValidCACertificate). Returns the ports
/// served with `AllowInsecureFallback`.
fn frontend_validation(
    store: &Store,
    key: &ObjectKey,
    gw: &Gateway,
    listeners: &mut [ListenerNode],
    g: &mut Graph,
    obj: &ObjectRef,
) -> Vec<u16> {
    use gateway_api::apis::experimental::gateways::{
        GatewayTlsFrontendDefaultValidationMode as DefaultMode,
        GatewayTlsFrontendPerPortTlsValidationMode as PortMode,
    };
    let mut insecure = BTreeSet::new();
    let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return Vec::new();
    };
    for l in listeners.iter_mut() {
        if l.protocol != ListenerProtocol::Https || !l.attachable {
            continue;
        }
        // (group, kind, name, namespace) of each CA reference, and the fallback mode.
        type Ref = (String, String, String, Option<String>);
        let (refs, fallback, field): (Vec<Ref>, bool, String) = match frontend
            .per_port
            .iter()
            .flatten()
            .enumerate()
            .find(|(_, p)| i32::from(l.port) == p.port)
        {
            Some((pi, p)) => (
                p.tls
                    .validation
                    .iter()
                    .flat_map(|v| &v.ca_certificate_refs)
                    .map(|r| {
                        (
                            r.group.clone(),
                            r.kind.clone(),
                            r.name.clone(),
                            r.namespace.clone(),
                        )
                    })
                    .collect(),
                p.tls.validation.as_ref().and_then(|v| v.mode.as_ref())
                    == Some(&PortMode::AllowInsecureFallback),
                format!("spec.tls.frontend.perPort[{pi}].tls.validation"),
            ),
            None => (
                frontend
                    .default
                    .validation
                    .iter()
                    .flat_map(|v| &v.ca_certificate_refs)
                    .map(|r| {
                        (
                            r.group.clone(),
                            r.kind.clone(),
                            r.name.clone(),
                            r.namespace.clone(),
                        )
                    })
                    .collect(),
                frontend
                    .default
                    .validation
                    .as_ref()
                    .and_then(|v| v.mode.as_ref())
                    == Some(&DefaultMode::AllowInsecureFallback),
                "spec.tls.frontend.default.validation".to_string(),
            ),
        };
        if refs.is_empty() {
            continue;
        }
        let mut unresolved: Option<Cond> = None;
        let mut bundle = String::new();
        for (ri, (group, kind, name, namespace)) in refs.iter().enumerate() {
            let ns = namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| key.namespace.clone());
            let res = if !(group.is_empty() || group == "core")
                || !(kind == "ConfigMap" || kind == "Secret")
            {
                Err((
                    reasons::INVALID_CA_CERTIFICATE_KIND,
                    format!(
                        "CA certificate reference {} {name} is not a ConfigMap or Secret.",
                        crate::translate::group_kind(group, kind)
                    ),
                ))
            } else if ns != key.namespace
                && !backend::reference_permitted(
                    store,
                    "Gateway",
                    &key.namespace,
                    "",
                    kind,
                    &ns,
                    name,
                )
            {
                Err((
                    reasons::REF_NOT_PERMITTED,
                    format!("{kind} {ns}/{name} is in another namespace and no ReferenceGrant allows it."),
                ))
            } else {
                backend::ca_certificate(store, kind, &ns, name)
                    .map_err(|m| (reasons::INVALID_CA_CERTIFICATE_REF, m))
            };
            match res {
                Ok(pem) => {
                    bundle.push_str(pem.trim_end());
                    bundle.push('\n');
                }
                Err((reason, msg)) => {
                    g.notices.push(Notice::warning(
                        obj.clone(),
                        Some(format!("{field}.caCertificateRefs[{ri}]")),
                        format!("{msg} (listener {:?})", l.name),
                    ));
                    unresolved.get_or_insert(c::listener_unresolved_refs(reason, msg));
                }
            }
        }
        if let Some(cond) = unresolved {
            for x in &mut l.conditions {
                if x.type_ == c::types::RESOLVED_REFS && x.status {
                    *x = cond.clone();
                }
            }
        }
        if bundle.is_empty() {
            l.attachable = false;
            l.programmable = false;
            for x in &mut l.conditions {
                if x.type_ == c::types::ACCEPTED {
                    *x = c::listener_no_valid_ca_certificate();
                }
            }
            l.conditions.push(c::listener_not_programmed(
                "No valid CA certificate for client certificate validation.",
            ));
        } else {
            if fallback {
                insecure.insert(l.port);
            }
            l.client_validation = Some(ir::ClientValidation {
                ca_pem: bundle,
                mode: if fallback {
                    ir::ClientCertMode::RequestOnly
                } else {
                    ir::ClientCertMode::Require
                },
                verify_depth: None,
            });
        }
    }
    insecure.into_iter().collect()
}

/// Resolves a `kubernetes.io/tls` Secret into a certificate.
fn tls_certificate(store: &Store, ns: &str, name: &str) -> Result<ir::Certificate, String> {
    let Some(secret) = store.secrets.get(&ObjectKey::new(ns, name)) else {
        return Err(format!("Secret {ns}/{name} does not exist."));
    };
    let get = |k: &str| -> Option<String> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(k)) {
            return String::from_utf8(v.0.clone()).ok();
        }
        secret.string_data.as_ref().and_then(|d| d.get(k)).cloned()
    };
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(format!(
            "Secret {ns}/{name} is not of type kubernetes.io/tls."
        ));
    }
    let (Some(cert), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return Err(format!("Secret {ns}/{name} lacks tls.crt or tls.key."));
    };
    if !cert.contains("-----BEGIN CERTIFICATE-----")
        || !key.contains("-----BEGIN")
        || !key.contains("PRIVATE KEY")
    {
        return Err(format!(
            "Secret {ns}/{name} does not hold a PEM certificate and private key."
        ));
    }
    Ok(ir::Certificate {
        name: format!("{ns}/{name}"),
        cert_pem: cert,
        key_pem: key,
    })
}

/// Listeners on one port: different protocols conflict (ProtocolConflict); same
/// protocol and hostname conflict (HostnameConflict). The first listener in spec order
/// keeps the port and hostname; the later ones are not served.
fn detect_conflicts(listeners: &mut [ListenerNode]) {
    let n = listeners.len();
    let mut conflicts: Vec<Option<Cond>> = vec![None; n];
    for i in 0..n {
        if !listeners[i].attachable {
            continue;
        }
        for j in 0..i {
            if !listeners[j].attachable
                || listeners[j].port != listeners[i].port
                || conflicts[j].is_some()
            {
                continue;
            }
            if listeners[j].protocol != listeners[i].protocol {
                conflicts[i] = Some(c::listener_protocol_conflict(&listeners[j].name));
                break;
            }
            if listeners[j].hostname == listeners[i].hostname {
                conflicts[i] = Some(c::listener_hostname_conflict(&listeners[j].name));
                break;
            }
        }
    }
    for (l, conflict) in listeners.iter_mut().zip(conflicts) {
        match conflict {
            Some(cond) => {
                l.attachable = false;
                l.programmable = false;
                l.conditions.push(cond);
            }
            None => l.conditions.push(c::listener_no_conflicts()),
        }
        if l.programmable {
            l.conditions.push(c::listener_programmed());
        } else if !l.conditions.iter().any(|c| c.type_ == c::types::PROGRAMMED) {
            l.conditions
                .push(c::listener_not_programmed("Listener is not valid."));
        }
    }
}
