//! `reload` (route change latency under load), `memory` (RSS, rebuild CPU) and
//! `coldstart` (process start to `/readyz`) benches.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{
    cpu_seconds, cpu_seconds_precise, fmt_ms, free_port, http_get, metric, own_loopback,
    percentile, status_kb, wait_status, write_atomic, Opts, Report, Sluice,
};
use crate::bench_gen::{self, Layout, Tls};
use crate::bench_proxy::{start_backend, LOAD_CPU, PROXY_CPU};

/// Pins this process (all its threads, and the ones it starts later) to the load core.
fn pin_self_to_load_core() {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", LOAD_CPU, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
}

fn sizes(opts: &Opts, full: &[usize], quick: &[usize]) -> Vec<usize> {
    opts.routes.clone().unwrap_or_else(|| {
        if opts.quick {
            quick.to_vec()
        } else {
            full.to_vec()
        }
    })
}

/// A folder with `n` routes and a running Sluice serving it.
struct Setup {
    sluice: Sluice,
    layout: Layout,
    dir: std::path::PathBuf,
    http: SocketAddr,
    ready_after: Duration,
}

fn setup(opts: &Opts, name: &str, n: usize, tls: Tls, backend_port: u16) -> Result<Setup> {
    let dir = opts.scratch(name)?;
    let ip = own_loopback(2);
    let layout = Layout {
        addr: ip.clone(),
        http_port: free_port(&ip)?,
        https_port: free_port(&ip)?,
        backend_port,
        routes: n,
        tls,
    };
    let t = Instant::now();
    bench_gen::write_folder(&dir, &layout)?;
    eprintln!(
        "  {name}: generated {n} routes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let log = opts.out.join("tmp").join(format!("{name}.log"));
    let mut sluice = Sluice::start(opts, &dir, Some(PROXY_CPU), 1, &log)?;
    let ready_after = sluice
        .wait_ready(Duration::from_secs(300))
        .with_context(|| format!("see {}", log.display()))?;
    let http: SocketAddr = format!("{ip}:{}", layout.http_port).parse()?;
    Ok(Setup {
        sluice,
        layout,
        dir,
        http,
        ready_after,
    })
}

/// Checks that the last route answers, over TLS too when it is a TLS route (with curl).
fn check_last_route(s: &Setup) -> Result<()> {
    let n = s.layout.routes;
    if n == 0 {
        return Ok(());
    }
    let plain = (0..n).rev().find(|i| !s.layout.tls.is_tls(*i));
    if let Some(i) = plain {
        wait_status(
            s.http,
            &bench_gen::host(i),
            "/",
            200,
            Duration::from_secs(10),
        )?;
    }
    if let Some(i) = (0..n).rev().find(|i| s.layout.tls.is_tls(*i)) {
        let host = bench_gen::host(i);
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "--resolve",
            ])
            .arg(format!("{host}:{}:{}", s.layout.https_port, s.layout.addr))
            .arg(format!("https://{host}:{}/", s.layout.https_port))
            .output();
        match out {
            Ok(o) if String::from_utf8_lossy(&o.stdout) == "200" => {}
            Ok(o) => bail!(
                "TLS route {host} answered {:?} over https",
                String::from_utf8_lossy(&o.stdout)
            ),
            Err(_) => eprintln!("  (curl not found: TLS route not checked)"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Load generator: keep-alive HTTP/1.1 connections sending GET / in a loop.

#[derive(Default)]
struct LoadStats {
    ok: AtomicU64,
    /// Non-200 answers and connections broken in the middle of an exchange.
    failed: AtomicU64,
    /// Connections the server closed between two exchanges (a client retries these).
    idle_closed: AtomicU64,
}

struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, hosts: Vec<String>, conns: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoadStats::default());
        let (s2, st2) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for c in 0..conns {
                    let host = hosts[c % hosts.len()].clone();
                    tasks.push(tokio::spawn(conn_loop(addr, host, s2.clone(), st2.clone())));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Load {
            stop,
            stats,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.stats.ok.load(Ordering::Relaxed),
            self.stats.failed.load(Ordering::Relaxed),
            self.stats.idle_closed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

enum Exchange {
    Ok { status: u16, keep: bool },
    IdleClosed,
}

async fn conn_loop(addr: SocketAddr, host: String, stop: Arc<AtomicBool>, stats: Arc<LoadStats>) {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let mut buf = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let mut s = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        while !stop.load(Ordering::Relaxed) {
            let r = tokio::time::timeout(Duration::from_secs(5), exchange(&mut s, &req, &mut buf))
                .await;
            match r {
                Ok(Ok(Exchange::Ok { status, keep })) => {
                    if status == 200 {
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if !keep {
                        break;
                    }
                }
                Ok(Ok(Exchange::IdleClosed)) => {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(_)) | Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

async fn exchange(
    s: &mut tokio::net::TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<Exchange> {
    s.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    // Headers.
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(Exchange::IdleClosed);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let keep = !head.contains("\r\nconnection: close");
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    // Body.
    loop {
        let body = &buf[head_end..];
        let done = match (length, chunked) {
            (Some(len), _) => body.len() >= len,
            (None, true) => find(body, b"0\r\n\r\n").is_some(),
            (None, false) => true,
        };
        if done {
            break;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Exchange::Ok { status, keep })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------
// reload

pub fn reload(opts: &Opts) -> Result<Report> {
    pin_self_to_load_core();
    let backend_port = free_port("127.0.0.1")?;
    let _backend = start_backend(opts, backend_port)?;
    let changes = if opts.quick { 20 } else { 100 };
    let mut r = Report::new(
        &format!("reload: new route (new file, temp + rename) to first 200, {changes} changes under 64 keep-alive connections, half the routes on TLS"),
        &["routes", "changes", "p50", "p99", "max", "requests during churn", "failed", "idle closes"],
    );
    let mut j = Vec::new();
    for n in sizes(opts, &[100, 1000, 10000], &[100]) {
        let s = setup(opts, &format!("reload-{n}"), n, Tls::Half, backend_port)?;
        check_last_route(&s)?;
        // Traffic on the plain routes.
        let hosts: Vec<String> = (0..n.max(1))
            .filter(|i| !s.layout.tls.is_tls(*i))
            .take(64)
            .map(bench_gen::host)
            .collect();
        let load = Load::start(s.http, hosts, 64);
        std::thread::sleep(Duration::from_millis(300));
        let mut lat = Vec::new();
        let mut timeouts = 0;
        // Stop early when changes are slow (the churn would take hours at 10,000
        // routes otherwise): the table says how many changes were made.
        let budget = if opts.quick {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(180)
        };
        let churn_start = Instant::now();
        let mut made = 0;
        for k in 0..changes {
            if churn_start.elapsed() > budget {
                break;
            }
            made += 1;
            let host = bench_gen::new_host(k);
            let path = s.dir.join("routes").join(format!("new-{k:05}.yaml"));
            let text = bench_gen::route_yaml(&format!("new{k}"), &host, None);
            let t0 = Instant::now();
            write_atomic(&path, &text)?;
            let served = loop {
                if let Ok((200, _)) = http_get(s.http, &host, "/", Duration::from_secs(2)) {
                    break true;
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    break false;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            if served {
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            } else {
                timeouts += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let (ok, failed, idle) = load.finish();
        lat.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
        );
        r.row(vec![
            n.to_string(),
            format!("{made}/{changes}"),
            fmt_ms(p50),
            fmt_ms(p99),
            fmt_ms(max),
            ok.to_string(),
            (failed + timeouts).to_string(),
            idle.to_string(),
        ]);
        j.push(json!({
            "routes": n, "changes": made, "changes_planned": changes, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "requests_ok": ok, "requests_failed": failed, "idle_closes": idle,
            "changes_not_served_in_10s": timeouts, "ready_after_ms": s.ready_after.as_secs_f64() * 1000.0,
        }));
        drop(s);
    }
    r.note("changes stop early after 180 s of churn (30 s with --quick): the changes column says how many were made");
    r.note("target: p99 <= 20 ms at 10,000 routes; failed must be 0 (non-200 answers, broken exchanges, changes not served within 10 s)");
    r.note("folder mode debounces file events (crates/controller/src/source/folder.rs DEBOUNCE): that delay is inside these figures");
    r.json = Value::Array(j);
    Ok(r)
}

// ---------------------------------------------------------------------------------
// memory

pub fn memory(opts: &Opts) -> Result<Report> {
    pin_self_to_load_core();
    let backend_port = free_port("127.0.0.1")?;
    let _backend = start_backend(opts, backend_port)?;
    let mut r = Report::new(
        "memory: RSS once ready (threads 1), and one rebuild (one route file changed) at the largest size",
        &["routes", "TLS", "VmRSS", "per route", "VmHWM", "rebuild CPU", "rebuild wall"],
    );
    let mut j = Vec::new();
    let list = sizes(opts, &[0, 1000, 10000], &[0, 100]);
    let largest = list.iter().copied().max().unwrap_or(0);
    let mut base_rss = None;
    for &n in &list {
        for tls in [Tls::None, Tls::All] {
            if n == 0 && tls == Tls::All {
                continue;
            }
            let name = format!(
                "memory-{n}-{}",
                if tls == Tls::All { "tls" } else { "plain" }
            );
            let s = setup(opts, &name, n, tls, backend_port)?;
            check_last_route(&s)?;
            std::thread::sleep(Duration::from_millis(500));
            let pid = s.sluice.proc.pid();
            let rss = status_kb(pid, "VmRSS").unwrap_or(0);
            if n == 0 {
                base_rss = Some(rss);
            }
            let per_route = match (base_rss, n) {
                (Some(b), n) if n > 0 => Some((rss.saturating_sub(b)) as f64 / n as f64),
                _ => None,
            };
            let rebuild = if n == largest && n > 0 {
                Some(rebuild(&s)?)
            } else {
                None
            };
            let hwm = status_kb(pid, "VmHWM").unwrap_or(0);
            r.row(vec![
                n.to_string(),
                if tls == Tls::All { "all" } else { "none" }.to_string(),
                format!("{:.1} MB", rss as f64 / 1024.0),
                per_route.map_or("-".into(), |p| format!("{p:.1} KB")),
                format!("{:.1} MB", hwm as f64 / 1024.0),
                rebuild.map_or("-".into(), |(cpu, _)| fmt_ms(cpu)),
                rebuild.map_or("-".into(), |(_, wall)| fmt_ms(wall)),
            ]);
            j.push(json!({
                "routes": n, "tls": tls == Tls::All, "vmrss_kb": rss, "vmhwm_kb": hwm,
                "kb_per_route_over_empty": per_route,
                "rebuild_cpu_ms": rebuild.map(|x| x.0), "rebuild_wall_ms": rebuild.map(|x| x.1),
                "ready_after_ms": s.ready_after.as_secs_f64() * 1000.0,
            }));
        }
    }
    r.note("per route = (RSS - RSS with 0 routes) / routes; target <= 5 KB per route, <= 60 MB at 10,000 routes with TLS");
    r.note("VmHWM is the peak RSS (read after the rebuild where there is one); rebuild CPU = CPU time of the process (the larger of its threads' schedstat and its utime+stime) from the file change until the new generation is applied, idle CPU subtracted");
    r.json = Value::Array(j);
    Ok(r)
}

/// Changes one route (path `/` → `/changed`) and measures the process CPU time and
/// wall time until the proxy applies the new generation. Returns (cpu ms, wall ms).
fn rebuild(s: &Setup) -> Result<(f64, f64)> {
    let pid = s.sluice.proc.pid();
    let admin = s.sluice.admin;
    let gen0 = metric(admin, "sluice_config_applied_generation")
        .context("no sluice_config_applied_generation in /metrics")?;
    // Idle CPU over one second, to subtract.
    let i0 = cpu_seconds_precise(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle_per_s = cpu_seconds_precise(pid) - i0;
    let path = bench_gen::route_file(&s.dir, 0);
    let text = std::fs::read_to_string(&path)?.replace("value: /\n", "value: /changed\n");
    let c0 = cpu_seconds_precise(pid);
    let ticks0 = cpu_seconds(pid);
    let t0 = Instant::now();
    write_atomic(&path, &text)?;
    let wall = loop {
        if metric(admin, "sluice_config_applied_generation").is_some_and(|g| g > gen0) {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!(
                "the change of {} was not applied within 120 s",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Let trailing work (status recomputation, old router drop) finish.
    std::thread::sleep(Duration::from_millis(300));
    let elapsed = t0.elapsed().as_secs_f64();
    // schedstat has ns resolution but forgets threads that exited; /proc/<pid>/stat
    // counts them, in 10 ms ticks: take the larger.
    let precise = cpu_seconds_precise(pid) - c0;
    let ticks = cpu_seconds(pid) - ticks0;
    let cpu = (precise.max(ticks) - idle_per_s * elapsed).max(0.0);
    Ok((cpu * 1000.0, wall.as_secs_f64() * 1000.0))
}

// ---------------------------------------------------------------------------------
// coldstart

pub fn coldstart(opts: &Opts) -> Result<Report> {
    pin_self_to_load_core();
    let backend_port = free_port("127.0.0.1")?;
    let _backend = start_backend(opts, backend_port)?;
    let n = sizes(opts, &[10000], &[100])
        .into_iter()
        .max()
        .unwrap_or(100);
    let mut r = Report::new(
        &format!("coldstart: process start to /readyz 200 with {n} objects in the folder (threads 1, pinned)"),
        &["objects", "ready after", "last object served at ready", "note"],
    );
    let mut j = serde_json::Map::new();

    // HTTPRoutes.
    {
        let dir = opts.scratch("coldstart-httproute")?;
        let ip = own_loopback(3);
        let layout = Layout {
            addr: ip.clone(),
            http_port: free_port(&ip)?,
            https_port: free_port(&ip)?,
            backend_port,
            routes: n,
            tls: Tls::None,
        };
        bench_gen::write_folder(&dir, &layout)?;
        let http: SocketAddr = format!("{ip}:{}", layout.http_port).parse()?;
        let log = opts.out.join("tmp/coldstart-httproute.log");
        let mut s = Sluice::start(opts, &dir, Some(PROXY_CPU), 1, &log)?;
        let ready = s.wait_ready(Duration::from_secs(300))?;
        let last = bench_gen::host(n - 1);
        let at_ready = http_get(http, &last, "/", Duration::from_secs(5))
            .map(|x| x.0)
            .unwrap_or(0);
        r.row(vec![
            format!("{n} HTTPRoutes"),
            fmt_ms(ready.as_secs_f64() * 1000.0),
            if at_ready == 200 {
                "yes".into()
            } else {
                format!("NO ({at_ready})")
            },
            String::new(),
        ]);
        j.insert(
            "httproute".into(),
            json!({ "objects": n, "ready_ms": ready.as_secs_f64() * 1000.0, "last_status_at_ready": at_ready }),
        );
    }

    // Ingresses.
    {
        let dir = opts.scratch("coldstart-ingress")?;
        bench_gen::write_ingress_folder(&dir, n, backend_port)?;
        let log = opts.out.join("tmp/coldstart-ingress.log");
        let mut s = Sluice::start(opts, &dir, Some(PROXY_CPU), 1, &log)?;
        let ready = s.wait_ready(Duration::from_secs(300))?;
        let served = ingresses_served(s.admin)?;
        let note = if served == 0 {
            "Ingress not served by this build".to_string()
        } else {
            format!("{served} Ingresses with a load balancer status")
        };
        r.row(vec![
            format!("{n} Ingresses"),
            fmt_ms(ready.as_secs_f64() * 1000.0),
            "not checked".into(),
            note.clone(),
        ]);
        j.insert(
            "ingress".into(),
            json!({ "objects": n, "ready_ms": ready.as_secs_f64() * 1000.0, "served": served, "note": note }),
        );
    }
    r.note("target: under 2 s with 10,000 Ingresses; readyz must not say 200 before the last object is served");
    r.json = Value::Object(j);
    Ok(r)
}

/// Ingress objects of `/status` whose `status.loadBalancer.ingress` is not empty.
fn ingresses_served(admin: SocketAddr) -> Result<usize> {
    let (code, body) = http_get(admin, "localhost", "/status", Duration::from_secs(30))?;
    if code != 200 {
        bail!("/status answered {code}");
    }
    let v: Value = serde_json::from_str(&body).context("parsing /status")?;
    Ok(v["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["kind"] == "Ingress")
        .filter(|o| {
            o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count())
}
