//! Statuses: the `/status` contract (`../shared/conformance/FORMAT.md`), computed from the
//! Graph ([`compute`]), stamped with transition times by the pipeline ([`stamp`]), and
//! corrected by what the proxy reports ([`apply_dataplane_feedback`]).
pub mod compute;
pub mod conditions;
pub mod sink;

use serde::{Deserialize, Serialize};

/// `lastTransitionTime` before the pipeline stamps it (and in golden files).
pub const ZERO_TIME: &str = "1970-01-01T00:00:00Z";

/// Every managed object's status: `{"objects": [...]}`, sorted by kind, namespace, name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// One entry per managed object.
    pub objects: Vec<ObjectStatus>,
}

/// One object's status, as `{apiVersion, kind, metadata, status}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStatus {
    /// `gateway.networking.k8s.io/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `GatewayClass`, `Gateway`, `HTTPRoute`.
    pub kind: String,
    /// Namespace, name, generation.
    pub metadata: StatusMetadata,
    /// The status, in the shape the API holds.
    pub status: Status,
}

/// Identity of the object a status belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusMetadata {
    /// Namespace; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `metadata.generation` the status was computed for.
    pub generation: i64,
}

/// A status of one of the managed kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Status {
    /// Gateway status.
    Gateway(GatewayStatus),
    /// Route status (HTTPRoute).
    Route(RouteStatus),
    /// Policy status (BackendTLSPolicy).
    Policy(PolicyStatus),
    /// GatewayClass status.
    GatewayClass(GatewayClassStatus),
}

/// A status condition, as `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// Reason (CamelCase).
    pub reason: String,
    /// Message.
    pub message: String,
    /// Generation the condition was computed for.
    pub observed_generation: i64,
    /// RFC 3339 time of the last change of status or reason.
    pub last_transition_time: String,
}

/// `GatewayClass.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayClassStatus {
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// `Gateway.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Addresses the Gateway is reachable at.
    pub addresses: Vec<GatewayStatusAddress>,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// One entry per listener.
    pub listeners: Vec<ListenerStatus>,
}

/// `Gateway.status.addresses[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatusAddress {
    /// `IPAddress`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// `Gateway.status.listeners[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Route kinds the listener accepts.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached (accepted) to the listener.
    pub attached_routes: i32,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// A route group and kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteGroupKind {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

/// `HTTPRoute.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// One entry per parentRef to a Gateway of ours.
    pub parents: Vec<RouteParentStatus>,
}

/// `HTTPRoute.status.parents[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef, with group, kind and namespace defaults filled in.
    pub parent_ref: ParentRef,
    /// Our controller name.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// `BackendTLSPolicy.status` (Gateway API `PolicyStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// One entry per Gateway the policy takes effect on.
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// `PolicyStatus.ancestors[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The Gateway, group, kind and namespace filled in.
    pub ancestor_ref: ParentRef,
    /// Our controller name.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// A parentRef.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Listener name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Listener port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

// === impl ObjectStatus ===

impl ObjectStatus {
    /// Every condition list of the status, each with a stable location label.
    pub fn conditions_mut(&mut self) -> Vec<(String, &mut Vec<Condition>)> {
        match &mut self.status {
            Status::GatewayClass(s) => vec![(String::new(), &mut s.conditions)],
            Status::Gateway(s) => {
                let mut out = vec![(String::new(), &mut s.conditions)];
                for l in &mut s.listeners {
                    out.push((format!("listener/{}", l.name), &mut l.conditions));
                }
                out
            }
            Status::Route(s) => s
                .parents
                .iter_mut()
                .map(|p| (format!("parent/{:?}", p.parent_ref), &mut p.conditions))
                .collect(),
            Status::Policy(s) => s
                .ancestors
                .iter_mut()
                .map(|p| (format!("ancestor/{:?}", p.ancestor_ref), &mut p.conditions))
                .collect(),
        }
    }

    fn conditions(&self) -> Vec<(String, &Vec<Condition>)> {
        match &self.status {
            Status::GatewayClass(s) => vec![(String::new(), &s.conditions)],
            Status::Gateway(s) => {
                let mut out = vec![(String::new(), &s.conditions)];
                for l in &s.listeners {
                    out.push((format!("listener/{}", l.name), &l.conditions));
                }
                out
            }
            Status::Route(s) => s
                .parents
                .iter()
                .map(|p| (format!("parent/{:?}", p.parent_ref), &p.conditions))
                .collect(),
            Status::Policy(s) => s
                .ancestors
                .iter()
                .map(|p| (format!("ancestor/{:?}", p.ancestor_ref), &p.conditions))
                .collect(),
        }
    }

    fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.api_version,
            &self.kind,
            self.metadata.namespace.as_deref(),
            &self.metadata.name,
        )
    }
}

// === impl StatusReport ===

