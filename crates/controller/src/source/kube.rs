//! The Kubernetes API source (cluster mode): one kube-runtime `watcher` per kind (and per
//! namespace with `--watch-namespace`), feeding the same [`Pipeline`] as the folder source.
//!
//! - Each stream keeps its objects as [`RawObject`]s. A relist (`Init` … `InitDone`) is
//!   buffered and swapped in atomically at `InitDone`, so a lost connection or a `410 Gone`
//!   never empties the Store: the last good objects stay in service while the watcher
//!   backs off (kube-runtime default backoff) and relists.
//! - Nothing is published until every stream had its first `InitDone`; readiness follows
//!   from that (the first config published is generation 1).
//! - A Gateway API kind whose CRD is missing (404) counts as synced and empty, is logged
//!   once, and is polled for every [`CRD_POLL`] until it appears.
//! - Objects carry the API server's `generation` and `creationTimestamp`
//!   ([`Pipeline::with_server_metadata`]).
use super::parse::RawObject;
use crate::error::{Error, Result};
use crate::k8s::GATEWAY_GROUP;
use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::status::StatusReport;
use crate::store::{Kind, ObjectKey};
use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use parking_lot::Mutex;
use serde_json::Value;
use sluice_ir::{Applied, Config};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How often a missing Gateway API CRD is looked for again.
pub const CRD_POLL: Duration = Duration::from_secs(5);
/// How long the watchers must be quiet before a rebuild.
pub const DEBOUNCE: Duration = Duration::from_millis(75);

/// Where a kind lives in the API.
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    /// The Store kind.
    pub kind: Kind,
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Resource (plural).
    pub plural: &'static str,
    /// Defined by a CRD (may be absent).
    pub crd: bool,
}

impl KindInfo {
    /// `apiVersion` of the kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kube `ApiResource`.
    pub fn api_resource(&self) -> ApiResource {
        let gvk = GroupVersionKind::gvk(self.group, self.version, self.kind.name());
        ApiResource::from_gvk_with_plural(&gvk, self.plural)
    }
}

/// Every kind the cluster source watches.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Namespace,
        group: "",
        version: "v1",
        plural: "namespaces",
        crd: false,
    },
    KindInfo {
        kind: Kind::Service,
        group: "",
        version: "v1",
        plural: "services",
        crd: false,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        crd: false,
    },
    KindInfo {
        kind: Kind::Secret,
        group: "",
        version: "v1",
        plural: "secrets",
        crd: false,
    },
    KindInfo {
        kind: Kind::ConfigMap,
        group: "",
        version: "v1",
        plural: "configmaps",
        crd: false,
    },
    KindInfo {
        kind: Kind::GatewayClass,
        group: GATEWAY_GROUP,
        version: "v1",
        plural: "gatewayclasses",
        crd: true,
    },
    KindInfo {
        kind: Kind::Gateway,
        group: GATEWAY_GROUP,
        version: "v1",
        plural: "gateways",
        crd: true,
    },
    KindInfo {
        kind: Kind::HttpRoute,
        group: GATEWAY_GROUP,
        version: "v1",
        plural: "httproutes",
        crd: true,
    },
    KindInfo {
        kind: Kind::TlsRoute,
        group: GATEWAY_GROUP,
        version: "v1",
        plural: "tlsroutes",
        crd: true,
    },
    KindInfo {
        kind: Kind::ReferenceGrant,
        group: GATEWAY_GROUP,
        version: "v1beta1",
        plural: "referencegrants",
        crd: true,
    },
    KindInfo {
        kind: Kind::BackendTlsPolicy,
        group: GATEWAY_GROUP,
        version: "v1",
        plural: "backendtlspolicies",
        crd: true,
    },
    KindInfo {
        kind: Kind::Ingress,
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        crd: false,
    },
    KindInfo {
        kind: Kind::IngressClass,
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingressclasses",
        crd: false,
    },
];

/// Where a kind of ours lives in the API (see [`KINDS`]).
pub fn kind_info(kind: Kind) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Cluster-mode options.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Namespaces the namespaced kinds are watched in (empty: all).
    pub watch_namespaces: Vec<String>,
    /// The address Gateways without an IP in `spec.addresses` bind (shared); `None`:
    /// each gets one of the address pool, as in folder mode.
    pub gateway_bind_address: Option<std::net::IpAddr>,
}

/// What [`run_kube`] gives the binary.
#[derive(Debug, Clone)]
pub struct KubeHandle {
    /// The latest config (generation 0 until every watcher had its first sync).
    pub config: watch::Receiver<Arc<Config>>,
    /// The latest statuses.
    pub status: watch::Receiver<Arc<StatusReport>>,
    /// Rebuilds done.
    pub reloads: Arc<AtomicU64>,
    /// True once every watcher had its first full list.
    pub synced: watch::Receiver<bool>,
    /// Notices of the last rebuild (for Events).
    pub notices: watch::Receiver<Arc<Vec<crate::Notice>>>,
}

