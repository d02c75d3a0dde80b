//! Route selection cost at 10, 1,000 and 10,000 routes (`cargo bench -p sluice-proxy
//! --bench router`, or `cargo xtask bench --only router`).
//!
//! Layout: one listener, one server, `routes / 10` virtual hosts of 10 routes each (2
//! hosts of 5 routes at 10 routes). Every tenth host (index ≡ 1 mod 10) is a wildcard
//! `*.w<j>.bench.example`, the others exact `h<j>.bench.example`. Per host, in
//! precedence order: exact paths, prefixes with header matches (exact and regex
//! values), plain prefixes, regex paths, then `/`.
//!
//! Besides criterion's timings, a counting `#[global_allocator]` counts heap
//! allocations per `select` (host normalization included); they are printed, and
//! written as JSON to `$SLUICE_BENCH_ALLOCS` when set (read by `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice_ir as ir;
use sluice_proxy::router::{compile, normalize_host, RequestView, Router};
use sluice_proxy::Metrics;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// --- allocation counting -----------------------------------------------------------

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// --- configuration -----------------------------------------------------------------

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn is_wildcard(j: usize) -> bool {
    j % 10 == 1
}

fn host_match(j: usize) -> ir::HostMatch {
    if is_wildcard(j) {
        ir::HostMatch::Wildcard(format!("w{j}.bench.example"))
    } else {
        ir::HostMatch::Exact(format!("h{j}.bench.example"))
    }
}

/// (hosts, routes per host) for `n` routes.
fn shape(n: usize) -> (usize, usize) {
    if n <= 10 {
        (2, n.div_ceil(2))
    } else {
        (n / 10, 10)
    }
}

fn header(name: &str, value: ir::StringMatch) -> ir::HeaderMatch {
    ir::HeaderMatch {
        name: name.into(),
        value,
    }
}

/// The matchers of one host's routes, in precedence order.
fn matchers(per_host: usize) -> Vec<ir::RouteMatch> {
    use ir::{PathMatch as P, StringMatch as S};
    let m = |path: P, headers: Vec<ir::HeaderMatch>| ir::RouteMatch {
        path,
        headers,
        ..Default::default()
    };
    if per_host <= 5 {
        return vec![
            m(P::Exact("/exact/0".into()), vec![]),
            m(
                P::Prefix("/api/v1".into()),
                vec![header("x-env", S::Exact("canary".into()))],
            ),
            m(P::Prefix("/api/v1".into()), vec![]),
            m(P::Regex("^/re/[a-z]+/[0-9]+$".into()), vec![]),
            m(P::Prefix("/".into()), vec![]),
        ];
    }
    vec![
        m(P::Exact("/exact/0".into()), vec![]),
        m(P::Exact("/exact/1".into()), vec![]),
        m(
            P::Prefix("/api/v1".into()),
            vec![header("x-env", S::Exact("canary".into()))],
        ),
        m(
            P::Prefix("/api/v1".into()),
            vec![header("x-user", S::Regex("^u[0-9]+$".into()))],
        ),
        m(P::Prefix("/api/v1".into()), vec![]),
        m(P::Prefix("/api/v2".into()), vec![]),
        m(P::Prefix("/static".into()), vec![]),
        m(P::Regex("^/item/[0-9]+/detail$".into()), vec![]),
        m(P::Regex("^/re/[a-z]+/[0-9]+$".into()), vec![]),
        m(P::Prefix("/".into()), vec![]),
    ]
}

fn config(n: usize) -> ir::Config {
    let (hosts, per_host) = shape(n);
    let action = ir::Action::Respond(ir::DirectResponse {
        status: 200,
        body: None,
    });
    let vhosts = (0..hosts)
        .map(|j| {
            let src = ir::Source::object("HTTPRoute", "bench", &format!("r{j}"));
            let routes = matchers(per_host)
                .into_iter()
                .enumerate()
                .map(|(r, matcher)| ir::Route {
                    name: format!("httproute/bench/r{j}/rule/{r}/match/0"),
                    source: src.clone(),
                    matcher,
                    filters: vec![],
                    action: action.clone(),
                    timeouts: Default::default(),
                    retry: None,
                })
                .collect();
            ir::VirtualHost {
                hostname: Some(host_match(j)),
                routes,
            }
        })
        .collect();
    ir::Config {
        generation: 1,
        listeners: vec![ir::Listener {
            name: "0.0.0.0:80".into(),
            address: "0.0.0.0".parse().expect("ip"),
            port: 80,
            protocol: ir::Protocol::Http,
            servers: vec![ir::Server {
                name: "gateway/bench/bench/http".into(),
                source: ir::Source::object("Gateway", "bench", "bench"),
                hostname: None,
                tls: None,
                passthrough: vec![],
                virtual_hosts: vhosts,
            }],
        }],
        certificates: Default::default(),
    }
}

// --- cases -------------------------------------------------------------------------

struct Case {
    name: &'static str,
    host: String,
    path: &'static str,
    headers: http::HeaderMap,
    /// Index of the route expected to answer inside its host (None: no route).
    expect: Option<usize>,
}

