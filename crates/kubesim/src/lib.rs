//! A Kubernetes API server simulator for tests.
//!
//! [`Sim::start`] serves the Kubernetes REST API over plain HTTP on a local port, with
//! objects kept in memory as JSON. It speaks enough of the real API for `kubectl`
//! (`apply --server-side`, `get -o yaml`, `get -w`, `delete`) and for kube-rs clients
//! (list, watch with bookmarks and `410 Gone`, get, create, update, delete, merge and
//! JSON patches, server-side apply, the `status` subresource, Leases).
//!
//! ```no_run
//! use sluice_kubesim::{Sim, SimOptions};
//! let sim = Sim::start(SimOptions::default()).unwrap();
//! // point kubectl or a kube::Client at sim.kubeconfig_path()
//! sim.force_compaction(); // every open watch gets 410 Gone
//! sim.stop();             // outage: connections refused
//! sim.restart().unwrap(); // same port, same objects
//! ```
//!
//! Served kinds: core v1 Namespace, Service, Endpoints, Secret, ConfigMap, Event, Pod,
//! ServiceAccount; events.k8s.io/v1 Event; discovery.k8s.io/v1 EndpointSlice;
//! networking.k8s.io/v1 Ingress, IngressClass; coordination.k8s.io/v1 Lease; apps/v1
//! Deployment; policy/v1 PodDisruptionBudget; rbac.authorization.k8s.io/v1 roles and
//! bindings; apiextensions.k8s.io/v1 CustomResourceDefinition; and any kind a CRD
//! defines. The Gateway API kinds are CRDs installed at start unless
//! [`SimOptions::gateway_api`] is false; deleting a CRD removes its kind (404 on its paths, absent from discovery).
//!
//! See the crate README for the full list of behaviors and known gaps.

pub mod fields;
mod protobuf;
pub mod resources;
pub mod selectors;
mod server;
pub mod store;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::Value;

pub use resources::{gateway_api_crds, ResourceType, GATEWAY_GROUP};
pub use store::{ApiError, WriteOpts};

use store::State;

/// Options of a simulator.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Install the Gateway API CRDs at start.
    pub gateway_api: bool,
    /// Number of changes kept for watches resuming from a resourceVersion; older
    /// resourceVersions get `410 Gone`.
    pub max_history: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Where to write the kubeconfig; a temporary file when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces created at start.
    pub namespaces: Vec<String>,
    /// Reject Gateway API objects whose `spec` or `status` does not fit the schema
    /// (as a real API server does for CRDs), with `422 Invalid`.
    pub validate: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway_api: true,
            max_history: 10_000,
            bookmark_interval: Duration::from_secs(5),
            kubeconfig: None,
            namespaces: vec![
                "default".into(),
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
            validate: true,
        }
    }
}

impl SimOptions {
    /// Starts without the Gateway API CRDs.
    pub fn without_gateway_api(mut self) -> Self {
        self.gateway_api = false;
        self
    }
}

/// One request the simulator answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub content_type: String,
    pub user_agent: String,
    pub field_manager: Option<String>,
    pub watch: bool,
}

impl RequestRecord {
    /// True for a write (POST, PUT, PATCH, DELETE).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// True for a request on a `status` subresource.
    pub fn is_status(&self) -> bool {
        self.path.ends_with("/status")
    }
}

/// An injected failure: the next `times` requests that match answer `code` with a
/// `Status` body instead of being served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// HTTP method to match (`GET`, `PATCH`, ...); any when `None`.
    pub method: Option<String>,
    /// Substring of the path to match (`"/status"`, `"/httproutes"`, `""` for all).
    pub path_contains: String,
    /// Match only watches (`Some(true)`) or only non-watches (`Some(false)`).
    pub watch: Option<bool>,
    /// HTTP status to answer: 500, 503, 429 (sent with `Retry-After: 1`), 409, ...
    pub code: u16,
    /// How many requests fail.
    pub times: usize,
}

impl Fault {
    /// `times` requests with `method` on paths containing `path_contains` fail with `code`.
    pub fn new(method: &str, path_contains: &str, code: u16, times: usize) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path_contains: path_contains.to_string(),
            watch: None,
            code,
            times,
        }
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub log: Mutex<Vec<RequestRecord>>,
    pub faults: Mutex<Vec<Fault>>,
    pub opts: SimOptions,
    pub addr: Mutex<SocketAddr>,
}

struct ServerTask {
    shutdown: tokio::sync::watch::Sender<bool>,
    done: std::sync::mpsc::Receiver<()>,
}

/// The simulator entry point.
pub struct Sim;

