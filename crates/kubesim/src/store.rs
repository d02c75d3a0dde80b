//! The in-memory object store: objects as JSON, a global resourceVersion counter, an
//! event history for watches, and the write semantics of the API server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::fields::{self, ManagedEntry, Scope};
use crate::resources::{self, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};

/// An API error, rendered as a `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.group_resource()),
        )
        .with_details(rt, name)
    }

    pub fn invalid(rt: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {}", rt.kind, message.into()),
        )
        .with_details(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.group_resource()
            ),
        )
        .with_details(rt, name)
    }

    pub fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        let mut d = json!({"name": name, "kind": rt.plural});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        self.details = Some(d);
        self
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: String,
    pub etype: EventType,
    pub object: Value,
    /// The object before a MODIFIED change (for selector transitions).
    pub old: Option<Value>,
}

/// What a watch stream receives from the store.
#[derive(Debug)]
pub enum WatchMsg {
    Event(Arc<Event>),
    /// The history was compacted under the watch: send `410 Gone` and end.
    Expired {
        requested: u64,
        current: u64,
    },
}

pub struct WatcherSlot {
    pub key: String,
    pub tx: mpsc::UnboundedSender<WatchMsg>,
}

/// Options of a write request.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub manager: String,
    pub force: bool,
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Filter of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns) {
                return false;
            }
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

type ObjKey = (String, String);

/// The events a new watch sends first, the resourceVersion it starts at, and its
/// channel.
pub type WatchStart = (
    Vec<(EventType, Value)>,
    u64,
    mpsc::UnboundedReceiver<WatchMsg>,
);

pub struct State {
    pub rv: u64,
    pub objects: BTreeMap<String, BTreeMap<ObjKey, Value>>,
    pub history: VecDeque<Arc<Event>>,
    /// Every change with a resourceVersion above `floor` is in `history`.
    pub floor: u64,
    pub max_history: usize,
    pub watchers: Vec<WatcherSlot>,
    pub builtins: Vec<ResourceType>,
    pub crds: BTreeMap<String, ResourceType>,
    pub rv_tx: tokio::sync::watch::Sender<u64>,
    /// Check Gateway API objects against their schema.
    pub validate: bool,
    next_cluster_ip: u32,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(key)).and_then(Value::as_str)
}

/// The object without `metadata` and `status`: what `generation` tracks.
fn generation_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// The object without managedFields timestamps and resourceVersion, to detect no-ops.
fn noop_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    v
}

fn parse_rv(s: &str) -> Option<u64> {
    s.parse().ok()
}

impl State {
    pub fn new(max_history: usize, rv_tx: tokio::sync::watch::Sender<u64>) -> State {
        State {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: 1,
            max_history,
            watchers: Vec::new(),
            builtins: resources::builtins(),
            crds: BTreeMap::new(),
            rv_tx,
            validate: true,
            next_cluster_ip: 1,
        }
    }

    /// All served resource types.
    pub fn types(&self) -> Vec<ResourceType> {
        let mut out = self.builtins.clone();
        for t in self.crds.values() {
            if !out
                .iter()
                .any(|b| b.group == t.group && b.plural == t.plural)
            {
                out.push(t.clone());
            }
        }
        out
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types()
            .into_iter()
            .find(|t| t.group == group && t.plural == plural && t.serves(version))
    }

    /// A type by kind, plural, singular or short name (see [`ResourceType::matches_name`]).
    pub fn find_type_by_name(&self, name: &str) -> Option<ResourceType> {
        let types = self.types();
        // Prefer exact kind matches, then the core group.
        let mut matching: Vec<ResourceType> =
            types.into_iter().filter(|t| t.matches_name(name)).collect();
        matching.sort_by_key(|t| (t.kind != name, !t.group.is_empty()));
        matching.into_iter().next()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn commit(&mut self, key: &str, etype: EventType, object: Value, old: Option<Value>) {
        let ev = Arc::new(Event {
            rv: self.rv,
            key: key.to_string(),
            etype,
            object,
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.max_history {
            if let Some(e) = self.history.pop_front() {
                self.floor = e.rv;
            }
        }
        self.watchers
            .retain(|w| w.key != key || w.tx.send(WatchMsg::Event(ev.clone())).is_ok());
        self.rv_tx.send_replace(self.rv);
    }

    /// Forgets the whole history: watches resuming from any earlier resourceVersion
    /// get `410 Gone`, and every open watch is sent `410 Gone` and closed.
    pub fn force_compaction(&mut self) {
        let requested = self.rv;
        let current = self.next_rv();
        self.history.clear();
        self.floor = current;
        for w in self.watchers.drain(..) {
            let _ = w.tx.send(WatchMsg::Expired { requested, current });
        }
        self.rv_tx.send_replace(current);
    }

    /// Closes every open watch (their streams end).
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    pub fn bucket(&self, rt: &ResourceType) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(&rt.key())
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&rt.key())?
            .get(&(ns.to_string(), name.to_string()))
    }

    pub fn list(&self, rt: &ResourceType, filter: &Filter) -> Vec<Value> {
        self.bucket(rt)
            .map(|b| b.values().filter(|o| filter.matches(o)).cloned().collect())
            .unwrap_or_default()
    }

    fn ns_key(rt: &ResourceType, ns: Option<&str>) -> String {
        if rt.namespaced {
            ns.unwrap_or("").to_string()
        } else {
            String::new()
        }
    }

    fn insert(&mut self, rt: &ResourceType, obj: Value) {
        let ns = meta_str(&obj, "namespace").unwrap_or("").to_string();
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        self.objects
            .entry(rt.key())
            .or_default()
            .insert((ns, name), obj);
    }

    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get_mut(&rt.key())?
            .remove(&(ns.to_string(), name.to_string()))
    }