fn cases(n: usize) -> Vec<Case> {
    let (hosts, per_host) = shape(n);
    let exact = (hosts / 2) & !1; // even: never a wildcard
    let wild = ((hosts / 2).saturating_sub(1) / 10) * 10 + 1;
    assert!(!is_wildcard(exact) && is_wildcard(wild) && wild < hosts);
    let h = format!("h{exact}.bench.example");
    let w = format!("client{exact}.w{wild}.bench.example");
    let hm = |pairs: &[(&'static str, &'static str)]| {
        let mut m = http::HeaderMap::new();
        m.insert("user-agent", http::HeaderValue::from_static("bench/1.0"));
        m.insert("accept", http::HeaderValue::from_static("*/*"));
        for (k, v) in pairs {
            m.insert(*k, http::HeaderValue::from_static(v));
        }
        m
    };
    let big = per_host > 5;
    let mut v = vec![
        Case {
            name: "exact-host/exact-path",
            host: h.clone(),
            path: "/exact/0",
            headers: hm(&[]),
            expect: Some(0),
        },
        Case {
            name: "exact-host/prefix",
            host: h.clone(),
            path: "/api/v1/users/42",
            headers: hm(&[]),
            expect: Some(if big { 4 } else { 2 }),
        },
        Case {
            name: "exact-host/prefix+header",
            host: h.clone(),
            path: "/api/v1/users/42",
            headers: hm(&[("x-env", "canary")]),
            expect: Some(if big { 2 } else { 1 }),
        },
        Case {
            name: "exact-host/regex-path",
            host: h.clone(),
            path: "/re/abc/42",
            headers: hm(&[]),
            expect: Some(if big { 8 } else { 3 }),
        },
        Case {
            name: "exact-host/upper-case+port",
            host: format!("H{exact}.Bench.Example:8080"),
            path: "/api/v1/users/42",
            headers: hm(&[]),
            expect: Some(if big { 4 } else { 2 }),
        },
        Case {
            name: "wildcard-host/prefix",
            host: w,
            path: "/api/v1/users/42",
            headers: hm(&[]),
            expect: Some(if big { 4 } else { 2 }),
        },
        Case {
            name: "miss/unknown-host",
            host: "nothing.example.org".into(),
            path: "/",
            headers: hm(&[]),
            expect: None,
        },
    ];
    if big {
        v.insert(
            3,
            Case {
                name: "exact-host/prefix+header-regex",
                host: h,
                path: "/api/v1/users/42",
                headers: hm(&[("x-user", "u1234")]),
                expect: Some(3),
            },
        );
    }
    v
}

#[inline]
fn select(router: &Router, method: &http::Method, c: &Case) -> Option<usize> {
    let host = normalize_host(&c.host);
    let view = RequestView {
        method,
        host: &host,
        path: c.path,
        query: None,
        headers: &c.headers,
    };
    router.select(0, &view).map(|r| {
        let route = router.route(r);
        route.name.len() // touch the route, as the proxy does
    })
}

/// Route index inside its host, from the route name `.../rule/<r>/match/0`.
fn route_index(router: &Router, method: &http::Method, c: &Case) -> Option<usize> {
    let host = normalize_host(&c.host);
    let view = RequestView {
        method,
        host: &host,
        path: c.path,
        query: None,
        headers: &c.headers,
    };
    let r = router.select(0, &view)?;
    let name = &router.route(r).name;
    name.split('/').nth(4).and_then(|x| x.parse().ok())
}

fn bench(c: &mut Criterion) {
    let method = http::Method::GET;
    let mut allocs = Vec::new();
    for n in SIZES {
        let (router, errors) = compile(&config(n), &Metrics::default());
        assert!(errors.is_empty(), "{errors:?}");
        let group_name = format!("select_{n}");
        let mut group = c.benchmark_group(&group_name);
        for case in cases(n) {
            assert_eq!(
                route_index(&router, &method, &case),
                case.expect,
                "{n} routes, {}: wrong route",
                case.name
            );
            // Allocations per request.
            const REPS: u64 = 10_000;
            let before = ALLOCS.load(Ordering::Relaxed);
            for _ in 0..REPS {
                black_box(select(&router, &method, black_box(&case)));
            }
            let per = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / REPS as f64;
            println!(
                "allocations per request: {n} routes, {}: {per:.2}",
                case.name
            );
            let id = case.name.replace('/', "_");
            allocs.push(format!(
                "{{\"group\":\"{group_name}\",\"id\":\"{id}\",\"routes\":{n},\"case\":\"{}\",\"allocs_per_request\":{per}}}",
                case.name
            ));
            group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                b.iter(|| select(&router, &method, black_box(&case)))
            });
        }
        group.finish();
    }
    // Compile cost (the proxy's part of a full rebuild).
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        let cfg = config(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| compile(black_box(&cfg), &Metrics::default()))
        });
        allocs.push(format!(
            "{{\"group\":\"compile\",\"id\":\"{n}\",\"routes\":{n},\"case\":\"compile (whole router)\",\"allocs_per_request\":null}}"
        ));
    }
    group.finish();
    if let Some(path) = std::env::var_os("SLUICE_BENCH_ALLOCS") {
        let json = format!("[\n{}\n]\n", allocs.join(",\n"));
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("cannot write {}: {e}", path.to_string_lossy());
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