/// One watch stream: a kind, in one namespace or all.
type StreamId = (Kind, String);

#[derive(Debug, Default)]
struct StreamState {
    synced: bool,
    objects: BTreeMap<ObjectKey, RawObject>,
}

#[derive(Debug, Default)]
struct Shared {
    streams: BTreeMap<StreamId, StreamState>,
}

impl Shared {
    fn all_synced(&self) -> bool {
        self.streams.values().all(|s| s.synced)
    }
}

/// Starts one watcher per kind (and watched namespace) and the rebuild task. Returns at
/// once; the config is published when every watcher had its first sync. Must be called
/// inside a tokio runtime.
pub async fn run_kube(
    client: kube::Client,
    settings: Settings,
    opts: KubeOptions,
    applied: watch::Receiver<Applied>,
) -> Result<KubeHandle> {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let notify = Arc::new(Notify::new());
    let mut streams = Vec::new();
    for info in KINDS {
        if info.kind.namespaced() && !opts.watch_namespaces.is_empty() {
            for ns in &opts.watch_namespaces {
                streams.push((*info, Some(ns.clone())));
            }
        } else {
            streams.push((*info, None));
        }
    }
    {
        let mut s = shared.lock();
        for (info, ns) in &streams {
            s.streams.insert(
                (info.kind, ns.clone().unwrap_or_default()),
                Default::default(),
            );
        }
    }
    for (info, ns) in streams {
        tokio::spawn(watch_stream(
            client.clone(),
            info,
            ns,
            shared.clone(),
            notify.clone(),
        ));
    }

    let mut pipeline = Pipeline::new(settings)
        .with_server_metadata()
        .with_shared_address(opts.gateway_bind_address);
    pipeline.set_applied(applied.borrow().clone(), chrono::Utc::now());
    let (config_tx, config_rx) = watch::channel(pipeline.config());
    let (status_tx, status_rx) = watch::channel(pipeline.status());
    let (synced_tx, synced_rx) = watch::channel(false);
    let (notices_tx, notices_rx) = watch::channel(Arc::new(Vec::new()));
    let reloads = Arc::new(AtomicU64::new(0));
    let task_reloads = reloads.clone();
    let mut applied = applied;
    tokio::spawn(async move {
        let mut applied_open = true;
        loop {
            tokio::select! {
                _ = notify.notified() => {
                    // Debounce: wait until the watchers are quiet (bounded by 1 s).
                    let start = tokio::time::Instant::now();
                    while start.elapsed() < Duration::from_secs(1)
                        && tokio::time::timeout(DEBOUNCE, notify.notified()).await.is_ok()
                    {}
                }
                r = applied.changed(), if applied_open => {
                    match r {
                        Ok(()) => {
                            let a = applied.borrow_and_update().clone();
                            if pipeline.set_applied(a, chrono::Utc::now()) {
                                status_tx.send_replace(pipeline.status());
                            }
                        }
                        Err(_) => applied_open = false,
                    }
                    continue;
                }
            }
            let objects: Vec<RawObject> = {
                let s = shared.lock();
                if !s.all_synced() {
                    let waiting: Vec<String> = s
                        .streams
                        .iter()
                        .filter(|(_, st)| !st.synced)
                        .map(|((k, ns), _)| {
                            format!(
                                "{}{}{}",
                                k.name(),
                                if ns.is_empty() { "" } else { " in " },
                                ns
                            )
                        })
                        .collect();
                    tracing::debug!(?waiting, "waiting for the first sync of every watcher");
                    continue;
                }
                s.streams
                    .values()
                    .flat_map(|st| st.objects.values().cloned())
                    .collect()
            };
            let first = !*synced_tx.borrow();
            let update = pipeline.rebuild(objects.iter(), chrono::Utc::now());
            task_reloads.fetch_add(1, Ordering::Relaxed);
            if update.config_changed {
                tracing::info!(
                    generation = pipeline.config().generation,
                    objects = objects.len(),
                    "cluster objects changed: new configuration"
                );
                config_tx.send_replace(pipeline.config());
            }
            if update.status_changed {
                status_tx.send_replace(pipeline.status());
            }
            if **notices_tx.borrow() != pipeline.notices() {
                notices_tx.send_replace(Arc::new(pipeline.notices().to_vec()));
            }
            if first {
                tracing::info!(objects = objects.len(), "every watcher synced");
                synced_tx.send_replace(true);
            }
        }
    });
    Ok(KubeHandle {
        config: config_rx,
        status: status_rx,
        reloads,
        synced: synced_rx,
        notices: notices_rx,
    })
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn watcher_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => is_not_found(e),
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}

