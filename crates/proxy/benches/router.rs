//! Route selection cost on a config with 100 hosts × 10 routes (`cargo bench -p
//! sluice-proxy`): exact host, wildcard host with vhost fall-through, and a miss.

use criterion::{criterion_group, criterion_main, Criterion};
use sluice_ir as ir;
use sluice_proxy::router::{compile, normalize_host, RequestView};
use sluice_proxy::Metrics;
use std::hint::black_box;

fn config() -> ir::Config {
    let src = ir::Source::object("HTTPRoute", "default", "bench");
    let ok = ir::Action::Respond(ir::DirectResponse {
        status: 200,
        body: None,
    });
    let mut vhosts = Vec::new();
    for h in 0..100 {
        let routes = (0..10)
            .map(|r| ir::Route {
                name: format!("httproute/default/h{h}/rule/{r}/match/0"),
                source: src.clone(),
                matcher: ir::RouteMatch {
                    path: ir::PathMatch::Prefix(format!("/api/v{r}")),
                    headers: if r % 3 == 0 {
                        vec![ir::HeaderMatch {
                            name: "x-env".into(),
                            value: ir::StringMatch::Exact("canary".into()),
                        }]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                },
                filters: vec![],
                action: ok.clone(),
                timeouts: Default::default(),
            })
            .collect();
        vhosts.push(ir::VirtualHost {
            hostname: Some(ir::HostMatch::Exact(format!("host{h}.example.com"))),
            routes,
        });
    }
    vhosts.push(ir::VirtualHost {
        hostname: Some(ir::HostMatch::Wildcard("example.com".into())),
        routes: vec![ir::Route {
            name: "wildcard".into(),
            source: src.clone(),
            matcher: ir::RouteMatch::default(),
            filters: vec![],
            action: ok,
            timeouts: Default::default(),
        }],
    });
    ir::Config {
        generation: 1,
        listeners: vec![ir::Listener {
            name: "0.0.0.0:80".into(),
            address: "0.0.0.0".parse().expect("ip"),
            port: 80,
            protocol: ir::Protocol::Http,
            servers: vec![ir::Server {
                name: "gw".into(),
                source: src,
                hostname: None,
                tls: None,
                virtual_hosts: vhosts,
            }],
        }],
        certificates: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let (router, errors) = compile(&config(), &Metrics::default());
    assert!(errors.is_empty());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-env", http::HeaderValue::from_static("canary"));
    let method = http::Method::GET;
    let mut run = |name: &str, host: &'static str, path: &'static str| {
        c.bench_function(name, |b| {
            b.iter(|| {
                let host = normalize_host(black_box(host));
                let view = RequestView {
                    method: &method,
                    host: &host,
                    path: black_box(path),
                    query: None,
                    headers: &headers,
                };
                black_box(router.select(0, &view))
            })
        });
    };
    run(
        "select/exact-host-last-route",
        "host57.example.com:80",
        "/api/v9/users",
    );
    run(
        "select/fallthrough-to-wildcard",
        "host57.example.com",
        "/other",
    );
    run("select/miss", "nothing.org", "/");
}

criterion_group!(benches, bench);
criterion_main!(benches);
