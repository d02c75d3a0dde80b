//! Status sinks: where computed statuses go.
//!
//! - The admin `/status` endpoint reads the pipeline's `watch` channel directly (folder
//!   and cluster mode).
//! - [`ApiServerSink`] writes them to the API server: a bounded channel, then one writer
//!   task that, while this replica leads, compares each object's status with what the
//!   API server holds (ignoring `lastTransitionTime`, whose values it carries over) and
//!   only then server-side applies the `status` subresource with one field manager,
//!   rate limited (token bucket) and with a per-patch timeout. Route `parents[]` and
//!   policy `ancestors[]` entries of other controllers are kept.
use super::{ObjectStatus, StatusReport};
use crate::source::kube::kind_info;
use crate::store::Kind;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Somewhere statuses go.
pub trait StatusSink: Send + Sync {
    /// Hands over the latest statuses (never blocks; a newer report supersedes an
    /// older one not yet written).
    fn publish(&self, report: Arc<StatusReport>);
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct ApiServerSinkConfig {
    /// Field manager of every apply (default `sluice`).
    pub field_manager: String,
    /// Our `controllerName` (route parents / policy ancestors we own).
    pub controller_name: String,
    /// Sustained writes per second (default 50).
    pub writes_per_second: u32,
    /// Burst of the token bucket (default 50).
    pub burst: u32,
    /// Timeout of one GET + patch (default 5 s).
    pub timeout: Duration,
}

impl ApiServerSinkConfig {
    /// The defaults for `controller_name`.
    pub fn new(controller_name: &str) -> ApiServerSinkConfig {
        ApiServerSinkConfig {
            field_manager: "sluice".to_string(),
            controller_name: controller_name.to_string(),
            writes_per_second: 50,
            burst: 50,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Patches sent and accepted.
    pub writes: AtomicU64,
    /// Objects whose status was already up to date (no patch).
    pub skipped: AtomicU64,
    /// Failed or timed-out patches (retried).
    pub errors: AtomicU64,
}

/// Writes statuses to the API server while `leader` is true.
#[derive(Debug, Clone)]
pub struct ApiServerSink {
    tx: mpsc::Sender<Arc<StatusReport>>,
    latest: Arc<parking_lot::Mutex<Option<Arc<StatusReport>>>>,
    /// Counters.
    pub metrics: Arc<SinkMetrics>,
}

impl StatusSink for ApiServerSink {
    fn publish(&self, report: Arc<StatusReport>) {
        // The channel only wakes the writer; the slot holds the newest report.
        *self.latest.lock() = Some(report.clone());
        let _ = self.tx.try_send(report);
    }
}

type Id = (String, String, String); // kind, namespace, name

impl ApiServerSink {
    /// Starts the writer task.
    pub fn spawn(
        client: kube::Client,
        cfg: ApiServerSinkConfig,
        leader: watch::Receiver<bool>,
    ) -> ApiServerSink {
        let (tx, rx) = mpsc::channel(8);
        let latest = Arc::new(parking_lot::Mutex::new(None));
        let metrics = Arc::new(SinkMetrics::default());
        tokio::spawn(writer(
            client,
            cfg,
            leader,
            rx,
            latest.clone(),
            metrics.clone(),
        ));
        ApiServerSink {
            tx,
            latest,
            metrics,
        }
    }

    /// Forwards every report of `status` to this sink (a task).
    pub fn follow(&self, mut status: watch::Receiver<Arc<StatusReport>>) {
        let sink = self.clone();
        tokio::spawn(async move {
            loop {
                let r = status.borrow_and_update().clone();
                sink.publish(r);
                if status.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: tokio::time::Instant,
}

impl Bucket {
    async fn take(&mut self) {
        loop {
            let now = tokio::time::Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
                .min(self.burst);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

async fn writer(
    client: kube::Client,
    cfg: ApiServerSinkConfig,
    mut leader: watch::Receiver<bool>,
    mut rx: mpsc::Receiver<Arc<StatusReport>>,
    latest: Arc<parking_lot::Mutex<Option<Arc<StatusReport>>>>,
    metrics: Arc<SinkMetrics>,
) {
    // What we last wrote (or found already written), per object, without times.
    let mut written: BTreeMap<Id, Value> = BTreeMap::new();
    let mut bucket = Bucket {
        tokens: f64::from(cfg.burst.max(1)),
        rate: f64::from(cfg.writes_per_second.max(1)),
        burst: f64::from(cfg.burst.max(1)),
        last: tokio::time::Instant::now(),
    };
    let mut retry = false;
    let mut leader_open = true;
    loop {
        tokio::select! {
            r = rx.recv() => if r.is_none() { return },
            r = leader.changed(), if leader_open => {
                if r.is_err() {
                    leader_open = false;
                }
                // A new term: what the API server holds may have changed meanwhile.
                written.clear();
            }
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
        }
        while rx.try_recv().is_ok() {}
        if !*leader.borrow() {
            retry = false;
            continue;
        }
        let Some(report) = latest.lock().clone() else {
            continue;
        };
        retry = false;
        for obj in &report.objects {
            let id: Id = (
                obj.kind.clone(),
                obj.metadata.namespace.clone().unwrap_or_default(),
                obj.metadata.name.clone(),
            );
            let Ok(desired) = serde_json::to_value(&obj.status) else {
                continue;
            };
            let desired_key = strip_times(&desired);
            if written.get(&id) == Some(&desired_key) {
                continue;
            }
            if !*leader.borrow() {
                break;
            }
            bucket.take().await;
            let start = std::time::Instant::now();
            match tokio::time::timeout(cfg.timeout, write_one(&client, &cfg, obj, desired)).await {
                Ok(Ok(wrote)) => {
                    if wrote {
                        metrics.writes.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            kind = %id.0, namespace = %id.1, name = %id.2,
                            elapsed_ms = start.elapsed().as_millis() as u64,
                            "status written"
                        );
                    } else {
                        metrics.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    written.insert(id, desired_key);
                }
                Ok(Err(e)) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(kind = %id.0, namespace = %id.1, name = %id.2, error = %e, "status write failed; will retry");
                    retry = true;
                }
                Err(_) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(kind = %id.0, namespace = %id.1, name = %id.2, "status write timed out; will retry");
                    retry = true;
                }
            }
        }
    }
}

/// Reads the object, merges, compares, applies. `Ok(false)`: nothing to write (up to date
/// or the object is gone).
async fn write_one(
    client: &kube::Client,
    cfg: &ApiServerSinkConfig,
    obj: &ObjectStatus,
    mut desired: Value,
) -> Result<bool, kube::Error> {
    let Some(info) = Kind::identify(&obj.api_version, &obj.kind).and_then(kind_info) else {
        return Ok(false);
    };
    let ar = info.api_resource();
    let api: Api<DynamicObject> = match &obj.metadata.namespace {
        Some(ns) if info.kind.namespaced() => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    let Some(current) = api.get_opt(&obj.metadata.name).await? else {
        return Ok(false);
    };
    let server_generation = current.metadata.generation.unwrap_or(0);
    if server_generation > obj.metadata.generation {
        // Computed for an older generation: the watch will bring the new one.
        return Ok(false);
    }
    let current_status = current.data.get("status").cloned().unwrap_or(Value::Null);
    merge_foreign_entries(&mut desired, &current_status, &cfg.controller_name);
    carry_times(&mut desired, &current_status);
    if strip_times(&desired) == strip_times(&current_status) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": info.api_version(),
        "kind": info.kind.name(),
        "metadata": {"name": obj.metadata.name},
        "status": desired,
    });
    let pp = PatchParams::apply(&cfg.field_manager).force();
    api.patch_status(&obj.metadata.name, &pp, &Patch::Apply(&patch))
        .await?;
    Ok(true)
}

/// Keeps the `parents[]` / `ancestors[]` entries of other controllers, in front of ours.
fn merge_foreign_entries(desired: &mut Value, current: &Value, controller: &str) {
    for list in ["parents", "ancestors"] {
        let Some(ours) = desired.get(list).and_then(Value::as_array).cloned() else {
            continue;
        };
        let mut merged: Vec<Value> = current
            .get(list)
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.get("controllerName").and_then(Value::as_str) != Some(controller))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        merged.extend(ours);
        if let Some(m) = desired.as_object_mut() {
            m.insert(list.to_string(), Value::Array(merged));
        }
    }
}

/// The identity of a list entry, for matching desired and current entries.
fn entry_key(v: &Value) -> Option<Value> {
    for k in ["type", "name", "parentRef", "ancestorRef"] {
        if let Some(x) = v.get(k) {
            let ctl = v.get("controllerName").cloned().unwrap_or(Value::Null);
            return Some(json!([k, x, ctl]));
        }
    }
    None
}

/// Carries the API server's `lastTransitionTime` over to conditions whose status and
/// reason did not change, so a restart or a new leader does not re-stamp them.
pub fn carry_times(desired: &mut Value, current: &Value) {
    match (desired, current) {
        (Value::Object(d), Value::Object(c)) => {
            let same = d.get("status") == c.get("status")
                && d.get("reason") == c.get("reason")
                && d.get("type").is_some()
                && d.get("type") == c.get("type");
            if same {
                if let Some(t) = c.get("lastTransitionTime") {
                    if d.contains_key("lastTransitionTime") {
                        d.insert("lastTransitionTime".into(), t.clone());
                    }
                }
            }
            for (k, dv) in d.iter_mut() {
                if let Some(cv) = c.get(k) {
                    carry_times(dv, cv);
                }
            }
        }
        (Value::Array(d), Value::Array(c)) => {
            for dv in d.iter_mut() {
                let Some(key) = entry_key(dv) else { continue };
                if let Some(cv) = c.iter().find(|cv| entry_key(cv).as_ref() == Some(&key)) {
                    carry_times(dv, cv);
                }
            }
        }
        _ => {}
    }
}

/// The value without any `lastTransitionTime`, for comparisons.
pub fn strip_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), strip_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_times).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other controllers' parents stay; ours are replaced.
    #[test]
    fn keeps_foreign_parents() {
        let current = json!({"parents": [
            {"parentRef": {"name": "a"}, "controllerName": "other.io/x", "conditions": []},
            {"parentRef": {"name": "g"}, "controllerName": "me", "conditions": []},
        ]});
        let mut desired = json!({"parents": [
            {"parentRef": {"name": "g"}, "controllerName": "me", "conditions": [{"type": "Accepted"}]},
        ]});
        merge_foreign_entries(&mut desired, &current, "me");
        let parents = desired["parents"].as_array().map(Vec::len);
        assert_eq!(parents, Some(2));
        assert_eq!(desired["parents"][0]["controllerName"], "other.io/x");
    }

    /// Only `lastTransitionTime` differs → equal after carrying times over.
    #[test]
    fn time_only_change_is_no_change() {
        let current = json!({"conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ]});
        let mut desired = json!({"conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]});
        carry_times(&mut desired, &current);
        assert_eq!(desired, current);
        let mut changed = json!({"conditions": [
            {"type": "Accepted", "status": "False", "reason": "Invalid", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]});
        carry_times(&mut changed, &current);
        assert_ne!(strip_times(&changed), strip_times(&current));
        assert_eq!(
            changed["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }
}

// === impl EventSink ===

/// Publishes [`Notice`](crate::Notice)s as Kubernetes Events (events.k8s.io/v1, through
/// kube's `Recorder`), while this replica leads. Deduplicated: a notice is published
/// when it appears, not again while it stays (the Recorder also folds repeats into a
/// series).
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: watch::Sender<Arc<Vec<crate::Notice>>>,
}

impl EventSink {
    /// Starts the publisher task; `reporter` names the controller and the instance.
    pub fn spawn(
        client: kube::Client,
        controller: &str,
        instance: &str,
        mut leader: watch::Receiver<bool>,
    ) -> EventSink {
        use kube::runtime::events::{Recorder, Reporter};
        let (tx, mut rx) = watch::channel(Arc::new(Vec::<crate::Notice>::new()));
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: controller.to_string(),
                instance: Some(instance.to_string()),
            },
        );
        tokio::spawn(async move {
            let mut published: std::collections::BTreeSet<crate::Notice> = Default::default();
            loop {
                let notices = rx.borrow_and_update().clone();
                if *leader.borrow_and_update() {
                    let current: std::collections::BTreeSet<crate::Notice> =
                        notices.iter().cloned().collect();
                    for n in current.difference(&published) {
                        publish_notice(&recorder, n).await;
                    }
                    published = current;
                } else {
                    // A new leader publishes what is current when it takes over.
                    published.clear();
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    r = leader.changed() => if r.is_err() { return },
                }
            }
        });
        EventSink { tx }
    }

    /// Hands over the current notices.
    pub fn publish(&self, notices: Arc<Vec<crate::Notice>>) {
        self.tx.send_replace(notices);
    }
}

async fn publish_notice(recorder: &kube::runtime::events::Recorder, n: &crate::Notice) {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType};
    let Some(info) = crate::source::kube::KINDS
        .iter()
        .find(|k| k.kind.name() == n.object.kind)
    else {
        return; // not an API object (e.g. a manifest file)
    };
    let reference = ObjectReference {
        api_version: Some(info.api_version()),
        kind: Some(info.kind.name().to_string()),
        name: Some(n.object.name.clone()),
        namespace: (!n.object.namespace.is_empty()).then(|| n.object.namespace.clone()),
        ..Default::default()
    };
    let mut note = match &n.field {
        Some(f) => format!("{f}: {}", n.message),
        None => n.message.clone(),
    };
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_: EventType::Warning,
        reason: match n.level {
            crate::Level::Error => "InvalidConfiguration".to_string(),
            crate::Level::Warning => "ConfigurationWarning".to_string(),
        },
        note: Some(note),
        action: "Translate".to_string(),
        secondary: None,
    };
    match tokio::time::timeout(Duration::from_secs(5), recorder.publish(&event, &reference)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, object = %n.object.name, "event not published"),
        Err(_) => tracing::warn!(object = %n.object.name, "event publish timed out"),
    }
}
