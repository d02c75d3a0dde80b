//! `proxy` (Sluice vs nginx with wrk) and `router` (criterion) benches.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bench::{
    cpu_seconds, free_port, nginx_bin, own_loopback, wait_status, Opts, Proc, Report, Sluice,
};
use crate::bench_gen::{self, Layout, Tls};

/// Body of the backend's fixed answer.
pub const BACKEND_BODY: &str = "hello from the bench backend\n";

/// Core of the proxy under test; the load generator and the backend share the other.
pub const PROXY_CPU: &str = "0";
pub const LOAD_CPU: &str = "1";

// ---------------------------------------------------------------------------------
// nginx

fn nginx_main(prefix: &Path, events: &str, http: &str) -> String {
    let p = prefix.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nworker_rlimit_nofile 65536;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{\n{events}\n}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/client_body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n{http}\n}}\n"
    )
}

/// Starts nginx with `conf` under its own prefix, pinned to `cpu`.
pub fn start_nginx(name: &str, prefix: &Path, conf: &str, cpu: &str) -> Result<Proc> {
    std::fs::create_dir_all(prefix)?;
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let args = vec![
        nginx_bin(),
        "-p".into(),
        prefix.display().to_string(),
        "-c".into(),
        conf_path.display().to_string(),
        "-e".into(),
        prefix.join("error.log").display().to_string(),
    ];
    Proc::spawn(name, Some(cpu), &args, &prefix.join("stdout.log"))
}

/// The backend: nginx answering a fixed 200 on `127.0.0.1:port`, pinned to the load core.
pub fn start_backend(opts: &Opts, port: u16) -> Result<Proc> {
    let prefix = opts.scratch("nginx-backend")?;
    let http = format!(
        "  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{ return 200 \"{}\"; }}\n  }}",
        BACKEND_BODY.replace('\n', "\\n")
    );
    let conf = nginx_main(
        &prefix,
        "  worker_connections 16384;\n  multi_accept on;",
        &http,
    );
    let mut p = start_nginx("nginx-backend", &prefix, &conf, LOAD_CPU)?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_status(addr, "backend", "/", 200, Duration::from_secs(10))
        .or_else(|e| p.check_alive().and(Err(e)))?;
    Ok(p)
}

/// nginx as ingress-nginx renders one Ingress location (controller defaults; the Lua
/// balancer of ingress-nginx is replaced by a plain upstream with the same keepalive
/// settings, which makes this baseline cheaper than a real ingress-nginx).
fn ingress_nginx_conf(prefix: &Path, listen: &str, host: &str, backend_port: u16) -> String {
    let http = format!(
        r#"  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 1000;
  server_tokens off;
  reset_timedout_connection on;
  client_header_buffer_size 1k;
  large_client_header_buffers 4 8k;
  upstream upstream_balancer {{
    server 127.0.0.1:{backend_port};
    keepalive 320;
    keepalive_time 1h;
    keepalive_timeout 60s;
    keepalive_requests 10000;
  }}
  server {{
    server_name {host};
    listen {listen} backlog=4096;
    location / {{
      set $proxy_upstream_name "bench-backend-80";
      client_max_body_size 1m;
      proxy_set_header Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Scheme $scheme;
      proxy_set_header X-Scheme $scheme;
      proxy_set_header Connection "";
      proxy_connect_timeout 5s;
      proxy_send_timeout 60s;
      proxy_read_timeout 60s;
      proxy_buffering off;
      proxy_buffer_size 4k;
      proxy_buffers 4 4k;
      proxy_max_temp_file_size 1024m;
      proxy_request_buffering on;
      proxy_http_version 1.1;
      proxy_cookie_domain off;
      proxy_cookie_path off;
      proxy_next_upstream error timeout;
      proxy_next_upstream_timeout 0;
      proxy_next_upstream_tries 3;
      proxy_pass http://upstream_balancer;
      proxy_redirect off;
    }}
  }}"#
    );
    nginx_main(
        prefix,
        "  worker_connections 16384;\n  multi_accept on;\n  use epoll;",
        &http,
    )
}

// ---------------------------------------------------------------------------------
// wrk

