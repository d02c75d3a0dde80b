//! Request routing through the real binary: path (Exact, PathPrefix), headers (Exact),
//! hostnames, and 404 when nothing matches. Addresses: 127.77.2.<test>.

use sluice_e2e::manifests::{HttpRoute, Match, Rule, SERVICE_PORT};
use sluice_e2e::{test_addr, Fixture, HttpClient, Sluice, GATEWAY};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// `(host, path, headers, expected pod)`; `None`: a 404 from the gateway itself.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

/// Sends each case and checks the answering pod (`None`: a 404 that no echo server
/// produced). Reports every mismatch at once.
async fn check(c: &mut HttpClient, cases: &[Case<'_>]) {
    let mut bad = Vec::new();
    for (host, path, headers, want) in cases {
        let r = c
            .get_with(host, path, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e:#}"));
        let got = match want {
            Some(_) if r.status == 200 => r.pod(),
            None if r.status == 404 && r.echo().is_none() => None,
            _ => {
                bad.push(format!(
                    "GET http://{host}{path} {headers:?}: want {want:?}, got {} {}",
                    r.status,
                    r.text()
                ));
                continue;
            }
        };
        if got.as_deref() != *want {
            bad.push(format!(
                "GET http://{host}{path} {headers:?}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} requests routed wrong:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

/// Pins path matching: `Exact` matches the path only as written (no trailing slash, no
/// sub-path, query ignored); `PathPrefix` matches whole path segments (`/prefix`
/// matches `/prefix/x`, not `/prefixes`); the more specific match wins over `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_exact_and_prefix() {
    let fx = Fixture::new("routing-path", test_addr(2, 1), 18080);
    let _exact = fx.backend("exact").await;
    let _prefix = fx.backend("prefix").await;
    let _root = fx.backend("root").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "paths")
            .parent(GATEWAY)
            .rule(
                Rule::new()
                    .path_prefix("/")
                    .backend("root", SERVICE_PORT, None),
            )
            .rule(
                Rule::new()
                    .path_exact("/exact")
                    .backend("exact", SERVICE_PORT, None),
            )
            .rule(
                Rule::new()
                    .path_prefix("/prefix")
                    .backend("prefix", SERVICE_PORT, None),
            )
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "paths.example";
    s.wait_reply(fx.gateway_addr(), host, "/exact", T, |r| {
        r.pod().as_deref() == Some("exact-0")
    })
    .await;

    let mut c = HttpClient::new(fx.gateway_addr());
    check(
        &mut c,
        &[
            (host, "/exact", &[], Some("exact-0")),
            (host, "/exact?q=1", &[], Some("exact-0")),
            (host, "/exact/", &[], Some("root-0")),
            (host, "/exact/sub", &[], Some("root-0")),
            (host, "/exactly", &[], Some("root-0")),
            (host, "/prefix", &[], Some("prefix-0")),
            (host, "/prefix/", &[], Some("prefix-0")),
            (host, "/prefix/sub/deeper", &[], Some("prefix-0")),
            (host, "/prefix?x=y", &[], Some("prefix-0")),
            (host, "/prefixes", &[], Some("root-0")),
            (host, "/", &[], Some("root-0")),
            (host, "/other", &[], Some("root-0")),
        ],
    )
    .await;
    // The path reaches the backend unchanged.
    let r = c.get(host, "/prefix/sub?x=y").await.expect("GET");
    assert_eq!(r.echo().expect("echo").path, "/prefix/sub?x=y");
}

/// Pins header matching: Exact on the value (case-sensitive), the name compared
/// case-insensitively, several headers in one match ANDed, a rule's matches ORed, and a
/// request matching no header rule falls to the rule without headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_exact() {
    let fx = Fixture::new("routing-header", test_addr(2, 2), 18080);
    let _stable = fx.backend("stable").await;
    let _canary = fx.backend("canary").await;
    let _eu = fx.backend("eu").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "headers")
            .parent(GATEWAY)
            .rule(Rule::new().backend("stable", SERVICE_PORT, None))
            .rule(
                Rule::new()
                    .header("x-env", "canary")
                    .header("x-beta", "yes")
                    .backend("canary", SERVICE_PORT, None),
            )
            .rule(
                Rule::new()
                    .matching(
                        Match::new()
                            .header("x-env", "prod")
                            .header("x-region", "eu"),
                    )
                    .backend("eu", SERVICE_PORT, None),
            )
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let host = "headers.example";
    s.wait_reply(fx.gateway_addr(), host, "/", T, |r| {
        r.pod().as_deref() == Some("stable-0")
    })
    .await;

    let mut c = HttpClient::new(fx.gateway_addr());
    check(
        &mut c,
        &[
            (host, "/", &[], Some("stable-0")),
            (host, "/", &[("x-env", "canary")], Some("canary-0")),
            (host, "/", &[("X-ENV", "canary")], Some("canary-0")),
            (host, "/", &[("x-beta", "yes")], Some("canary-0")),
            (host, "/", &[("x-env", "Canary")], Some("stable-0")),
            (host, "/", &[("x-env", "canary-2")], Some("stable-0")),
            (host, "/", &[("x-env", "prod")], Some("stable-0")),
            (host, "/", &[("x-region", "eu")], Some("stable-0")),
            (
                host,
                "/",
                &[("x-env", "prod"), ("x-region", "eu")],
                Some("eu-0"),
            ),
            (
                host,
                "/x/y",
                &[("x-region", "eu"), ("x-env", "prod")],
                Some("eu-0"),
            ),
            (
                host,
                "/",
                &[("x-env", "prod"), ("x-region", "us")],
                Some("stable-0"),
            ),
        ],
    )
    .await;
}

/// Pins hostname matching: exact hostnames, a wildcard `*.wild.example` matching one or
/// more labels but not `wild.example` itself, the port in the Host header ignored, the
/// Host compared case-insensitively (RFC 9110 4.2.3), and 404 for a host no route names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_matching() {
    let fx = Fixture::new("routing-host", test_addr(2, 3), 18080);
    let _foo = fx.backend("foo").await;
    let _wild = fx.backend("wild").await;
    let _multi = fx.backend("multi").await;
    let route = |name: &str, hosts: &[&str], backend: &str| {
        let mut r = HttpRoute::new(&fx.ns, name).parent(GATEWAY);
        for h in hosts {
            r = r.hostname(h);
        }
        r.rule(Rule::new().backend(backend, SERVICE_PORT, None))
            .yaml()
    };
    fx.write("route-foo.yaml", &route("foo", &["foo.example"], "foo"));
    fx.write(
        "route-wild.yaml",
        &route("wild", &["*.wild.example"], "wild"),
    );
    fx.write(
        "route-multi.yaml",
        &route("multi", &["bar.example", "baz.example"], "multi"),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "foo.example", "/", T, |r| {
        r.pod().as_deref() == Some("foo-0")
    })
    .await;

    let mut c = HttpClient::new(fx.gateway_addr());
    check(
        &mut c,
        &[
            ("foo.example", "/", &[], Some("foo-0")),
            ("foo.example:18080", "/", &[], Some("foo-0")),
            ("FOO.Example", "/", &[], Some("foo-0")),
            ("A.Wild.Example", "/", &[], Some("wild-0")),
            ("a.wild.example", "/", &[], Some("wild-0")),
            ("a.b.wild.example", "/x", &[], Some("wild-0")),
            ("a.wild.example:18080", "/", &[], Some("wild-0")),
            ("bar.example", "/", &[], Some("multi-0")),
            ("baz.example", "/", &[], Some("multi-0")),
            ("wild.example", "/", &[], None),
            ("other.example", "/", &[], None),
            ("foo.example.other", "/", &[], None),
        ],
    )
    .await;
}

/// Pins 404 when nothing matches: a path outside every rule, and a host outside every
/// route's hostnames, get 404 from the gateway itself (no backend sees them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found() {
    let fx = Fixture::new("routing-404", test_addr(2, 4), 18080);
    let only = fx.backend("only").await;
    fx.write(
        "route.yaml",
        &HttpRoute::new(&fx.ns, "only")
            .parent(GATEWAY)
            .hostname("only.example")
            .rule(
                Rule::new()
                    .path_prefix("/only")
                    .backend("only", SERVICE_PORT, None),
            )
            .yaml(),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), "only.example", "/only", T, |r| {
        r.status == 200
    })
    .await;
    let before = only.requests();

    let mut c = HttpClient::new(fx.gateway_addr());
    check(
        &mut c,
        &[
            ("only.example", "/", &[], None),
            ("only.example", "/other", &[], None),
            ("only.example", "/onlyx", &[], None),
            ("else.example", "/only", &[], None),
            ("only.example", "/only/x", &[], Some("only-0")),
        ],
    )
    .await;
    assert_eq!(
        only.requests() - before,
        1,
        "only the matching request reaches the backend"
    );
}

