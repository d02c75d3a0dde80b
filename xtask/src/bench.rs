//! `cargo xtask bench [--quick] [--only NAME[,NAME...]]`: the benchmarks of issue 7.
//!
//! Benches: `proxy` (Sluice vs nginx, wrk), `router` (criterion, crates/proxy/benches),
//! `reload` (route change latency under load), `memory` (RSS, rebuild CPU) and
//! `coldstart` (process start to `/readyz`). Each prints a table; results are also
//! written to `target/bench/results.json`. See `docs/benchmarks.md`.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bench_proxy, bench_reload};

/// The benches, in run order.
pub const BENCHES: &[&str] = &["router", "proxy", "reload", "memory", "coldstart"];

/// Options shared by every bench.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Short measurements, small route counts: for development, not for figures.
    pub quick: bool,
    /// Workspace root.
    pub root: PathBuf,
    /// `target/bench`: results and scratch folders.
    pub out: PathBuf,
    /// Route counts overriding the defaults of reload/memory/coldstart (`--routes`).
    pub routes: Option<Vec<usize>>,
}

impl Opts {
    /// Length of one load measurement (wrk run, churn, ...).
    pub fn duration(&self) -> Duration {
        if self.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        }
    }

    /// A fresh scratch folder under `target/bench/tmp`.
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let dir = self.out.join("tmp").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The release binary.
    pub fn sluice_bin(&self) -> PathBuf {
        self.root.join("target/release/sluice")
    }
}

/// One bench's printed table and JSON results.
#[derive(Debug, Default)]
pub struct Report {
    /// Title line.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table (ratios, notes).
    pub notes: Vec<String>,
    /// Machine-readable results.
    pub json: Value,
}

impl Report {
    pub fn new(title: &str, columns: &[&str]) -> Report {
        Report {
            title: title.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            json: json!({}),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// The table as Markdown (so it can be pasted into docs/benchmarks.md).
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.len());
                }
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(&format!(" {cell:<w$} |"));
            }
            s.push('\n');
            s
        };
        let mut out = format!("\n## {}\n\n", self.title);
        out.push_str(&line(&self.columns));
        let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&sep));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }
}

/// Entry point of `cargo xtask bench`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut only: Option<Vec<String>> = None;
    let mut routes = None;
    let mut build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--no-build" => build = false,
            "--only" => {
                let v = it.next().context("--only needs a bench name")?;
                only = Some(v.split(',').map(str::to_string).collect());
            }
            "--routes" => {
                let v = it.next().context("--routes needs a list like 100,1000")?;
                let list: Result<Vec<usize>, _> = v.split(',').map(str::parse).collect();
                routes = Some(list.context("--routes: not a list of numbers")?);
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask bench [--quick] [--only {}] [--routes N,N] [--no-build]",
                    BENCHES.join(",")
                );
                return Ok(());
            }
            other => bail!("unknown bench option {other:?} (try --help)"),
        }
    }
    if let Some(only) = &only {
        for name in only {
            if !BENCHES.contains(&name.as_str()) {
                bail!("unknown bench {name:?}: one of {}", BENCHES.join(", "));
            }
        }
    }
    let selected: Vec<&str> = BENCHES
        .iter()
        .copied()
        .filter(|b| only.as_ref().is_none_or(|o| o.iter().any(|n| n == b)))
        .collect();
    let opts = Opts {
        quick,
        root: root.to_path_buf(),
        out: root.join("target/bench"),
        routes,
    };
    std::fs::create_dir_all(&opts.out)?;

    ensure_tools(&selected)?;
    if build && selected.iter().any(|b| *b != "router") {
        build_release(root)?;
    }

    let machine = machine();
    eprintln!(
        "machine: {} cores, {}, kernel {}{}",
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        if quick {
            " (quick mode: figures are indicative only)"
        } else {
            ""
        }
    );
    let mut results = serde_json::Map::new();
    let mut failed = Vec::new();
    let mut rendered = String::new();
    for bench in &selected {
        eprintln!("== bench {bench}");
        let started = Instant::now();
        let report = match *bench {
            "router" => bench_proxy::router(&opts),
            "proxy" => bench_proxy::proxy(&opts),
            "reload" => bench_reload::reload(&opts),
            "memory" => bench_reload::memory(&opts),
            "coldstart" => bench_reload::coldstart(&opts),
            _ => unreachable!(),
        };
        match report {
            Ok(report) => {
                let table = report.render();
                print!("{table}");
                rendered.push_str(&table);
                results.insert(bench.to_string(), report.json);
            }
            Err(e) => {
                eprintln!("bench {bench} failed: {e:#}");
                results.insert(bench.to_string(), json!({ "error": format!("{e:#}") }));
                failed.push(*bench);
            }
        }
        eprintln!("   ({bench}: {:.1} s)", started.elapsed().as_secs_f64());
    }
    let all = json!({
        "quick": quick,
        "machine": machine,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "benches": results,
    });
    let path = opts.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&all)? + "\n")?;
    std::fs::write(opts.out.join("results.md"), rendered)?;
    eprintln!("wrote {} and results.md", path.display());
    if !failed.is_empty() {
        bail!("benches failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `nproc`, CPU model and kernel, for the results and the docs.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "nproc": nproc, "cpu": cpu, "kernel": kernel })
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs nginx and wrk with apt-get when a bench needs them and they are missing.
fn ensure_tools(selected: &[&str]) -> Result<()> {
    let mut need = Vec::new();
    if selected.iter().any(|b| *b != "router") {
        if !have("nginx") && !Path::new("/usr/sbin/nginx").exists() {
            need.push("nginx-light");
        }
        if selected.contains(&"proxy") && !have("wrk") {
            need.push("wrk");
        }
    }
    if !have("taskset") {
        bail!("taskset (util-linux) is required");
    }
    if need.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} with apt-get", need.join(" "));
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&need)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let updated = Command::new("apt-get").args(["update", "-q"]).status()?;
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(&need)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        if !updated.success() || !status.success() {
            bail!("apt-get install {} failed", need.join(" "));
        }
    }
    Ok(())
}