/// What one wrk run measured.
#[derive(Debug, Clone, Default)]
pub struct Wrk {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

fn parse_latency(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

fn parse_wrk(out: &str) -> Result<Wrk> {
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let mut f = line.split_whitespace();
        match (f.next(), f.next()) {
            (Some("50%"), Some(v)) => w.p50_ms = parse_latency(v).unwrap_or(f64::NAN),
            (Some("99%"), Some(v)) => w.p99_ms = parse_latency(v).unwrap_or(f64::NAN),
            (Some("Requests/sec:"), Some(v)) => w.rps = v.parse().unwrap_or(0.0),
            (Some(n), Some("requests")) => w.requests = n.parse().unwrap_or(0),
            (Some("Non-2xx"), _) => {
                w.errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
            (Some("Socket"), Some("errors:")) => {
                for part in line.split(',') {
                    w.errors += part
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    if w.requests == 0 {
        bail!("could not read wrk's output:\n{out}");
    }
    Ok(w)
}

/// Runs wrk pinned to `cpu` against `url` with `conns` connections.
pub fn wrk(
    cpu: &str,
    url: &str,
    host: &str,
    conns: u32,
    dur: Duration,
    close: bool,
) -> Result<Wrk> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpu, "wrk", "-t1", "--latency"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", dur.as_secs().max(1)))
        .args(["--timeout", "5s", "-H"])
        .arg(format!("Host: {host}"));
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text)
}

// ---------------------------------------------------------------------------------
// proxy bench

struct Measured {
    wrk: Wrk,
    cpu_us: f64,
    /// Share of one core the proxy process used during the run.
    proxy_busy: f64,
    /// Busy share of core 0 and core 1 (all processes: shows other load on the machine,
    /// and whether the load core was the limit).
    core_busy: [f64; 2],
}

/// (busy, total) jiffies of cpu0 and cpu1 from `/proc/stat`.
fn core_times() -> [(u64, u64); 2] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut out = [(0, 0); 2];
    for (i, name) in ["cpu0 ", "cpu1 "].iter().enumerate() {
        if let Some(line) = stat.lines().find(|l| l.starts_with(name)) {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            out[i] = (total - idle, total);
        }
    }
    out
}

fn measure(pid: u32, url: &str, host: &str, dur: Duration, close: bool) -> Result<Measured> {
    let c0 = cpu_seconds(pid);
    let k0 = core_times();
    let t0 = std::time::Instant::now();
    let w = wrk(LOAD_CPU, url, host, 64, dur, close)?;
    let wall = t0.elapsed().as_secs_f64();
    let k1 = core_times();
    let c1 = cpu_seconds(pid);
    let cpu_us = (c1 - c0) * 1e6 / w.requests.max(1) as f64;
    let busy = |i: usize| {
        let total = k1[i].1.saturating_sub(k0[i].1).max(1) as f64;
        k1[i].0.saturating_sub(k0[i].0) as f64 / total
    };
    Ok(Measured {
        wrk: w,
        cpu_us,
        proxy_busy: (c1 - c0) / wall,
        core_busy: [busy(0), busy(1)],
    })
}

pub fn proxy(opts: &Opts) -> Result<Report> {
    let dur = opts.duration();
    let host = bench_gen::host(0);
    let backend_port = free_port("127.0.0.1")?;
    let _backend = start_backend(opts, backend_port)?;

    // Standalone capacity of the backend: wrk on the proxy core, backend on its own.
    let standalone = wrk(
        PROXY_CPU,
        &format!("http://127.0.0.1:{backend_port}/"),
        "backend",
        64,
        dur,
        false,
    )?;
    eprintln!("  backend alone: {:.0} req/s", standalone.rps);

    let ip = own_loopback(1);
    let mut results: Vec<(&str, Measured, Measured)> = Vec::new();

    // nginx as ingress-nginx renders it.
    {
        let port = free_port(&ip)?;
        let prefix = opts.scratch("nginx-proxy")?;
        let conf = ingress_nginx_conf(&prefix, &format!("{ip}:{port}"), &host, backend_port);
        let mut p = start_nginx("nginx-proxy", &prefix, &conf, PROXY_CPU)?;
        let addr: SocketAddr = format!("{ip}:{port}").parse()?;
        wait_status(addr, &host, "/", 200, Duration::from_secs(10))
            .or_else(|e| p.check_alive().and(Err(e)))?;
        let url = format!("http://{addr}/");
        let _ = wrk(LOAD_CPU, &url, &host, 64, Duration::from_secs(1), false)?; // warm-up
        let ka = measure(p.pid(), &url, &host, dur, false)?;
        let close = measure(p.pid(), &url, &host, dur, true)?;
        results.push(("nginx", ka, close));
    }

    // Sluice, one worker thread.
    {
        let dir = opts.scratch("proxy-manifests")?;
        let layout = Layout {
            addr: ip.clone(),
            http_port: free_port(&ip)?,
            https_port: 0,
            backend_port,
            routes: 1,
            tls: Tls::None,
        };
        bench_gen::write_folder(&dir, &layout)?;
        let mut s = Sluice::start(
            opts,
            &dir,
            Some(PROXY_CPU),
            1,
            &opts.out.join("tmp/proxy-sluice.log"),
        )?;
        s.wait_ready(Duration::from_secs(30))?;
        let addr: SocketAddr = format!("{ip}:{}", layout.http_port).parse()?;
        wait_status(addr, &host, "/", 200, Duration::from_secs(10))?;
        let url = format!("http://{addr}/");
        let _ = wrk(LOAD_CPU, &url, &host, 64, Duration::from_secs(1), false)?;
        let ka = measure(s.proc.pid(), &url, &host, dur, false)?;
        let close = measure(s.proc.pid(), &url, &host, dur, true)?;
        results.push(("sluice", ka, close));
    }

    let mut r = Report::new(
        &format!(
            "proxy: one core, wrk 64 connections, {} s per run (backend alone: {:.0} req/s)",
            dur.as_secs(),
            standalone.rps
        ),
        &[
            "proxy",
            "mode",
            "req/s",
            "p50",
            "p99",
            "CPU/req",
            "errors",
            "proxy CPU",
            "core0/core1 busy",
        ],
    );
    let mut j = serde_json::Map::new();
    j.insert("backend_standalone_rps".into(), json!(standalone.rps));
    for (name, ka, close) in &results {
        for (mode, m) in [("keep-alive", ka), ("conn-per-request", close)] {
            r.row(vec![
                name.to_string(),
                mode.to_string(),
                format!("{:.0}", m.wrk.rps),
                format!("{:.2} ms", m.wrk.p50_ms),
                format!("{:.2} ms", m.wrk.p99_ms),
                format!("{:.1} µs", m.cpu_us),
                m.wrk.errors.to_string(),
                format!("{:.0}%", m.proxy_busy * 100.0),
                format!(
                    "{:.0}%/{:.0}%",
                    m.core_busy[0] * 100.0,
                    m.core_busy[1] * 100.0
                ),
            ]);
            j.insert(
                format!("{name}/{mode}"),
                json!({
                    "rps": m.wrk.rps, "requests": m.wrk.requests, "p50_ms": m.wrk.p50_ms,
                    "p99_ms": m.wrk.p99_ms, "cpu_us_per_request": m.cpu_us, "errors": m.wrk.errors,
                    "proxy_cpu_share": m.proxy_busy, "core0_busy": m.core_busy[0], "core1_busy": m.core_busy[1],
                }),
            );
        }
    }
    let n = &results[0];
    let s = &results[1];
    for (mode, nm, sm) in [("keep-alive", &n.1, &s.1), ("conn-per-request", &n.2, &s.2)] {
        let ratio = json!({
            "rps": sm.wrk.rps / nm.wrk.rps,
            "p99": sm.wrk.p99_ms / nm.wrk.p99_ms,
            "cpu_per_request": sm.cpu_us / nm.cpu_us,
        });
        r.note(format!(
            "{mode}: Sluice/nginx req/s {:.2}x, p99 {:.2}x, CPU per request {:.2}x {}",
            ratio["rps"].as_f64().unwrap_or(f64::NAN),
            ratio["p99"].as_f64().unwrap_or(f64::NAN),
            ratio["cpu_per_request"].as_f64().unwrap_or(f64::NAN),
            if mode == "keep-alive" {
                "(target: req/s >= 1.10x, p99 <= 1.00x)"
            } else {
                ""
            }
        ));
        j.insert(format!("ratio/{mode}"), ratio);
    }
    if standalone.rps < 1.5 * results.iter().map(|x| x.1.wrk.rps).fold(0.0, f64::max) {
        r.note("warning: the backend alone is less than 1.5x the fastest proxy: it may be the bottleneck");
    }
    r.note("proxy CPU = the proxy's CPU time / wall time: below ~95% the proxy was not the limit (see core1 busy: wrk and the backend share it), so compare CPU/req rather than req/s; core0 busy above proxy CPU means other load on the machine");
    r.note("access log: off for nginx (access_log off), Sluice logs at warn level only (no access log)");
    r.json = Value::Object(j);
    Ok(r)
}

// ---------------------------------------------------------------------------------
// router bench

pub fn router(opts: &Opts) -> Result<Report> {
    let allocs_path = opts.out.join("router-allocs.json");
    let _ = std::fs::remove_file(&allocs_path);
    let crit_home = opts.out.join("criterion");
    let mut cmd = Command::new(crate::cargo());
    cmd.args(["bench", "-p", "sluice-proxy", "--bench", "router", "--"])
        .env("SLUICE_BENCH_ALLOCS", &allocs_path)
        .env("CRITERION_HOME", &crit_home)
        .current_dir(&opts.root);
    if opts.quick {
        cmd.args([
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "1",
            "--noplot",
        ]);
    } else {
        cmd.args(["--noplot"]);
    }
    let status = cmd.status().context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench -p sluice-proxy --bench router failed");
    }
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(&allocs_path)
            .with_context(|| format!("reading {}", allocs_path.display()))?,
    )?;
    let mut r = Report::new(
        "router: route selection (criterion mean), allocations per request",
        &["routes", "case", "time (mean)", "allocs/request"],
    );
    let mut out = Vec::new();
    for c in cases.as_array().into_iter().flatten() {
        let group = c["group"].as_str().unwrap_or_default();
        let id = c["id"].as_str().unwrap_or_default();
        let est = crit_home.join(group).join(id).join("new/estimates.json");
        let ns = std::fs::read_to_string(&est)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["mean"]["point_estimate"].as_f64());
        r.row(vec![
            c["routes"].to_string(),
            c["case"].as_str().unwrap_or_default().to_string(),
            match ns {
                None => "?".to_string(),
                Some(n) if group == "compile" => format!("{:.2} ms", n / 1e6),
                Some(n) => format!("{n:.1} ns"),
            },
            c["allocs_per_request"]
                .as_f64()
                .map_or("-".into(), |a| format!("{a:.2}")),
        ]);
        let mut c = c.clone();
        c["ns_per_request"] = json!(ns);
        out.push(c);
    }
    r.json = json!({ "cases": out });
    Ok(r)
}