impl Sim {
    /// Starts a simulator on its own runtime thread. Works from sync and async code.
    pub fn start(opts: SimOptions) -> anyhow::Result<SimHandle> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubesim")
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind(opts.addr)?;
        let addr = listener.local_addr()?;
        let (rv_tx, rv_rx) = tokio::sync::watch::channel(1u64);
        let mut state = State::new(opts.max_history.max(1), rv_tx);
        state.validate = opts.validate;
        let ns_type = state
            .find_type("", "v1", "namespaces")
            .expect("namespaces are built in");
        for ns in &opts.namespaces {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            state
                .put_object(&ns_type, obj)
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
        if opts.gateway_api {
            let crd_type = state
                .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                .expect("CRDs are built in");
            for crd in gateway_api_crds() {
                state
                    .put_object(&crd_type, crd)
                    .map_err(|e| anyhow::anyhow!(e.message))?;
            }
        }
        let (kubeconfig, tmp) = match &opts.kubeconfig {
            Some(p) => (p.clone(), None),
            None => {
                let dir = tempfile::Builder::new().prefix("kubesim-").tempdir()?;
                (dir.path().join("kubeconfig"), Some(dir))
            }
        };
        std::fs::write(&kubeconfig, kubeconfig_yaml(addr))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            opts,
            addr: Mutex::new(addr),
        });
        let handle = SimHandle {
            shared,
            runtime: Some(runtime),
            addr,
            server: Mutex::new(None),
            kubeconfig,
            _tmp: tmp,
            rv_rx,
        };
        handle.spawn_server(listener)?;
        Ok(handle)
    }
}

/// A kubeconfig for a plain-HTTP server with no authentication.
pub fn kubeconfig_yaml(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: http://{addr}
users:
- name: kubesim
  user: {{}}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
preferences: {{}}
"
    )
}

/// A running (or stopped) simulator. Dropping it stops the server.
pub struct SimHandle {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The address the simulator listens on (kept across restarts).
    pub addr: SocketAddr,
    server: Mutex<Option<ServerTask>>,
    kubeconfig: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    rv_rx: tokio::sync::watch::Receiver<u64>,
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    done: std::sync::mpsc::Sender<()>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                let _ = sock.set_nodelay(true);
                let shared = shared.clone();
                let mut sd = shutdown.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        server::handle(shared.clone(), req)
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(sock), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = sd.changed() => {}
                    }
                });
            }
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    let _ = done.send(());
}