/// Converts a watched object into a [`RawObject`] (apiVersion/kind set, managedFields
/// dropped); `None` for an object without a name.
fn to_raw(info: &KindInfo, obj: DynamicObject) -> Option<RawObject> {
    let mut value = serde_json::to_value(&obj).ok()?;
    let m = value.as_object_mut()?;
    m.insert("apiVersion".into(), Value::String(info.api_version()));
    m.insert("kind".into(), Value::String(info.kind.name().to_string()));
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let name = obj.metadata.name.clone()?;
    let namespace = if info.kind.namespaced() {
        obj.metadata.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    Some(RawObject {
        kind: info.kind,
        key: ObjectKey { namespace, name },
        value,
        line: 0,
    })
}

/// Runs one stream forever: CRD presence check (Gateway API kinds), then the watcher.
async fn watch_stream(
    client: kube::Client,
    info: KindInfo,
    ns: Option<String>,
    shared: Arc<Mutex<Shared>>,
    notify: Arc<Notify>,
) {
    let id: StreamId = (info.kind, ns.clone().unwrap_or_default());
    let ar = info.api_resource();
    let api: Api<DynamicObject> = match (&ns, info.kind.namespaced()) {
        (Some(ns), true) => Api::namespaced_with(client, ns, &ar),
        _ => Api::all_with(client, &ar),
    };
    let mut warned_missing = false;
    loop {
        if info.crd {
            match api.list_metadata(&ListParams::default().limit(1)).await {
                Ok(_) => {
                    if warned_missing {
                        tracing::info!(kind = info.kind.name(), "CRD installed: watching it");
                        warned_missing = false;
                    }
                }
                Err(e) if is_not_found(&e) => {
                    if !warned_missing {
                        tracing::warn!(
                            kind = info.kind.name(),
                            api_version = %info.api_version(),
                            "CRD not installed: kind skipped until it appears"
                        );
                        warned_missing = true;
                    }
                    let changed = {
                        let mut s = shared.lock();
                        let st = s.streams.entry(id.clone()).or_default();
                        let changed = !st.synced || !st.objects.is_empty();
                        st.synced = true;
                        st.objects.clear();
                        changed
                    };
                    if changed {
                        notify.notify_one();
                    }
                    tokio::time::sleep(CRD_POLL).await;
                    continue;
                }
                Err(e) => {
                    // The API server is unreachable: keep what we have, try again.
                    tracing::debug!(kind = info.kind.name(), error = %e, "CRD check failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut buffer: Option<BTreeMap<ObjectKey, RawObject>> = None;
        let mut errors_in_a_row = 0u32;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => {
                    errors_in_a_row = 0;
                    ev
                }
                Err(e) => {
                    if info.crd && watcher_not_found(&e) {
                        tracing::warn!(kind = info.kind.name(), "CRD gone: watch stopped");
                        break;
                    }
                    errors_in_a_row += 1;
                    // Log the first error of a run, then every 10th (backoff does the rest).
                    if errors_in_a_row == 1 || errors_in_a_row.is_multiple_of(10) {
                        tracing::warn!(
                            kind = info.kind.name(),
                            error = %e,
                            "watch error: backing off, then relisting (objects stay in service)"
                        );
                    }
                    continue;
                }
            };
            match ev {
                Event::Init => buffer = Some(BTreeMap::new()),
                Event::InitApply(o) => {
                    if let (Some(b), Some(raw)) = (buffer.as_mut(), to_raw(&info, o)) {
                        b.insert(raw.key.clone(), raw);
                    }
                }
                Event::InitDone => {
                    let objects = buffer.take().unwrap_or_default();
                    tracing::debug!(kind = info.kind.name(), objects = objects.len(), "listed");
                    let mut s = shared.lock();
                    let st = s.streams.entry(id.clone()).or_default();
                    st.objects = objects;
                    st.synced = true;
                    drop(s);
                    notify.notify_one();
                }
                Event::Apply(o) => {
                    if let Some(raw) = to_raw(&info, o) {
                        let mut s = shared.lock();
                        let st = s.streams.entry(id.clone()).or_default();
                        if st.objects.get(&raw.key).map(|old| &old.value) != Some(&raw.value) {
                            st.objects.insert(raw.key.clone(), raw);
                            drop(s);
                            notify.notify_one();
                        }
                    }
                }
                Event::Delete(o) => {
                    if let Some(raw) = to_raw(&info, o) {
                        let mut s = shared.lock();
                        let st = s.streams.entry(id.clone()).or_default();
                        if st.objects.remove(&raw.key).is_some() {
                            drop(s);
                            notify.notify_one();
                        }
                    }
                }
            }
        }
    }
}

/// Builds a client from the in-cluster config or `KUBECONFIG`, with `user_agent`.
pub async fn client(user_agent: &str) -> Result<kube::Client> {
    let mut config = kube::Config::infer().await.map_err(|e| Error::Kube {
        context: "reading the Kubernetes client configuration",
        source: Box::new(e),
    })?;
    if let Ok(v) = http::HeaderValue::from_str(user_agent) {
        config.headers.push((http::header::USER_AGENT, v));
    }
    kube::Client::try_from(config).map_err(|e| Error::Kube {
        context: "building the Kubernetes client",
        source: Box::new(e),
    })
}
