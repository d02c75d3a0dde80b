//! Runs the real `sluice` binary on a manifests folder.
//!
//! The binary is built once per test process (`$CARGO build -p sluice --bin sluice`, in
//! the profile the tests were built with, into the same target dir), or taken from
//! `SLUICE_BIN`. Each [`Sluice`] gets a free admin port, logs (stdout and stderr) to a
//! file under `<target>/e2e-logs/`, and is killed on drop; when the test is failing the
//! log's path and tail are printed.
//!
//! Every wait is a poll of a condition with a deadline, never a sleep that hopes.

use crate::client::{self, HttpClient};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often waits poll.
pub const POLL: Duration = Duration::from_millis(20);

/// A running `sluice run --manifests DIR`.
pub struct Sluice {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
    manifests: PathBuf,
}

impl Sluice {
    /// Starts the binary on `manifests` with a free admin port. Does not wait for
    /// readiness: see [`Sluice::wait_ready`].
    pub fn start(manifests: &Path) -> Sluice {
        Sluice::start_with_args(manifests, &[])
    }

    /// Like [`Sluice::start`], with extra command line arguments after `run`'s own.
    pub fn start_with_args(manifests: &Path, extra: &[&str]) -> Sluice {
        Sluice::start_on(manifests, free_local_port(), extra)
    }

    /// Like [`Sluice::start_with_args`] with the admin server on `admin`.
    pub fn start_on(manifests: &Path, admin: SocketAddr, extra: &[&str]) -> Sluice {
        let mut args: Vec<std::ffi::OsString> = vec!["--manifests".into(), manifests.into()];
        args.extend(extra.iter().map(Into::into));
        Sluice::spawn(manifests, admin, &args, &[])
    }

    /// Cluster mode: `sluice run` without `--manifests`, with `KUBECONFIG=kubeconfig`,
    /// `POD_NAME=pod` (the leader-election identity is `<pod>-<pid>`), the lease in
    /// namespace `default`, a free admin port and `extra` arguments.
    pub fn start_cluster(kubeconfig: &Path, pod: &str, extra: &[&str]) -> Sluice {
        let mut args: Vec<std::ffi::OsString> =
            vec!["--leader-election-namespace".into(), "default".into()];
        args.extend(extra.iter().map(Into::into));
        Sluice::spawn(
            kubeconfig,
            free_local_port(),
            &args,
            &[
                ("KUBECONFIG", kubeconfig.as_os_str()),
                ("POD_NAME", pod.as_ref()),
            ],
        )
    }

    fn spawn(
        source: &Path,
        admin: SocketAddr,
        args: &[std::ffi::OsString],
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Sluice {
        let bin = sluice_bin();
        let log = log_path();
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating log file {}: {e}", log.display()));
        let err = out.try_clone().expect("cloning the log file handle");
        let child = Command::new(bin)
            .arg("run")
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        eprintln!(
            "sluice pid {} admin {admin} source {} log {}",
            child.id(),
            source.display(),
            log.display()
        );
        Sluice {
            child,
            admin,
            log,
            manifests: source.to_owned(),
        }
    }

    /// Starts the binary and waits (up to 10 s) until `/readyz` answers 200.
    pub async fn start_ready(manifests: &Path) -> Sluice {
        let mut s = Sluice::start(manifests);
        s.wait_ready(Duration::from_secs(10)).await;
        s
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn manifests(&self) -> &Path {
        &self.manifests
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the binary logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log's tail) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "sluice exited ({status}); log {}:\n{}",
                self.log.display(),
                tail(&self.log(), 60)
            );
        }
    }