impl StatusReport {
    /// Sets every `lastTransitionTime` to [`ZERO_TIME`] (golden files, comparisons).
    pub fn zero_times(&mut self) {
        for o in &mut self.objects {
            for (_, conds) in o.conditions_mut() {
                for c in conds {
                    c.last_transition_time = ZERO_TIME.to_string();
                }
            }
        }
    }

    /// Equal ignoring `lastTransitionTime`.
    pub fn equal_ignoring_times(&self, other: &StatusReport) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.zero_times();
        b.zero_times();
        a == b
    }
}

/// Stamps `lastTransitionTime` on `new`: a condition whose status and reason are those
/// of the same condition in `prev` keeps `prev`'s time; any other gets `now` (RFC 3339).
pub fn stamp(new: &mut StatusReport, prev: &StatusReport, now: &str) {
    use std::collections::HashMap;
    // (apiVersion, kind, namespace, name, location, condition type)
    type Key = (String, String, Option<String>, String, String, String);
    let mut index: HashMap<Key, &Condition> = HashMap::new();
    for o in &prev.objects {
        let (a, k, ns, n) = o.identity();
        for (loc, conds) in o.conditions() {
            for c in conds {
                index.insert(
                    (
                        a.to_string(),
                        k.to_string(),
                        ns.map(str::to_string),
                        n.to_string(),
                        loc.clone(),
                        c.type_.clone(),
                    ),
                    c,
                );
            }
        }
    }
    for o in &mut new.objects {
        let (a, k, ns, n) = {
            let (a, k, ns, n) = o.identity();
            (
                a.to_string(),
                k.to_string(),
                ns.map(str::to_string),
                n.to_string(),
            )
        };
        for (loc, conds) in o.conditions_mut() {
            for c in conds.iter_mut() {
                let key = (
                    a.clone(),
                    k.clone(),
                    ns.clone(),
                    n.clone(),
                    loc.clone(),
                    c.type_.clone(),
                );
                c.last_transition_time = match index.get(&key) {
                    Some(p) if p.status == c.status && p.reason == c.reason => {
                        p.last_transition_time.clone()
                    }
                    _ => now.to_string(),
                };
            }
        }
    }
}

/// Marks the Gateway listeners behind IR listeners the proxy failed to bind:
/// listener `Accepted: False` (`PortUnavailable`) and `Programmed: False` (`Invalid`),
/// and the Gateway `Programmed: False` (`Invalid`). Only applies when `applied` is the
/// report for `config`'s generation; otherwise the report is left unchanged.
pub fn apply_dataplane_feedback(
    report: &mut StatusReport,
    applied: &sluice_ir::Applied,
    config: &sluice_ir::Config,
) {
    if applied.listener_errors.is_empty() || applied.generation != config.generation {
        return;
    }
    // (gateway ns, gateway name) -> [(listener name, error)]
    let mut failed: std::collections::BTreeMap<(String, String), Vec<(String, String)>> =
        Default::default();
    for l in &config.listeners {
        let Some(err) = applied.listener_errors.get(&l.name) else {
            continue;
        };
        for s in &l.servers {
            if s.source.kind != "Gateway" {
                continue;
            }
            if let Some(section) = &s.source.section {
                failed
                    .entry((s.source.namespace.clone(), s.source.name.clone()))
                    .or_default()
                    .push((section.clone(), err.clone()));
            }
        }
    }
    for o in &mut report.objects {
        let Status::Gateway(gs) = &mut o.status else {
            continue;
        };
        let key = (
            o.metadata.namespace.clone().unwrap_or_default(),
            o.metadata.name.clone(),
        );
        let Some(listeners) = failed.get(&key) else {
            continue;
        };
        let generation = o.metadata.generation;
        let mut names = Vec::new();
        for (name, err) in listeners {
            let Some(ls) = gs.listeners.iter_mut().find(|l| &l.name == name) else {
                continue;
            };
            names.push(name.clone());
            let err = err.trim_end_matches('.');
            set_condition(
                &mut ls.conditions,
                conditions::listener_port_unavailable(err),
                generation,
            );
            set_condition(
                &mut ls.conditions,
                conditions::listener_not_programmed(format!("Listener could not be bound: {err}.")),
                generation,
            );
        }
        if !names.is_empty() {
            set_condition(
                &mut gs.conditions,
                conditions::gateway_not_programmed(format!(
                    "Listeners {} could not be bound.",
                    names.join(", ")
                )),
                generation,
            );
        }
    }
}

/// Converts an internal condition.
pub fn to_condition(c: &conditions::Cond, generation: i64) -> Condition {
    Condition {
        type_: c.type_.to_string(),
        status: if c.status { "True" } else { "False" }.to_string(),
        reason: c.reason.to_string(),
        message: c.message.clone(),
        observed_generation: generation,
        last_transition_time: ZERO_TIME.to_string(),
    }
}

fn set_condition(list: &mut Vec<Condition>, c: conditions::Cond, generation: i64) {
    let new = to_condition(&c, generation);
    match list.iter_mut().find(|x| x.type_ == new.type_) {
        Some(x) => *x = new,
        None => list.push(new),
    }
}