impl SimHandle {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("runtime lives as long as the handle")
    }

    fn spawn_server(&self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        listener.set_nonblocking(true)?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let listener = {
            let _guard = self.runtime().enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        self.runtime()
            .spawn(serve(listener, self.shared.clone(), rx, done_tx));
        *self.server.lock() = Some(ServerTask {
            shutdown: tx,
            done: done_rx,
        });
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at the simulator (no authentication).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// True while the server accepts connections.
    pub fn is_running(&self) -> bool {
        self.server.lock().is_some()
    }

    /// Stops serving: the port is closed, open connections and watches are cut.
    /// Objects are kept. Idempotent.
    pub fn stop(&self) {
        let task = self.server.lock().take();
        if let Some(task) = task {
            let _ = task.shutdown.send(true);
            self.shared.state.lock().close_watches();
            let _ = task.done.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Serves again on the same port with the same objects (after [`stop`](Self::stop);
    /// restarts a running server).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("rebinding {}: {e}", self.addr);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.spawn_server(listener)
    }

    /// Forgets the change history: every open watch receives an `ERROR` event with a
    /// `410 Gone` Status and ends, and watches resuming from an earlier
    /// resourceVersion get `410 Gone`, so clients must relist.
    pub fn force_compaction(&self) {
        self.shared.state.lock().force_compaction();
    }

    /// Closes every open watch stream cleanly (clients resume from their last
    /// resourceVersion).
    pub fn close_watches(&self) {
        self.shared.state.lock().close_watches();
    }

    /// Number of open watch streams (closed ones are counted until the next change).
    pub fn open_watches(&self) -> usize {
        let mut state = self.shared.state.lock();
        state.watchers.retain(|w| !w.tx.is_closed());
        state.watchers.len()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().rv
    }

    /// The resource type designated by a kind, plural, singular or short name
    /// (optionally `name.group`).
    pub fn resource_type(&self, kind: &str) -> Option<ResourceType> {
        self.shared.state.lock().find_type_by_name(kind)
    }

    /// All objects of a kind (by kind, plural or short name), sorted by namespace and
    /// name; empty if the kind is unknown.
    pub fn objects(&self, kind: &str) -> Vec<Value> {
        let state = self.shared.state.lock();
        match state.find_type_by_name(kind) {
            Some(rt) => state.list(&rt, &Default::default()),
            None => Vec::new(),
        }
    }

    /// One object (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.state.lock();
        let rt = state.find_type_by_name(kind)?;
        let ns = if rt.namespaced { namespace } else { "" };
        state.get(&rt, ns, name).cloned()
    }

    fn type_of(state: &State, obj: &Value) -> Result<ResourceType, ApiError> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        state
            .types()
            .into_iter()
            .find(|t| t.kind == kind && t.group == group && t.serves(version))
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("no kind \"{kind}\" is registered for version \"{av}\""),
                )
            })
    }

    /// Creates or replaces an object as given, status included, bypassing
    /// resourceVersion checks and field ownership (no managedFields entry). Namespaced objects without a
    /// namespace go to `default`. Watches see the change.
    pub fn put(&self, obj: Value) -> Result<Value, ApiError> {
        let mut state = self.shared.state.lock();
        let rt = Self::type_of(&state, &obj)?;
        state.put_object(&rt, obj)
    }

    /// Creates or replaces several objects (see [`put`](Self::put)); a `List` or a
    /// YAML stream of documents is accepted by [`put_yaml`](Self::put_yaml).
    pub fn put_all(&self, objs: impl IntoIterator<Item = Value>) -> Result<Vec<Value>, ApiError> {
        objs.into_iter().map(|o| self.put(o)).collect()
    }

    /// Puts every document of a multi-document YAML string.
    pub fn put_yaml(&self, yaml: &str) -> anyhow::Result<Vec<Value>> {
        use serde::Deserialize;
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v = Value::deserialize(doc)?;
            if v.is_null() {
                continue;
            }
            let items = match v.get("items").and_then(Value::as_array) {
                Some(items) if v.get("kind").and_then(Value::as_str) == Some("List") => {
                    items.clone()
                }
                _ => vec![v],
            };
            for item in items {
                out.push(self.put(item).map_err(|e| anyhow::anyhow!(e.message))?);
            }
        }
        Ok(out)
    }

    /// Deletes an object regardless of finalizers; returns it if it existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut state = self.shared.state.lock();
        let rt = state.find_type_by_name(kind)?;
        let ns = if rt.namespaced { namespace } else { "" };
        state.force_delete(&rt, ns, name)
    }

    /// Installs a CustomResourceDefinition (its kind becomes served at once).
    pub fn install_crd(&self, crd: Value) -> Result<Value, ApiError> {
        self.put(crd)
    }

    /// Installs the Gateway API CRDs (no-op for those already present).
    pub fn install_gateway_api(&self) -> Result<(), ApiError> {
        for crd in gateway_api_crds() {
            let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
            if self.get("CustomResourceDefinition", "", &name).is_none() {
                self.put(crd)?;
            }
        }
        Ok(())
    }

    /// Deletes the CRD of one Gateway API kind (by kind or plural), with its objects.
    pub fn uninstall_crd(&self, kind: &str) -> Option<Value> {
        let rt = self.resource_type(kind)?;
        let crd = rt.crd_name?;
        self.delete("CustomResourceDefinition", "", &crd)
    }

    /// Deletes every Gateway API CRD, with their objects.
    pub fn uninstall_gateway_api(&self) {
        for crd in gateway_api_crds() {
            let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
            self.delete("CustomResourceDefinition", "", &name);
        }
    }

    /// Makes matching requests fail (see [`Fault`]); rules are tried in order.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.faults.lock().push(fault);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().clear();
    }

    /// Waits (blocking) until the object exists and `cond` holds for it; returns it.
    pub fn wait_for_object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let mut found = None;
        self.wait_for(timeout, |s| {
            found = s.get(kind, namespace, name).filter(|o| cond(o));
            found.is_some()
        });
        found
    }

    /// Async [`wait_for_object`](Self::wait_for_object).
    pub async fn wait_for_object_async(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let ok = self
            .wait_for_async(timeout, |s| {
                s.get(kind, namespace, name).is_some_and(|o| cond(&o))
            })
            .await;
        if ok {
            self.get(kind, namespace, name)
        } else {
            None
        }
    }

    /// Every request answered so far, oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().clone()
    }

    pub fn clear_request_log(&self) {
        self.shared.log.lock().clear();
    }

    /// Waits (blocking the calling thread) until `cond` holds; false on timeout.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&SimHandle) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `cond` holds, re-checking after each change and every 50 ms;
    /// false on timeout. Usable from any tokio runtime.
    pub async fn wait_for_async(
        &self,
        timeout: Duration,
        cond: impl Fn(&SimHandle) -> bool,
    ) -> bool {
        let mut rx = self.rv_rx.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().take() {
            let _ = task.shutdown.send(true);
        }
        self.shared.state.lock().close_watches();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SimHandle>();
    }

    #[test]
    fn stop_closes_the_port_and_restart_reopens_it() {
        let sim = Sim::start(SimOptions::default()).unwrap();
        assert!(std::net::TcpStream::connect(sim.addr).is_ok());
        sim.stop();
        assert!(std::net::TcpStream::connect(sim.addr).is_err());
        sim.restart().unwrap();
        assert!(std::net::TcpStream::connect(sim.addr).is_ok());
        let kc = std::fs::read_to_string(sim.kubeconfig_path()).unwrap();
        assert!(kc.contains(&format!("server: http://{}", sim.addr)));
    }
}