    /// Creates an object (POST, or server-side apply of an absent object).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut body: Value,
        w: &WriteOpts,
        apply: bool,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not an object",
            ));
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str) {
            if kind != rt.kind {
                return Err(ApiError::bad_request(format!(
                    "the kind of the provided object ({kind}) does not match the resource ({})",
                    rt.kind
                )));
            }
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
            let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            if group != rt.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API group {}",
                    rt.group
                )));
            }
        }
        let applied = apply.then(|| body.clone());
        let ns_key = Self::ns_key(rt, ns);
        {
            let m = meta_mut(&mut body);
            if rt.namespaced {
                match m.get("namespace").and_then(Value::as_str) {
                    Some(bns) if !bns.is_empty() && bns != ns_key => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ))
                    }
                    _ => {}
                }
                m.insert("namespace".into(), ns_key.clone().into());
            } else {
                m.remove("namespace");
            }
            let has_name = m
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name {
                match m.get("generateName").and_then(Value::as_str) {
                    Some(g) if !g.is_empty() => {
                        let name = format!("{g}{}", random_suffix());
                        m.insert("name".into(), name.into());
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            rt,
                            "",
                            "metadata.name: Required value: name or generateName is required",
                        ))
                    }
                }
            }
        }
        let name = meta_str(&body, "name").unwrap_or("").to_string();
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                format!("metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            ));
        }
        if self.get(rt, &ns_key, &name).is_some() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.group_resource()),
            )
            .with_details(rt, &name));
        }
        let mut crd_type = None;
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let t = resources::from_crd(&body).ok_or_else(|| {
                ApiError::invalid(rt, &name, "spec: Invalid value: incomplete definition")
            })?;
            if name != format!("{}.{}", t.plural, t.group) {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    format!(
                        "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
                    ),
                ));
            }
            body["status"] = crd_status(&body, &t);
            crd_type = Some(t);
        } else if rt.status {
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
        }
        self.apply_defaults(rt, &mut body);
        body["apiVersion"] = json!(rt.api_version(rt.preferred_version()));
        body["kind"] = json!(rt.kind);
        let scope = Scope::Main {
            exclude_status: rt.status,
        };
        let fieldset = match &applied {
            Some(a) => fields::scoped_paths(a, scope),
            None => fields::scoped_paths(&body, scope),
        };
        let manager = ManagedEntry {
            manager: w.manager.clone(),
            operation: if apply { "Apply" } else { "Update" }.into(),
            api_version: rt.api_version(rt.preferred_version()),
            time: now_rfc3339(),
            subresource: None,
            fields: fieldset,
        };
        {
            let m = meta_mut(&mut body);
            m.insert("uid".into(), new_uid().into());
            m.insert("creationTimestamp".into(), now_rfc3339().into());
            if rt.generation {
                m.insert("generation".into(), 1.into());
            } else {
                m.remove("generation");
            }
            m.remove("deletionTimestamp");
            m.remove("managedFields");
            m.remove("selfLink");
        }
        fields::write_managed(&mut body, &[manager]);
        self.check_schema(rt, &name, &body)?;
        if w.dry_run {
            meta_mut(&mut body).insert("resourceVersion".into(), self.rv.to_string().into());
            return Ok(body);
        }
        let rv = self.next_rv();
        meta_mut(&mut body).insert("resourceVersion".into(), rv.to_string().into());
        self.insert(rt, body.clone());
        if let Some(t) = crd_type {
            self.crds.insert(name.clone(), t);
        }
        self.commit(&rt.key(), EventType::Added, body.clone(), None);
        Ok(body)
    }

    fn check_schema(&self, rt: &ResourceType, name: &str, obj: &Value) -> ApiResult<()> {
        if !self.validate {
            return Ok(());
        }
        crate::validate::validate(rt, obj).map_err(|m| {
            ApiError::new(
                422,
                "Invalid",
                format!("{}.{} \"{name}\" is invalid: {m}", rt.kind, rt.group),
            )
            .with_details(rt, name)
        })
    }

    fn apply_defaults(&mut self, rt: &ResourceType, body: &mut Value) {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                let name = meta_str(body, "name").unwrap_or("").to_string();
                let m = meta_mut(body);
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), name.into());
                }
                body["status"] = json!({"phase": "Active"});
                if body
                    .get("spec")
                    .is_none_or(|s| s.as_object().is_some_and(|m| m.is_empty()))
                {
                    body["spec"] = json!({"finalizers": ["kubernetes"]});
                }
            }
            ("", "secrets") => {
                if body
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    body["type"] = json!("Opaque");
                }
                // stringData is write-only: fold it into data.
                if let Some(Value::Object(sd)) =
                    body.as_object_mut().and_then(|m| m.remove("stringData"))
                {
                    use base64::Engine;
                    if !body.get("data").is_some_and(Value::is_object) {
                        body["data"] = json!({});
                    }
                    for (k, v) in sd {
                        let enc = base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or("").as_bytes());
                        body["data"][k.as_str()] = json!(enc);
                    }
                }
            }
            ("", "services") => {
                if !body.get("spec").is_some_and(Value::is_object) {
                    body["spec"] = json!({});
                }
                let ip = format!(
                    "10.96.{}.{}",
                    (self.next_cluster_ip >> 8) & 0xff,
                    self.next_cluster_ip & 0xff
                );
                let spec = body["spec"].as_object_mut().expect("spec is an object");
                let ty = spec
                    .entry("type")
                    .or_insert_with(|| json!("ClusterIP"))
                    .as_str()
                    .unwrap_or("ClusterIP")
                    .to_string();
                if ty != "ExternalName" && !spec.contains_key("clusterIP") {
                    self.next_cluster_ip += 1;
                    spec.insert("clusterIP".into(), ip.clone().into());
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                spec.entry("sessionAffinity")
                    .or_insert_with(|| json!("None"));
                if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                    for p in ports {
                        if let Some(p) = p.as_object_mut() {
                            p.entry("protocol").or_insert_with(|| json!("TCP"));
                            if let Some(port) = p.get("port").cloned() {
                                p.entry("targetPort").or_insert(port);
                            }
                        }
                    }
                }
                body["status"] = json!({"loadBalancer": {}});
            }
            _ => {}
        }
    }

    /// Replaces an object (PUT), on the main resource or the status subresource.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: Value,
        status_sub: bool,
        w: &WriteOpts,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not an object",
            ));
        }
        if let Some(bname) = meta_str(&body, "name") {
            if bname != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({bname}) does not match the name on the URL ({name})"
                )));
            }
        }
        let ns_key = Self::ns_key(rt, ns);
        if rt.namespaced {
            if let Some(bns) = meta_str(&body, "namespace") {
                if !bns.is_empty() && bns != ns_key {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        let old = self
            .get(rt, &ns_key, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if rt.crd_name.is_some() && meta_str(&body, "resourceVersion").is_none_or(str::is_empty) {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "{}.{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                    rt.kind, rt.group
                ),
            )
            .with_details(rt, name));
        }
        self.replace_checked(rt, &old, body, status_sub, w)
    }

    /// Shared by update and the patches: builds the new object from a full candidate.
    fn replace_checked(
        &mut self,
        rt: &ResourceType,
        old: &Value,
        candidate: Value,
        status_sub: bool,
        w: &WriteOpts,
    ) -> ApiResult<Value> {
        let name = meta_str(old, "name").unwrap_or("").to_string();
        if let Some(rv) = meta_str(&candidate, "resourceVersion") {
            if !rv.is_empty() && Some(rv) != meta_str(old, "resourceVersion") {
                return Err(ApiError::conflict(rt, &name));
            }
        }
        let scope = if status_sub {
            Scope::Status
        } else {
            Scope::Main {
                exclude_status: rt.status,
            }
        };
        let mut new = old.clone();
        if status_sub {
            match candidate.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else {
            let mut c = candidate;
            if let Some(m) = c.as_object_mut() {
                for (k, v) in m.iter() {
                    if k == "metadata" || k == "apiVersion" || k == "kind" {
                        continue;
                    }
                    if rt.status && k == "status" {
                        continue;
                    }
                    new[k.as_str()] = v.clone();
                }
            }
            // Top-level fields absent from the candidate are removed.
            let keep: Vec<String> = new
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for k in keep {
                if k == "metadata" || k == "apiVersion" || k == "kind" {
                    continue;
                }
                if rt.status && k == "status" {
                    continue;
                }
                if c.get(&k).is_none() {
                    new.as_object_mut().expect("object").remove(&k);
                }
            }
            let cm = c
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .map(std::mem::take)
                .unwrap_or_default();
            let nm = meta_mut(&mut new);
            for k in fields::CLIENT_METADATA {
                match cm.get(*k) {
                    Some(v) if !v.is_null() => {
                        nm.insert(k.to_string(), v.clone());
                    }
                    _ => {
                        nm.remove(*k);
                    }
                }
            }
        }
        // Ownership: the manager takes the fields it changed; removed fields lose owners.
        let old_paths = fields::scoped_paths(old, scope);
        let new_paths = fields::scoped_paths(&new, scope);
        let changed: fields::FieldSet = new_paths
            .iter()
            .filter(|p| fields::value_at(old, p) != fields::value_at(&new, p))
            .cloned()
            .collect();
        let removed: Vec<fields::FieldPath> = old_paths
            .iter()
            .filter(|p| !new_paths.contains(*p))
            .cloned()
            .collect();
        let mut entries = fields::read_managed(old);
        let sub = scope.subresource().map(str::to_string);
        for e in entries.iter_mut() {
            e.fields.retain(|p| {
                !changed.iter().any(|c| fields::overlaps(c, p))
                    && !removed.iter().any(|r| fields::overlaps(r, p))
            });
        }
        if !changed.is_empty() {
            let av = rt.api_version(rt.preferred_version());
            match entries
                .iter_mut()
                .find(|e| e.manager == w.manager && e.operation == "Update" && e.subresource == sub)
            {
                Some(e) => {
                    e.fields.extend(changed.iter().cloned());
                    e.time = now_rfc3339();
                }
                None => entries.push(ManagedEntry {
                    manager: w.manager.clone(),
                    operation: "Update".into(),
                    api_version: av,
                    time: now_rfc3339(),
                    subresource: sub,
                    fields: changed,
                }),
            }
        }
        fields::write_managed(&mut new, &entries);
        self.finish_update(rt, old, new, w)
    }

    /// Bumps generation and resourceVersion and commits, unless nothing changed.
    fn finish_update(
        &mut self,
        rt: &ResourceType,
        old: &Value,
        mut new: Value,
        w: &WriteOpts,
    ) -> ApiResult<Value> {
        let name = meta_str(old, "name").unwrap_or("").to_string();
        let ns = meta_str(old, "namespace").unwrap_or("").to_string();
        normalize_update(rt, old, &mut new);
        if rt.generation && generation_view(old) != generation_view(&new) {
            let g = meta(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), (g + 1).into());
        }
        let is_crd = rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions";
        let mut crd_type = None;
        if is_crd {
            let t = resources::from_crd(&new).ok_or_else(|| {
                ApiError::invalid(rt, &name, "spec: Invalid value: incomplete definition")
            })?;
            new["status"] = crd_status(&new, &t);
            crd_type = Some(t);
        }
        if noop_view(old) == noop_view(&new) {
            return Ok(old.clone());
        }
        self.check_schema(rt, &name, &new)?;
        if w.dry_run {
            return Ok(new);
        }
        let terminating = meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"));
        let no_finalizers = meta(&new)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), rv.to_string().into());
        if terminating && no_finalizers {
            self.remove(rt, &ns, &name);
            self.commit(&rt.key(), EventType::Deleted, new.clone(), None);
            self.after_delete(rt, &new, false);
            return Ok(new);
        }
        self.insert(rt, new.clone());
        if let Some(t) = crd_type {
            self.crds.insert(name.clone(), t);
        }
        self.commit(
            &rt.key(),
            EventType::Modified,
            new.clone(),
            Some(old.clone()),
        );
        Ok(new)
    }

    /// PATCH on the main resource or the status subresource. Returns the HTTP code
    /// (201 when an apply created the object) and the object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: Value,
        status_sub: bool,
        w: &WriteOpts,
    ) -> ApiResult<(u16, Value)> {
        let ns_key = Self::ns_key(rt, ns);
        let old = self.get(rt, &ns_key, name).cloned();
        match kind {
            PatchKind::Merge | PatchKind::Strategic => {
                let old = old.ok_or_else(|| ApiError::not_found(rt, name))?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("the patch is not a JSON object"));
                }
                let mut patch = patch;
                if kind == PatchKind::Strategic {
                    strip_directives(&mut patch);
                }
                let mut candidate = old.clone();
                json_patch::merge(&mut candidate, &patch);
                self.replace_checked(rt, &old, candidate, status_sub, w)
                    .map(|v| (200, v))
            }
            PatchKind::Json => {
                let old = old.ok_or_else(|| ApiError::not_found(rt, name))?;
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                let mut candidate = old.clone();
                json_patch::patch(&mut candidate, &ops)
                    .map_err(|e| ApiError::invalid(rt, name, e.to_string()))?;
                self.replace_checked(rt, &old, candidate, status_sub, w)
                    .map(|v| (200, v))
            }
            PatchKind::Apply => self.apply(rt, ns, name, old, patch, status_sub, w),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        old: Option<Value>,
        applied: Value,
        status_sub: bool,
        w: &WriteOpts,
    ) -> ApiResult<(u16, Value)> {
        if w.manager.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration is not an object",
            ));
        }
        for key in ["apiVersion", "kind"] {
            if applied
                .get(key)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "invalid object type: {key} must be set in an applied configuration"
                )));
            }
        }
        if applied.get("kind").and_then(Value::as_str) != Some(rt.kind.as_str()) {
            return Err(ApiError::bad_request(format!(
                "the kind of the applied configuration does not match the resource ({})",
                rt.kind
            )));
        }
        match meta_str(&applied, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        let Some(old) = old else {
            if status_sub {
                return Err(ApiError::not_found(rt, name));
            }
            let mut body = applied;
            meta_mut(&mut body).insert("name".into(), name.into());
            return self.create(rt, ns, body, w, true).map(|v| (201, v));
        };
        if rt.namespaced {
            if let Some(bns) = meta_str(&applied, "namespace") {
                if !bns.is_empty() && Some(bns) != meta_str(&old, "namespace") {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        if let Some(rv) = meta_str(&applied, "resourceVersion") {
            if !rv.is_empty() && Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(rt, name));
            }
        }
        let scope = if status_sub {
            Scope::Status
        } else {
            Scope::Main {
                exclude_status: rt.status,
            }
        };
        let sub = scope.subresource().map(str::to_string);
        let view = fields::scoped_view(&applied, scope);
        let applied_paths = fields::scoped_paths(&applied, scope);
        let mut entries = fields::read_managed(&old);
        let prev: fields::FieldSet = entries
            .iter()
            .find(|e| e.manager == w.manager && e.operation == "Apply" && e.subresource == sub)
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let others = |e: &ManagedEntry| {
            !(e.manager == w.manager && e.operation == "Apply") && e.subresource == sub
        };
        if !w.force {
            let mut conflicts: Vec<(String, String)> = Vec::new();
            for p in &applied_paths {
                if fields::value_at(&old, p) == fields::value_at(&applied, p) {
                    continue;
                }
                for e in entries
                    .iter()
                    .filter(|e| others(e) && e.manager != w.manager)
                {
                    if fields::set_overlaps(&e.fields, p) {
                        conflicts.push((e.manager.clone(), fields::path_string(p)));
                    }
                }
            }
            if !conflicts.is_empty() {
                let av = rt.api_version(rt.preferred_version());
                let lines: Vec<String> = conflicts
                    .iter()
                    .map(|(m, p)| format!("conflict with \"{m}\" using {av}: {p}"))
                    .collect();
                let message = if lines.len() == 1 {
                    format!("Apply failed with 1 conflict: {}", lines[0])
                } else {
                    format!(
                        "Apply failed with {} conflicts: {}",
                        lines.len(),
                        lines.join("\n")
                    )
                };
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|(m, p)| {
                        json!({"reason": "FieldManagerConflict",
                               "message": format!("conflict with \"{m}\" using {av}"),
                               "field": p})
                    })
                    .collect();
                let mut err = ApiError::new(409, "Conflict", message).with_details(rt, name);
                if let Some(d) = err.details.as_mut() {
                    d["causes"] = json!(causes);
                }
                return Err(err);
            }
        }
        let mut new = old.clone();
        // Fields this manager applied before and no longer applies, and that nobody
        // else owns, are removed.
        for p in prev.iter().filter(|p| !applied_paths.contains(*p)) {
            let owned_elsewhere = entries
                .iter()
                .filter(|e| others(e))
                .any(|e| fields::set_overlaps(&e.fields, p));
            let reapplied = applied_paths.iter().any(|q| fields::overlaps(q, p));
            if !owned_elsewhere && !reapplied {
                fields::remove_at(&mut new, p);
            }
        }
        fields::deep_merge(&mut new, &view);
        for e in entries.iter_mut().filter(|e| others(e)) {
            e.fields.retain(|q| {
                let contested = applied_paths.iter().any(|p| fields::overlaps(p, q));
                if !contested {
                    return true;
                }
                // Shared ownership survives when the value is unchanged, unless forced.
                !w.force && fields::value_at(&old, q) == fields::value_at(&new, q)
            });
        }
        let av = applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match entries
            .iter_mut()
            .find(|e| e.manager == w.manager && e.operation == "Apply" && e.subresource == sub)
        {
            Some(e) => {
                e.time = now_rfc3339();
                e.fields = applied_paths;
                e.api_version = av;
            }
            None => entries.push(ManagedEntry {
                manager: w.manager.clone(),
                operation: "Apply".into(),
                api_version: av,
                time: now_rfc3339(),
                subresource: sub,
                fields: applied_paths,
            }),
        }
        fields::write_managed(&mut new, &entries);
        self.finish_update(rt, &old, new, w).map(|v| (200, v))
    }

    /// Deletes an object; objects with finalizers are only marked for deletion.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let ns_key = Self::ns_key(rt, ns);
        let old = self
            .get(rt, &ns_key, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(pre) = options.get("preconditions") {
            for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                if let Some(want) = pre.get(field).and_then(Value::as_str) {
                    let got = meta_str(&old, field).unwrap_or("");
                    if want != got {
                        return Err(ApiError::new(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {label} in precondition: {want}, {label} in object meta: {got}",
                                rt.group_resource()
                            ),
                        )
                        .with_details(rt, name));
                    }
                }
            }
        }
        if dry_run {
            return Ok(old);
        }
        let has_finalizers = meta(&old)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_finalizers {
            if meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                return Ok(old);
            }
            let mut new = old.clone();
            let rv = self.next_rv();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), now_rfc3339().into());
            m.insert("deletionGracePeriodSeconds".into(), 0.into());
            m.insert("resourceVersion".into(), rv.to_string().into());
            self.insert(rt, new.clone());
            self.commit(&rt.key(), EventType::Modified, new.clone(), Some(old));
            return Ok(new);
        }
        let mut gone = self
            .remove(rt, &ns_key, name)
            .expect("object present under the lock");
        let rv = self.next_rv();
        meta_mut(&mut gone).insert("resourceVersion".into(), rv.to_string().into());
        self.commit(&rt.key(), EventType::Deleted, gone.clone(), None);
        let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan");
        self.after_delete(rt, &gone, orphan);
        Ok(gone)
    }

    /// Cascades: namespace contents, owned objects, a CRD's objects and type.
    fn after_delete(&mut self, rt: &ResourceType, gone: &Value, orphan: bool) {
        let name = meta_str(gone, "name").unwrap_or("").to_string();
        if rt.group.is_empty() && rt.plural == "namespaces" {
            for t in self.types().into_iter().filter(|t| t.namespaced) {
                let names: Vec<String> = self
                    .bucket(&t)
                    .map(|b| {
                        b.keys()
                            .filter(|(ns, _)| *ns == name)
                            .map(|(_, n)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for n in names {
                    let _ = self.force_delete(&t, &name, &n);
                }
            }
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            if let Some(t) = self.crds.remove(&name) {
                let keys: Vec<ObjKey> = self
                    .bucket(&t)
                    .map(|b| b.keys().cloned().collect())
                    .unwrap_or_default();
                for (ns, n) in keys {
                    let _ = self.force_delete(&t, &ns, &n);
                }
                self.objects.remove(&t.key());
                let key = t.key();
                self.watchers.retain(|w| w.key != key);
            }
        }
        if !orphan {
            if let Some(uid) = meta_str(gone, "uid").map(str::to_string) {
                let mut dependents = Vec::new();
                for t in self.types() {
                    if let Some(b) = self.bucket(&t) {
                        for ((ns, n), o) in b {
                            let owned = o
                                .pointer("/metadata/ownerReferences")
                                .and_then(Value::as_array)
                                .is_some_and(|refs| {
                                    refs.iter().any(|r| {
                                        r.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                                    })
                                });
                            if owned {
                                dependents.push((t.clone(), ns.clone(), n.clone()));
                            }
                        }
                    }
                }
                for (t, ns, n) in dependents {
                    let _ = self.force_delete(&t, &ns, &n);
                }
            }
        }
    }

    /// Deletes regardless of finalizers (cascades and test helpers).
    pub fn force_delete(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let mut gone = self.remove(rt, ns, name)?;
        let rv = self.next_rv();
        meta_mut(&mut gone).insert("resourceVersion".into(), rv.to_string().into());
        self.commit(&rt.key(), EventType::Deleted, gone.clone(), None);
        self.after_delete(rt, &gone, false);
        Some(gone)
    }

    /// Creates or replaces an object as given (keeping its status), bypassing
    /// concurrency checks; metadata is completed as on create. For tests.
    pub fn put_object(&mut self, rt: &ResourceType, mut obj: Value) -> ApiResult<Value> {
        let ns = if rt.namespaced {
            Some(meta_str(&obj, "namespace").unwrap_or("default").to_string())
        } else {
            None
        };
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let w = WriteOpts {
            // No manager: objects put by tests are owned by nobody, so later applies
            // never conflict with them.
            manager: String::new(),
            ..Default::default()
        };
        let ns_key = Self::ns_key(rt, ns.as_deref());
        if let Some(old) = self.get(rt, &ns_key, &name).cloned() {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let status = obj.get("status").cloned();
            let new = self.replace_checked(rt, &old, obj, false, &w)?;
            if rt.status {
                let cur = new.clone();
                let mut cand = cur.clone();
                match status {
                    Some(s) => cand["status"] = s,
                    None => {
                        cand.as_object_mut().expect("object").remove("status");
                    }
                }
                if let Some(m) = cand.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                return self.replace_checked(rt, &cur, cand, true, &w);
            }
            Ok(new)
        } else {
            let status = obj.get("status").cloned();
            let created = self.create(rt, ns.as_deref(), obj, &w, false)?;
            match status {
                Some(s) if rt.status => {
                    let mut cand = created.clone();
                    cand["status"] = s;
                    self.replace_checked(rt, &created, cand, true, &w)
                }
                _ => Ok(created),
            }
        }
    }

    /// Registers a watcher and returns the events to send first, or `Err` with the
    /// resourceVersions of a `410 Gone`.
    pub fn watch_start(
        &mut self,
        rt: &ResourceType,
        filter: &Filter,
        resource_version: Option<&str>,
        send_initial: bool,
    ) -> Result<WatchStart, (u64, u64)> {
        let mut initial = Vec::new();
        let start = match resource_version.filter(|s| !s.is_empty() && *s != "0") {
            Some(s) if !send_initial => {
                let n = parse_rv(s).unwrap_or(0);
                if n < self.floor {
                    return Err((n, self.rv));
                }
                for ev in self
                    .history
                    .iter()
                    .filter(|e| e.rv > n && e.key == rt.key())
                {
                    if let Some(pair) = transform(ev, filter) {
                        initial.push(pair);
                    }
                }
                n.max(self.rv)
            }
            _ => {
                for o in self.list(rt, filter) {
                    initial.push((EventType::Added, o));
                }
                self.rv
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(WatcherSlot { key: rt.key(), tx });
        Ok((initial, start, rx))
    }
}

/// How one stored event looks through a filter: MODIFIED becomes ADDED or DELETED
/// when the object starts or stops matching.
pub fn transform(ev: &Event, filter: &Filter) -> Option<(EventType, Value)> {
    let now = filter.matches(&ev.object);
    match ev.etype {
        EventType::Modified => {
            let before = ev.old.as_ref().is_some_and(|o| filter.matches(o));
            match (before, now) {
                (true, true) => Some((EventType::Modified, ev.object.clone())),
                (false, true) => Some((EventType::Added, ev.object.clone())),
                (true, false) => Some((EventType::Deleted, ev.object.clone())),
                (false, false) => None,
            }
        }
        t => now.then(|| (t, ev.object.clone())),
    }
}

fn crd_status(crd: &Value, t: &ResourceType) -> Value {
    let now = now_rfc3339();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": [t.preferred_version()],
    })
}

/// Removes strategic-merge-patch directives (`$patch`, `$setElementOrder/...`,
/// `$retainKeys`, `$deleteFromPrimitiveList/...`), so the rest merges as a merge patch.
fn strip_directives(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| !k.starts_with('$'));
        for child in m.values_mut() {
            strip_directives(child);
        }
    }
}

