//! The stateful part around the pure [`translate`]: what an API server and a long-lived
//! controller remember between rebuilds.
//!
//! - `metadata.generation` (1 when first seen, +1 when the content other than metadata
//!   and status changes) and `creationTimestamp` (first load time when the manifest has
//!   none), tracked per kind and key, so an object moved between files is the same
//!   object and one deleted then recreated starts again at 1;
//! - Gateway addresses (`spec.addresses`, else the next free address of the pool),
//!   stable across rebuilds and released when the Gateway goes;
//! - the published config generation (+1 only when the translated config changed);
//! - condition `lastTransitionTime`s (kept while status and reason stay the same).
use crate::k8s::NAMESPACE_NAME_LABEL;
use crate::notice::Notice;
use crate::settings::Settings;
use crate::source::parse::RawObject;
use crate::status::{self, StatusReport};
use crate::store::{Kind, Object, ObjectKey, Store};
use crate::translate::translate;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sluice_ir::{Applied, Config};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Tracked {
    generation: i64,
    content: Value,
    created: String,
}

/// What a rebuild changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Update {
    /// A new config (generation + 1) was produced.
    pub config_changed: bool,
    /// The statuses changed.
    pub status_changed: bool,
}

/// Rebuild state: generations, creation times, addresses, published config, statuses.
#[derive(Debug)]
pub struct Pipeline {
    settings: Settings,
    tracked: BTreeMap<(Kind, ObjectKey), Tracked>,
    addresses: BTreeMap<ObjectKey, IpAddr>,
    config: Arc<Config>,
    raw_status: StatusReport,
    status: Arc<StatusReport>,
    applied: Applied,
    notices: Vec<Notice>,
    published_once: bool,
    /// Cluster mode: objects carry the API server's `generation`; keep it.
    server_metadata: bool,
    /// Cluster mode: the address every Gateway without an IP in `spec.addresses` binds
    /// (shared; listeners on the same port merge by hostname), instead of the pool.
    shared_address: Option<IpAddr>,
}