/// Pins precedence across routes (Gateway API order): an Exact path beats any prefix,
/// a longer prefix beats a shorter one, more header matches beat fewer, whichever
/// route they are in; an exact hostname beats a wildcard one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_across_routes() {
    let fx = Fixture::new("routing-prec", test_addr(2, 5), 18080);
    let mut _backends = Vec::new();
    for b in ["exact", "long", "short", "hdr", "wild", "named"] {
        _backends.push(fx.backend(b).await);
    }
    let r = |name: &str, host: &str, rule: Rule| {
        HttpRoute::new(&fx.ns, name)
            .parent(GATEWAY)
            .hostname(host)
            .rule(rule)
            .yaml()
    };
    let h = "prec.example";
    fx.write(
        "a.yaml",
        &r(
            "a-short",
            h,
            Rule::new()
                .path_prefix("/api")
                .backend("short", SERVICE_PORT, None),
        ),
    );
    fx.write(
        "b.yaml",
        &r(
            "b-long",
            h,
            Rule::new()
                .path_prefix("/api/v1")
                .backend("long", SERVICE_PORT, None),
        ),
    );
    fx.write(
        "c.yaml",
        &r(
            "c-exact",
            h,
            Rule::new()
                .path_exact("/api/v1/x")
                .backend("exact", SERVICE_PORT, None),
        ),
    );
    fx.write(
        "d.yaml",
        &r(
            "d-hdr",
            h,
            Rule::new()
                .matching(
                    Match::new()
                        .path("PathPrefix", "/api")
                        .header("x-a", "1")
                        .header("x-b", "1"),
                )
                .backend("hdr", SERVICE_PORT, None),
        ),
    );
    fx.write(
        "e.yaml",
        &r(
            "e-wild",
            "*.example.org",
            Rule::new().backend("wild", SERVICE_PORT, None),
        ),
    );
    fx.write(
        "f.yaml",
        &r(
            "f-named",
            "www.example.org",
            Rule::new().backend("named", SERVICE_PORT, None),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    s.wait_reply(fx.gateway_addr(), h, "/api/v1/x", T, |r| {
        r.pod().as_deref() == Some("exact-0")
    })
    .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    check(
        &mut c,
        &[
            (h, "/api/v1/x", &[], Some("exact-0")),
            (
                h,
                "/api/v1/x",
                &[("x-a", "1"), ("x-b", "1")],
                Some("exact-0"),
            ),
            (h, "/api/v1/y", &[], Some("long-0")),
            (h, "/api/v1", &[], Some("long-0")),
            (h, "/api/v2", &[], Some("short-0")),
            (h, "/api", &[("x-a", "1"), ("x-b", "1")], Some("hdr-0")),
            (h, "/api/v2", &[("x-a", "1")], Some("short-0")),
            (
                h,
                "/api/v1/y",
                &[("x-a", "1"), ("x-b", "1")],
                Some("long-0"),
            ),
            ("www.example.org", "/", &[], Some("named-0")),
            ("w.example.org", "/", &[], Some("wild-0")),
            (h, "/", &[], None),
        ],
    )
    .await;
}
