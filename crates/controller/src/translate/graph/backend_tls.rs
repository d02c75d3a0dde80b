//! BackendTLSPolicies: which Service ports are reached over TLS, and how.
//!
//! Each policy is validated once (CA references, well-known CAs, hostname, SANs); a
//! target `(Service, sectionName)` named by several policies goes to the oldest one
//! (then the alphabetically first), the others are `Conflicted`. Ancestors (the
//! Gateways whose routes reach a targeted Service) are filled in while routes are built.
use super::*;
use crate::status::conditions::{self as c, reasons, Cond};
use crate::translate::backend::{ca_certificate, BackendTlsTable};
use gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicyValidationSubjectAltNamesType as SanType;

/// A BackendTLSPolicy.
#[derive(Debug)]
pub struct PolicyNode {
    /// Namespace/name.
    pub key: ObjectKey,
    /// `metadata.generation`.
    pub generation: i64,
    /// Accepted and ResolvedRefs, for every ancestor.
    pub conditions: Vec<Cond>,
    /// Gateways of ours with a route to a targeted Service.
    pub ancestors: BTreeSet<ObjectKey>,
}

/// Validates every policy and picks the winner of each target.
pub(super) fn build(store: &Store, g: &mut Graph) -> BackendTlsTable {
    let mut table = BackendTlsTable::default();
    // target → [(creation time, key, policy index)]
    type Claim = (Option<i128>, ObjectKey, usize);
    let mut claims: BTreeMap<(ObjectKey, Option<String>), Vec<Claim>> = BTreeMap::new();
    for (key, p) in &store.backend_tls_policies {
        let idx = g.policies.len();
        let obj = ObjectRef::new("BackendTLSPolicy", &key.namespace, &key.name);
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond());
        for (ti, t) in p.spec.target_refs.iter().enumerate() {
            if !(t.group.is_empty() || t.group == "core") || t.kind != "Service" {
                g.notices.push(Notice::warning(
                    obj.clone(),
                    Some(format!("spec.targetRefs[{ti}]")),
                    format!(
                        "Target {} {} is not a Service; it is ignored.",
                        crate::translate::group_kind(&t.group, &t.kind),
                        t.name
                    ),
                ));
                continue;
            }
            let section = t.section_name.clone().filter(|s| !s.is_empty());
            claims
                .entry((ObjectKey::new(&key.namespace, &t.name), section))
                .or_default()
                .push((created, key.clone(), idx));
        }
        if p.spec.options.as_ref().is_some_and(|o| !o.is_empty()) {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some("spec.options".into()),
                "No option is supported; options are ignored.",
            ));
        }
        let (tls, conditions) = validate(store, key, p, &obj, g);
        table.tls.push(tls);
        g.policies.push(PolicyNode {
            key: key.clone(),
            generation: p.metadata.generation.unwrap_or(1),
            conditions,
            ancestors: BTreeSet::new(),
        });
    }
    for (target, mut list) in claims {
        list.sort();
        list.dedup_by(|a, b| a.2 == b.2);
        let winner = list[0].clone();
        for (_, loser, idx) in &list[1..] {
            let msg = format!(
                "Policy {} targets Service {}{} as well and takes precedence (older, or first by name).",
                winner.1,
                target.0.name,
                target
                    .1
                    .as_deref()
                    .map(|s| format!(" port {s:?}"))
                    .unwrap_or_default()
            );
            g.notices.push(Notice::warning(
                ObjectRef::new("BackendTLSPolicy", &loser.namespace, &loser.name),
                Some("spec.targetRefs".into()),
                msg.clone(),
            ));
            if let Some(node) = g.policies.get_mut(*idx) {
                for cond in &mut node.conditions {
                    if cond.type_ == c::types::ACCEPTED {
                        *cond = c::policy_not_accepted(reasons::CONFLICTED, msg.clone());
                    }
                }
            }
        }
        table
            .by_target
            .insert(target, list.iter().map(|c| c.2).collect());
    }
    table
}