/// Server-side defaulting on updates of built-in kinds: a Service keeps its
/// clusterIP and gets port defaults again, a Secret's stringData folds into data.
fn normalize_update(rt: &ResourceType, old: &Value, new: &mut Value) {
    if !rt.group.is_empty() {
        return;
    }
    match rt.plural.as_str() {
        "services" => {
            let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
                return;
            };
            spec.entry("type").or_insert_with(|| json!("ClusterIP"));
            for key in ["clusterIP", "clusterIPs"] {
                if !spec.contains_key(key) {
                    if let Some(v) = old.pointer(&format!("/spec/{key}")) {
                        spec.insert(key.into(), v.clone());
                    }
                }
            }
            spec.entry("sessionAffinity")
                .or_insert_with(|| json!("None"));
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports {
                    if let Some(p) = p.as_object_mut() {
                        p.entry("protocol").or_insert_with(|| json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            p.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
        }
        "secrets" => {
            if let Some(Value::Object(sd)) =
                new.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine;
                if !new.get("data").is_some_and(Value::is_object) {
                    new["data"] = json!({});
                }
                for (k, v) in sd {
                    let enc = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or("").as_bytes());
                    new["data"][k.as_str()] = json!(enc);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max_history: usize) -> State {
        let (tx, _rx) = tokio::sync::watch::channel(0);
        State::new(max_history, tx)
    }

    fn crd_type(s: &mut State) -> ResourceType {
        let crds = s
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        for crd in resources::gateway_api_crds() {
            s.put_object(&crds, crd).unwrap();
        }
        s.find_type("gateway.networking.k8s.io", "v1", "httproutes")
            .unwrap()
    }

    fn w(manager: &str) -> WriteOpts {
        WriteOpts {
            manager: manager.into(),
            ..Default::default()
        }
    }

    fn route(host: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "r", "namespace": "default"},
               "spec": {"hostnames": [host]}})
    }

    #[test]
    fn generation_and_noop_updates() {
        let mut s = state(100);
        let rt = crd_type(&mut s);
        let created = s
            .create(&rt, Some("default"), route("a"), &w("m"), false)
            .unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        let rv = created["metadata"]["resourceVersion"].clone();
        // Same content: nothing happens.
        let same = s
            .update(&rt, Some("default"), "r", created.clone(), false, &w("m"))
            .unwrap();
        assert_eq!(same["metadata"]["resourceVersion"], rv);
        // Labels: new resourceVersion, same generation.
        let mut labelled = created.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        let l = s
            .update(&rt, Some("default"), "r", labelled, false, &w("m"))
            .unwrap();
        assert_ne!(l["metadata"]["resourceVersion"], rv);
        assert_eq!(l["metadata"]["generation"], 1);
        // Stale resourceVersion: conflict.
        let err = s
            .update(&rt, Some("default"), "r", created, false, &w("m"))
            .unwrap_err();
        assert_eq!(err.code, 409);
        // Spec: generation 2.
        let (_, p) = s
            .patch(
                &rt,
                Some("default"),
                "r",
                PatchKind::Merge,
                json!({"spec": {"hostnames": ["b"]}}),
                false,
                &w("m"),
            )
            .unwrap();
        assert_eq!(p["metadata"]["generation"], 2);
    }

    #[test]
    fn trimmed_history_answers_gone() {
        let mut s = state(3);
        let rt = s.find_type("", "v1", "configmaps").unwrap();
        let first = s.rv;
        for i in 0..5 {
            let cm = json!({"metadata": {"name": format!("c{i}")}});
            s.create(&rt, Some("default"), cm, &w("m"), false).unwrap();
        }
        let f = Filter::default();
        assert!(s
            .watch_start(&rt, &f, Some(&first.to_string()), false)
            .is_err());
        let recent = (s.rv - 2).to_string();
        let (initial, _, _rx) = s.watch_start(&rt, &f, Some(&recent), false).unwrap();
        assert_eq!(initial.len(), 2);
        let (all, _, _rx) = s.watch_start(&rt, &f, Some("0"), false).unwrap();
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn shared_ownership_keeps_fields_another_manager_applies() {
        let mut s = state(100);
        let rt = crd_type(&mut s);
        let apply = |s: &mut State, m: &str, v: Value| {
            s.patch(&rt, Some("default"), "r", PatchKind::Apply, v, false, &w(m))
                .unwrap()
                .1
        };
        let mut both = route("a");
        both["spec"]["parentRefs"] = json!([{"name": "web"}]);
        apply(&mut s, "one", both.clone());
        apply(&mut s, "two", both);
        // "one" stops applying parentRefs: "two" still owns them, so they stay.
        let v = apply(&mut s, "one", route("a"));
        assert_eq!(v["spec"]["parentRefs"][0]["name"], "web");
        // "two" stops too: now they go.
        let v = apply(&mut s, "two", route("a"));
        assert!(v["spec"].get("parentRefs").is_none(), "{v}");
        let managers: Vec<&str> = v["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["one", "two"]);
    }
}