/// RFC 3339 with second precision, as the API server writes times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Pipeline {
    /// A pipeline with the empty config (generation 0) and no statuses.
    pub fn new(settings: Settings) -> Pipeline {
        Pipeline {
            settings,
            tracked: BTreeMap::new(),
            addresses: BTreeMap::new(),
            config: Arc::new(Config::default()),
            raw_status: StatusReport::default(),
            status: Arc::new(StatusReport::default()),
            applied: Applied::default(),
            notices: Vec::new(),
            published_once: false,
            server_metadata: false,
            shared_address: None,
        }
    }

    /// Cluster mode: Gateways without an IP address in `spec.addresses` all get
    /// `address` (e.g. `0.0.0.0`) instead of a pool address of their own.
    pub fn with_shared_address(mut self, address: Option<IpAddr>) -> Pipeline {
        self.shared_address = address;
        self
    }

    /// Cluster mode: trust the `metadata.generation` objects carry (the API server's)
    /// instead of counting content changes.
    pub fn with_server_metadata(mut self) -> Pipeline {
        self.server_metadata = true;
        self
    }

    /// The config last published.
    pub fn config(&self) -> Arc<Config> {
        self.config.clone()
    }

    /// The statuses last published (stamped, with dataplane feedback).
    pub fn status(&self) -> Arc<StatusReport> {
        self.status.clone()
    }

    /// Notices of the last rebuild (store and translation).
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// The current Gateway address assignment.
    pub fn addresses(&self) -> &BTreeMap<ObjectKey, IpAddr> {
        &self.addresses
    }

    /// Applies the API server's defaults (generation, creationTimestamp, namespace
    /// label) to `objects`, assigns Gateway addresses and builds the Store. Objects
    /// not in `objects` are forgotten (their generation restarts at 1 if they return).
    pub fn build_store<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a RawObject>,
        now: DateTime<Utc>,
    ) -> (Store, Vec<Notice>) {
        let now = rfc3339(now);
        let mut store = Store::default();
        let mut notices = Vec::new();
        let mut tracked = BTreeMap::new();
        for raw in objects {
            let id = (raw.kind, raw.key.clone());
            let mut value = raw.value.clone();
            let mut content = value.clone();
            if let Some(m) = content.as_object_mut() {
                for k in ["metadata", "status", "apiVersion", "kind"] {
                    m.remove(k);
                }
            }
            let written_created = value
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .map(str::to_string);
            let server_generation = if self.server_metadata {
                value
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
            } else {
                None
            };
            let mut entry = match self.tracked.get(&id) {
                Some(prev) => Tracked {
                    generation: if prev.content == content {
                        prev.generation
                    } else {
                        prev.generation + 1
                    },
                    content,
                    created: written_created.unwrap_or_else(|| prev.created.clone()),
                },
                None => Tracked {
                    generation: 1,
                    content,
                    created: written_created.unwrap_or_else(|| now.clone()),
                },
            };
            if let Some(g) = server_generation {
                entry.generation = g;
            }
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("generation".into(), Value::from(entry.generation));
                meta.insert(
                    "creationTimestamp".into(),
                    Value::String(entry.created.clone()),
                );
                if raw.kind == Kind::Namespace {
                    let labels = meta
                        .entry("labels")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Some(labels) = labels.as_object_mut() {
                        labels.insert(
                            NAMESPACE_NAME_LABEL.into(),
                            Value::String(raw.key.name.clone()),
                        );
                    }
                }
            }
            match Object::from_value(raw.kind, value) {
                Ok(obj) => {
                    store.insert(obj);
                    tracked.insert(id, entry);
                }
                Err(e) => notices.push(Notice::error(
                    crate::ObjectRef::new(raw.kind.name(), &raw.key.namespace, &raw.key.name),
                    None,
                    format!("Object cannot be read: {e}."),
                )),
            }
        }
        self.tracked = tracked;
        self.assign_addresses(&mut store);
        (store, notices)
    }

    fn assign_addresses(&mut self, store: &mut Store) {
        let mut assigned = BTreeMap::new();
        let mut used = BTreeSet::new();
        // 1. Static addresses from spec.addresses.
        for (key, gw) in &store.gateways {
            if let Some(ip) = static_address(gw) {
                assigned.insert(key.clone(), ip);
                used.insert(ip);
            }
        }
        // 2. Cluster mode: one shared bind address.
        if let Some(shared) = self.shared_address {
            for key in store.gateways.keys() {
                assigned.entry(key.clone()).or_insert(shared);
            }
        }
        // 3. Keep earlier pool assignments.
        for key in store.gateways.keys() {
            if assigned.contains_key(key) {
                continue;
            }
            if let Some(ip) = self.addresses.get(key) {
                if used.insert(*ip) {
                    assigned.insert(key.clone(), *ip);
                }
            }
        }
        // 4. New Gateways get the next free pool address, in key order.
        let mut pool = self.settings.gateway_address_pool.hosts().take(1 << 16);
        for key in store.gateways.keys() {
            if assigned.contains_key(key) {
                continue;
            }
            if let Some(ip) = pool.by_ref().find(|ip| !used.contains(ip)) {
                used.insert(ip);
                assigned.insert(key.clone(), ip);
            }
        }
        self.addresses = assigned.clone();
        store.gateway_addresses = assigned;
    }

    /// Rebuilds from the full set of objects: Store, translation, config generation,
    /// statuses.
    pub fn rebuild<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a RawObject>,
        now: DateTime<Utc>,
    ) -> Update {
        let (store, mut notices) = self.build_store(objects, now);
        let t = translate(&store, &self.settings);
        let mut config = t.config;
        config.generation = self.config.generation;
        let config_changed = config != *self.config || !self.published_once;
        if config_changed {
            config.generation += 1;
            self.config = Arc::new(config);
            self.published_once = true;
        }
        notices.extend(t.notices);
        notices.sort();
        notices.dedup();
        if notices != self.notices {
            for n in &notices {
                n.log();
            }
        }
        self.notices = notices;
        self.raw_status = t.statuses;
        let status_changed = self.restatus(now);
        Update {
            config_changed,
            status_changed,
        }
    }

    /// Records what the proxy applied and recomputes statuses; true if they changed.
    pub fn set_applied(&mut self, applied: Applied, now: DateTime<Utc>) -> bool {
        self.applied = applied;
        self.restatus(now)
    }

    fn restatus(&mut self, now: DateTime<Utc>) -> bool {
        let mut report = self.raw_status.clone();
        status::apply_dataplane_feedback(&mut report, &self.applied, &self.config);
        status::stamp(&mut report, &self.status, &rfc3339(now));
        if report != *self.status {
            self.status = Arc::new(report);
            true
        } else {
            false
        }
    }
}

/// The first IP address of `spec.addresses` (type `IPAddress` or unset).
pub fn static_address(gw: &crate::k8s::Gateway) -> Option<IpAddr> {
    gw.spec.addresses.as_ref()?.iter().find_map(|a| {
        let t = a.r#type.as_deref().unwrap_or("IPAddress");
        if t != "IPAddress" {
            return None;
        }
        a.value.as_deref()?.parse().ok()
    })
}