fn build_release(root: &Path) -> Result<()> {
    let status = Command::new(crate::cargo())
        .args(["build", "--release", "-p", "sluice"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("release build failed");
    }
    Ok(())
}

pub fn nginx_bin() -> String {
    if have("nginx") {
        "nginx".to_string()
    } else {
        "/usr/sbin/nginx".to_string()
    }
}

// ---------------------------------------------------------------------------------
// Processes

/// A child process killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub started: Instant,
}

impl Proc {
    /// Spawns `args` pinned to `cpu` with `taskset`; output goes to `log`.
    pub fn spawn(name: &str, cpu: Option<&str>, args: &[String], log: &Path) -> Result<Proc> {
        let logf = std::fs::File::create(log)?;
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).args(args);
                c
            }
            None => {
                let mut c = Command::new(&args[0]);
                c.args(&args[1..]);
                c
            }
        };
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("starting {name}: {args:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            started,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers: a SIGKILL would leave
    /// them running, holding the port), SIGKILL after 3 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of `pid` and its children processes, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let tick = 100.0; // USER_HZ: 100 on Linux for every mainstream architecture.
    let mut total = 0u64;
    let mut pids = vec![pid];
    let mut seen = 0;
    while seen < pids.len() {
        let p = pids[seen];
        seen += 1;
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command name (which is in parentheses and may hold spaces).
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15 of the full line, 12 and 13 here.
                let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
                let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
                total += ut + st;
            }
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
                    pids.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
    }
    total as f64 / tick
}

/// On-CPU time of the live threads of `pid`, in seconds, with nanosecond resolution
/// (`/proc/<pid>/task/*/schedstat`; threads that exited are not counted, so use it
/// over short intervals only). Falls back to [`cpu_seconds`] without schedstats.
pub fn cpu_seconds_precise(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return cpu_seconds(pid);
    };
    let mut ns = 0u64;
    let mut any = false;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            if let Some(v) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                ns += v;
                any = true;
            }
        }
    }
    if any {
        ns as f64 / 1e9
    } else {
        cpu_seconds(pid)
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A free TCP port on `ip` (bound then released: good enough on a dev machine).
pub fn free_port(ip: &str) -> Result<u16> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(l.local_addr()?.port())
}

/// A loopback address of our own (127.77.x.y), so that parallel runs of other tools
/// on the default pools do not collide with the benches.
pub fn own_loopback(index: u8) -> String {
    let salt = (std::process::id() % 200) as u8 + 20;
    format!("127.77.{salt}.{}", index.max(1))
}

// ---------------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client (one request per connection)

/// Sends `GET path` with `Host: host` to `addr` on a new connection and returns the
/// status code and body.
pub fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::with_capacity(1024);
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad response from {addr}: {text:.80}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `GET path` until it answers `want`; returns the time it took.
pub fn wait_status(
    addr: SocketAddr,
    host: &str,
    path: &str,
    want: u16,
    limit: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if let Ok((s, _)) = http_get(addr, host, path, Duration::from_secs(2)) {
            if s == want {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > limit {
            bail!("http://{addr}{path} (Host: {host}) did not answer {want} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A value of the admin `/metrics` (first sample of that name).
pub fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = http_get(admin, "localhost", "/metrics", Duration::from_secs(5)).ok()?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A running Sluice.
pub struct Sluice {
    pub proc: Proc,
    pub admin: SocketAddr,
}

impl Sluice {
    /// Starts the release binary on `manifests` pinned to `cpu`.
    pub fn start(
        opts: &Opts,
        manifests: &Path,
        cpu: Option<&str>,
        threads: usize,
        log: &Path,
    ) -> Result<Sluice> {
        let admin_port = free_port("127.0.0.1")?;
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse()?;
        let args: Vec<String> = vec![
            opts.sluice_bin().display().to_string(),
            "run".into(),
            "--manifests".into(),
            manifests.display().to_string(),
            "--admin-addr".into(),
            admin.to_string(),
            "--threads".into(),
            threads.to_string(),
            "--log-level".into(),
            "warn".into(),
        ];
        let proc = Proc::spawn("sluice", cpu, &args, log)?;
        Ok(Sluice { proc, admin })
    }

    /// Waits for `/readyz` 200; returns the time since the process started.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<Duration> {
        loop {
            if let Ok((200, _)) =
                http_get(self.admin, "localhost", "/readyz", Duration::from_secs(2))
            {
                return Ok(self.proc.started.elapsed());
            }
            self.proc.check_alive()?;
            if self.proc.started.elapsed() > limit {
                bail!("sluice not ready after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Writes `text` to `path` atomically: a temp file in the same folder, then rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("no parent")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn fmt_ms(d: f64) -> String {
    format!("{d:.1} ms")
}