/// The TLS settings of one policy (or why it cannot be used) and its conditions.
fn validate(
    store: &Store,
    key: &ObjectKey,
    p: &BackendTlsPolicy,
    obj: &ObjectRef,
    g: &mut Graph,
) -> (Result<ir::UpstreamTls, String>, Vec<Cond>) {
    let v = &p.spec.validation;
    let mut unresolved: Option<Cond> = None;
    let mut cas = Vec::new();
    let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
    for (ri, r) in refs.iter().enumerate() {
        let field = Some(format!("spec.validation.caCertificateRefs[{ri}]"));
        let core = r.group.is_empty() || r.group == "core";
        let res = if !core || !(r.kind == "ConfigMap" || r.kind == "Secret") {
            Err((
                reasons::INVALID_KIND,
                format!(
                    "CA certificate reference {} {} is not a ConfigMap or Secret.",
                    crate::translate::group_kind(&r.group, &r.kind),
                    r.name
                ),
            ))
        } else {
            ca_certificate(store, &r.kind, &key.namespace, &r.name)
                .map_err(|m| (reasons::INVALID_CA_CERTIFICATE_REF, m))
        };
        match res {
            Ok(pem) => cas.push(pem),
            Err((reason, msg)) => {
                g.notices
                    .push(Notice::warning(obj.clone(), field, msg.clone()));
                unresolved.get_or_insert(c::policy_unresolved_refs(reason, msg));
            }
        }
    }
    let well_known = v
        .well_known_ca_certificates
        .as_deref()
        .filter(|s| !s.is_empty());
    let ca: Result<Option<String>, (&'static str, String)> = match (refs.is_empty(), well_known) {
        (false, Some(_)) => Err((
            reasons::INVALID,
            "caCertificateRefs and wellKnownCACertificates are mutually exclusive.".into(),
        )),
        (true, None) => Err((
            reasons::INVALID,
            "Neither caCertificateRefs nor wellKnownCACertificates is set.".into(),
        )),
        (true, Some("System")) => Ok(None),
        (true, Some(other)) => Err((
            reasons::INVALID,
            format!("wellKnownCACertificates {other:?} is not supported; the supported value is System."),
        )),
        (false, None) if cas.is_empty() => Err((
            reasons::NO_VALID_CA_CERTIFICATE,
            "No CA certificate reference can be used.".into(),
        )),
        (false, None) => {
            let mut bundle = String::new();
            for pem in &cas {
                bundle.push_str(pem.trim_end());
                bundle.push('\n');
            }
            Ok(Some(bundle))
        }
    };
    let hostname = v.hostname.trim().to_ascii_lowercase();
    let ca = ca.and_then(|ca| {
        if hostname.is_empty() || hostname.contains('*') || hostname.parse::<IpAddr>().is_ok() {
            Err((
                reasons::INVALID,
                format!(
                    "validation.hostname {:?} must be a DNS name without wildcard.",
                    v.hostname
                ),
            ))
        } else {
            Ok(ca)
        }
    });
    let mut sans = Vec::new();
    for (si, san) in v.subject_alt_names.iter().flatten().enumerate() {
        let value = match san.r#type {
            SanType::Hostname => san.hostname.clone(),
            SanType::Uri => san.uri.clone(),
        };
        match value.filter(|s| !s.is_empty()) {
            Some(s) => sans.push(s),
            None => g.notices.push(Notice::warning(
                obj.clone(),
                Some(format!("spec.validation.subjectAltNames[{si}]")),
                "Subject alternative name without a value; it is ignored.",
            )),
        }
    }
    let resolved = unresolved.unwrap_or_else(c::policy_resolved_refs);
    match ca {
        Ok(ca_pem) => (
            Ok(ir::UpstreamTls {
                server_name: hostname,
                verify: true,
                ca_pem,
                subject_alt_names: sans,
                client_certificate: None,
            }),
            vec![c::policy_accepted(), resolved],
        ),
        Err((reason, msg)) => {
            g.notices.push(Notice::warning(
                obj.clone(),
                Some("spec.validation".into()),
                format!("{msg} Requests to the targeted Services get 500."),
            ));
            let accepted = c::policy_not_accepted(reason, msg.clone());
            (Err(msg), vec![accepted, resolved])
        }
    }
}