    /// Kills the process (SIGKILL) and reaps it: a crash, for failover tests.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (through `kill`) and waits up to `timeout` for the process to exit;
    /// returns its exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM {} failed", self.child.id());
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice still running {timeout:?} after SIGTERM; log:\n{}",
                tail(&self.log(), 40)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice still running after {timeout:?}; log:\n{}",
                tail(&self.log(), 40)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET` on the admin server (new connection each time).
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<client::Reply> {
        client::get(self.admin, &self.admin.to_string(), path).await
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            let last = match self.admin_get("/readyz").await {
                Ok(r) if r.status == 200 => return,
                Ok(r) => format!("{} {}", r.status, r.text()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                panic!(
                    "sluice not ready after {timeout:?} (last /readyz: {last}); log {}:\n{}",
                    self.log.display(),
                    tail(&self.log(), 60)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Value {
        self.admin_json("/status").await
    }

    /// `GET /config` as JSON.
    pub async fn config(&self) -> Value {
        self.admin_json("/config").await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let r = self
            .admin_get("/metrics")
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e:#}"));
        assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
        r.text()
    }

    /// The `generation` of the configuration `/config` shows.
    pub async fn config_generation(&self) -> u64 {
        let c = self.config().await;
        c["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("/config has no integer generation: {c}"))
    }

    async fn admin_json(&self, path: &str) -> Value {
        let r = self
            .admin_get(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.text()))
    }

    /// Polls `/status` until `pred` holds; returns that status. Panics with the last
    /// status seen after `timeout`.
    pub async fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            let status = self.status().await;
            if pred(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for status: {what}; last /status:\n{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the log until `pred` holds for some line; returns that line.
    pub async fn wait_log(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            if let Some(line) = self.log().lines().find(|l| pred(l)) {
                return line.to_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for a log line: {what}; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log(), 60)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls with a fresh client until `pred` holds for an answer from `addr`; returns it.
    pub async fn wait_reply(
        &mut self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&client::Reply) -> bool,
    ) -> client::Reply {
        let deadline = Instant::now() + timeout;
        let mut http = HttpClient::new(addr).with_timeout(Duration::from_secs(2));
        loop {
            self.assert_running();
            let last = match http.get(host, path).await {
                Ok(r) if pred(&r) => return r,
                Ok(r) => format!("{} {}", r.status, r.text()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                panic!(
                    "waited {timeout:?} for an expected answer to GET http://{host}{path} at {addr}; last: {last}\nlog {}:\n{}",
                    self.log.display(),
                    tail(&self.log(), 40)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- sluice log {} (last 80 lines) ----\n{}\n---- end of sluice log ----",
                self.log.display(),
                tail(&self.log(), 80)
            );
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// === status helpers ===

/// The object of `kind` `namespace/name` in a `/status` answer (`namespace` None for
/// cluster-scoped kinds).
pub fn find_object<'a>(
    status: &'a Value,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a Value> {
    status["objects"].as_array()?.iter().find(|o| {
        o["kind"] == kind
            && o["metadata"]["name"] == name
            && o["metadata"]["namespace"].as_str() == namespace
    })
}

/// The condition of type `type_` in a list of conditions.
pub fn condition<'a>(conditions: &'a Value, type_: &str) -> Option<&'a Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Whether `conditions` holds `type_` with `status` (and `reason`, when given).
pub fn has_condition(conditions: &Value, type_: &str, status: &str, reason: Option<&str>) -> bool {
    condition(conditions, type_)
        .is_some_and(|c| c["status"] == status && reason.is_none_or(|r| c["reason"] == r))
}

// === metrics ===

/// The sum of the samples of metric `name` whose labels include every `labels` pair
/// (`None` when there is no such sample), from Prometheus text.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all {
            if let Ok(v) = value.parse::<f64>() {
                *sum.get_or_insert(0.0) += v;
            }
        }
    }
    sum
}

// === binary and ports ===

/// The `sluice` binary: `SLUICE_BIN`, else built once per process.
pub fn sluice_bin() -> &'static Path {
    // The outcome, failure included, is kept: one build per process, not one per test.
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN.get_or_init(|| match std::env::var_os("SLUICE_BIN") {
        // A relative path is taken from the workspace root (where cargo is usually run),
        // not from the test's working directory (`e2e/`).
        Some(bin) => Ok(workspace_root().join(bin)),
        None => build_sluice(),
    });
    match bin {
        Ok(bin) => bin,
        Err(e) => panic!("{e}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives in the workspace")
        .to_owned()
}

/// `<target>/<profile>`: the folder holding this test executable's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("test executable folder");
    deps.parent().expect("profile folder").to_owned()
}

fn build_sluice() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = workspace_root();
    let profile_dir = profile_dir();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "sluice", "--bin", "sluice"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // The tests' target dir: CARGO_TARGET_DIR is inherited; without it, pass the one
    // this executable lives in, so the binary lands next to it.
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
    }
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("running {cargo:?} build -p sluice: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building sluice failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = profile_dir.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        return Err(format!("built sluice but {} does not exist", bin.display()));
    }
    eprintln!("built {} in {:?}", bin.display(), started.elapsed());
    Ok(bin)
}

/// A port on 127.0.0.1 free right now (bound, then released).
pub fn free_local_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local address")
}

fn log_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = profile_dir()
        .parent()
        .map(|t| t.join("e2e-logs"))
        .unwrap_or_else(|| std::env::temp_dir().join("sluice-e2e-logs"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let test = std::thread::current()
        .name()
        .unwrap_or("test")
        .replace("::", "-");
    dir.join(format!(
        "{test}-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}
