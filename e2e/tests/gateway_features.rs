//! Gateway API HTTPRoute features through the real binary: RequestRedirect, URLRewrite,
//! header modifiers, query/method/regex matching, HTTPS listeners (termination, SNI,
//! 421, certificate rotation), timeouts, retries, RequestMirror and CORS.
//! Addresses: 127.77.30.<test>.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509};
use serde_json::{json, Value};
use sluice_e2e::manifests::{docs, SERVICE_PORT};
use sluice_e2e::{test_addr, Fixture, HttpClient, Reply, Sluice, GATEWAY};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const HTTPS_PORT: u16 = 18443;

fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).expect("yaml")
}

/// An HTTPRoute on Gateway `gw` with `hostnames` and raw `rules`.
fn route(ns: &str, name: &str, hostnames: &[&str], rules: Value) -> String {
    yaml(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": GATEWAY}],
            "hostnames": hostnames,
            "rules": rules,
        },
    }))
}

fn backend_ref(service: &str) -> Value {
    json!([{"name": service, "port": SERVICE_PORT}])
}

fn prefix(p: &str) -> Value {
    json!([{"path": {"type": "PathPrefix", "value": p}}])
}

fn location(r: &Reply) -> String {
    r.headers
        .get(http::header::LOCATION)
        .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
        .unwrap_or_default()
}

fn header(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<non-ascii>").to_owned())
}

/// Sends `method path` with `Host: host` and extra headers on `c`.
async fn send(
    c: &mut HttpClient,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    c.send(req)
        .await
        .unwrap_or_else(|e| panic!("{method} http://{host}{path}: {e:#}"))
}

/// Pins RequestRedirect: scheme+port (`https`, 8443), scheme alone (the well-known
/// port, left out of Location), hostname (port then taken from the listener), path
/// ReplaceFullPath and ReplacePrefixMatch (query kept), and statusCode 301 and 308
/// (default 302); the backend never sees a redirected request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_redirect() {
    let fx = Fixture::new("gf-redirect", test_addr(30, 1), 18080);
    let be = fx.backend("be").await;
    let redirect = |p: &str, r: Value| json!({"matches": prefix(p), "filters": [{"type": "RequestRedirect", "requestRedirect": r}]});
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "redirect",
            &["redirect.example"],
            json!([
                {"matches": prefix("/plain"), "backendRefs": backend_ref("be")},
                redirect("/scheme", json!({"scheme": "https", "port": 8443, "statusCode": 301})),
                redirect("/hostname", json!({"hostname": "new.example"})),
                redirect("/https-only", json!({"scheme": "https"})),
                redirect("/full", json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/replaced"}, "statusCode": 308})),
                redirect("/prefix/one", json!({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/two"}, "statusCode": 301})),
            ]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "redirect.example";
    s.wait_reply(fx.gateway_addr(), h, "/plain", T, |r| r.status == 200)
        .await;
    let before = be.requests();
    let mut c = HttpClient::new(fx.gateway_addr());
    let cases: &[(&str, u16, &str)] = &[
        ("/scheme/x", 301, "https://redirect.example:8443/scheme/x"),
        ("/hostname/y", 302, "http://new.example:18080/hostname/y"),
        ("/full/a/b", 308, "http://redirect.example:18080/replaced"),
        ("/prefix/one/x", 301, "http://redirect.example:18080/two/x"),
        ("/prefix/one", 301, "http://redirect.example:18080/two"),
        (
            "/prefix/one/x?q=1",
            301,
            "http://redirect.example:18080/two/x?q=1",
        ),
        (
            "/https-only/z",
            302,
            "https://redirect.example/https-only/z",
        ),
    ];
    let mut bad = Vec::new();
    for (path, status, want) in cases {
        let r = send(&mut c, Method::GET, h, path, &[]).await;
        if r.status.as_u16() != *status || location(&r) != *want {
            bad.push(format!(
                "GET {path}: want {status} {want}, got {} {:?}",
                r.status,
                location(&r)
            ));
        }
    }
    assert!(bad.is_empty(), "redirects wrong:\n{}", bad.join("\n"));
    assert_eq!(be.requests(), before, "redirects never reach the backend");
}

/// Pins URLRewrite: the hostname is rewritten to `rewritten.example` and a
/// ReplacePrefixMatch `/api` → `/v2` keeps the rest of the path and the query; what
/// the backend receives is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rewrite() {
    let fx = Fixture::new("gf-rewrite", test_addr(30, 2), 18080);
    let _be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "rewrite",
            &["rewrite.example"],
            json!([
                {"matches": prefix("/host"), "backendRefs": backend_ref("be"),
                 "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "rewritten.example"}}]},
                {"matches": prefix("/api"), "backendRefs": backend_ref("be"),
                 "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}]},
            ]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "rewrite.example";
    let r = s
        .wait_reply(fx.gateway_addr(), h, "/host/x", T, |r| r.status == 200)
        .await;
    let e = r.echo().expect("echo");
    assert_eq!(e.host, "rewritten.example", "{e:?}");
    assert_eq!(e.path, "/host/x", "{e:?}");
    let mut c = HttpClient::new(fx.gateway_addr());
    for (path, want) in [
        ("/api/users?id=1", "/v2/users?id=1"),
        ("/api", "/v2"),
        ("/api/", "/v2/"),
    ] {
        let r = send(&mut c, Method::GET, h, path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let e = r.echo().expect("echo");
        assert_eq!(e.path, want, "{path}: {e:?}");
        assert!(
            e.host.starts_with(h),
            "{path}: host unchanged without hostname rewrite: {e:?}"
        );
    }
}

/// Pins RequestHeaderModifier (set replaces, add appends, remove drops; the backend's
/// received headers are checked) and ResponseHeaderModifier (set/add/remove on the
/// backend's answer as the client sees it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers() {
    let fx = Fixture::new("gf-headers", test_addr(30, 3), 18080);
    let _be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "headers",
            &["headers.example"],
            json!([{
                "backendRefs": backend_ref("be"),
                "filters": [
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                        "set": [{"name": "X-Set", "value": "set-value"}],
                        "add": [{"name": "X-Add", "value": "added"}],
                        "remove": ["X-Remove"],
                    }},
                    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                        "set": [{"name": "X-Resp-Set", "value": "r-set"}],
                        "add": [{"name": "X-Resp-Add", "value": "r-add"}],
                        "remove": ["Content-Type"],
                    }},
                ],
            }]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "headers.example";
    s.wait_reply(fx.gateway_addr(), h, "/", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    let r = send(
        &mut c,
        Method::GET,
        h,
        "/",
        &[
            ("X-Set", "original"),
            ("X-Add", "client"),
            ("X-Remove", "gone"),
            ("X-Keep", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echo().expect("echo");
    assert_eq!(
        e.header("X-Set"),
        Some(&["set-value".to_string()][..]),
        "{e:?}"
    );
    let mut added: Vec<String> = e
        .header("X-Add")
        .unwrap_or_default()
        .iter()
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    added.sort();
    assert_eq!(added, ["added", "client"], "{e:?}");
    assert_eq!(e.header("X-Remove"), None, "{e:?}");
    assert_eq!(e.header("X-Keep"), Some(&["kept".to_string()][..]), "{e:?}");
    assert_eq!(header(&r, "x-resp-set").as_deref(), Some("r-set"));
    assert_eq!(header(&r, "x-resp-add").as_deref(), Some("r-add"));
    assert_eq!(header(&r, "content-type"), None, "{:?}", r.headers);
}

/// Pins matching by query parameter (Exact), method and RegularExpression path: each
/// selects its backend, and a request failing the condition falls to the default rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_method_regex_matching() {
    let fx = Fixture::new("gf-match", test_addr(30, 4), 18080);
    let mut _b = Vec::new();
    for b in ["dflt", "query", "method", "regex"] {
        _b.push(fx.backend(b).await);
    }
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "match",
            &["match.example"],
            json!([
                {"backendRefs": backend_ref("dflt")},
                {"matches": [{"queryParams": [{"type": "Exact", "name": "animal", "value": "whale"}]}],
                 "backendRefs": backend_ref("query")},
                {"matches": [{"method": "POST"}], "backendRefs": backend_ref("method")},
                {"matches": [{"path": {"type": "RegularExpression", "value": "/re/[0-9]+/x"}}],
                 "backendRefs": backend_ref("regex")},
            ]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "match.example";
    s.wait_reply(fx.gateway_addr(), h, "/?animal=whale", T, |r| {
        r.pod().as_deref() == Some("query-0")
    })
    .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    let cases: &[(Method, &str, &str)] = &[
        (Method::GET, "/?animal=whale", "query-0"),
        (Method::GET, "/a?x=1&animal=whale", "query-0"),
        (Method::GET, "/?animal=dolphin", "dflt-0"),
        (Method::GET, "/", "dflt-0"),
        (Method::POST, "/", "method-0"),
        (Method::PUT, "/", "dflt-0"),
        (Method::GET, "/re/123/x", "regex-0"),
        (Method::GET, "/re/abc/x", "dflt-0"),
        (Method::GET, "/re/123/xy", "dflt-0"),
    ];
    let mut bad = Vec::new();
    for (m, path, want) in cases {
        let r = send(&mut c, m.clone(), h, path, &[]).await;
        if r.pod().as_deref() != Some(*want) {
            bad.push(format!(
                "{m} {path}: want {want}, got {} {}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(bad.is_empty(), "routed wrong:\n{}", bad.join("\n"));
}

/// Pins `timeouts.request: 500ms`: a backend answering after 2 s gets the client a 504
/// from the gateway within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout() {
    let fx = Fixture::new("gf-timeout", test_addr(30, 5), 18080);
    let _be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "timeout",
            &["timeout.example"],
            json!([{"backendRefs": backend_ref("be"), "timeouts": {"request": "500ms"}}]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "timeout.example";
    s.wait_reply(fx.gateway_addr(), h, "/", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    let started = Instant::now();
    let r = send(&mut c, Method::GET, h, "/?delay=2s", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.echo().is_none(), "the 504 is the gateway's: {}", r.text());
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "504 after {took:?}, want ~500ms"
    );
    // Fast requests still pass.
    let r = send(&mut c, Method::GET, h, "/?delay=50ms", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Pins `retry: {codes: [500], attempts: 2}`: a backend failing the first request of a
/// key with 500 gets the client a 200 (the backend saw two requests); a rule without
/// `retry` passes the 500 on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_500() {
    let fx = Fixture::new("gf-retry", test_addr(30, 6), 18080);
    let be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "retry",
            &["retry.example"],
            json!([
                {"backendRefs": backend_ref("be"), "retry": {"codes": [500], "attempts": 2}},
                {"matches": [{"headers": [{"name": "x-no-retry", "value": "1"}]}],
                 "backendRefs": backend_ref("be")},
            ]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "retry.example";
    s.wait_reply(fx.gateway_addr(), h, "/", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    for key in ["a", "b", "c"] {
        let before = be.requests();
        let r = send(
            &mut c,
            Method::GET,
            h,
            &format!("/fail-once?key={key}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "key {key}: {}", r.text());
        assert_eq!(
            be.requests() - before,
            2,
            "key {key}: one failure, one retry"
        );
    }
    // Without `retry`, the first failure of a key reaches the client.
    let r = send(
        &mut c,
        Method::GET,
        h,
        "/fail-once?key=n",
        &[("x-no-retry", "1")],
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let r = send(
        &mut c,
        Method::GET,
        h,
        "/fail-once?key=n",
        &[("x-no-retry", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Pins RequestMirror: every request is copied to the mirror backend (its request
/// counter goes up) while the client gets the primary's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mirror() {
    let fx = Fixture::new("gf-mirror", test_addr(30, 7), 18080);
    let _primary = fx.backend("primary").await;
    let mirror = fx.backend("mirror").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "mirror",
            &["mirror.example"],
            json!([{
                "backendRefs": backend_ref("primary"),
                "filters": [{"type": "RequestMirror", "requestMirror": {
                    "backendRef": {"name": "mirror", "port": SERVICE_PORT},
                }}],
            }]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "mirror.example";
    s.wait_reply(fx.gateway_addr(), h, "/", T, |r| r.status == 200)
        .await;
    let before = mirror.requests();
    let mut c = HttpClient::new(fx.gateway_addr());
    for i in 0..5 {
        let r = send(&mut c, Method::GET, h, &format!("/m/{i}"), &[]).await;
        assert_eq!(r.pod().as_deref(), Some("primary-0"), "{}", r.text());
    }
    let deadline = Instant::now() + T;
    while mirror.requests() < before + 5 {
        assert!(
            Instant::now() < deadline,
            "mirror saw {} of 5 copies",
            mirror.requests() - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pins CORS: a preflight OPTIONS from an allowed origin gets
/// Access-Control-Allow-Origin/Methods/Headers (and Max-Age, Allow-Credentials), for an
/// exact and a wildcard (`https://*.bar.com`) origin; a simple GET from an allowed
/// origin reaches the backend with Allow-Origin and Expose-Headers; a preflight from a
/// disallowed origin gets no Access-Control-Allow-* header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight() {
    let fx = Fixture::new("gf-cors", test_addr(30, 8), 18080);
    let _be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "cors",
            &["cors.example"],
            json!([{
                "backendRefs": backend_ref("be"),
                "filters": [{"type": "CORS", "cors": {
                    "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
                    "allowMethods": ["GET", "OPTIONS"],
                    "allowHeaders": ["x-header-1", "x-header-2"],
                    "exposeHeaders": ["x-header-3"],
                    "allowCredentials": true,
                    "maxAge": 3600,
                }}],
            }]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let h = "cors.example";
    s.wait_reply(fx.gateway_addr(), h, "/", T, |r| r.status == 200)
        .await;
    let mut c = HttpClient::new(fx.gateway_addr());
    for origin in ["https://www.foo.com", "https://a.bar.com"] {
        let r = send(
            &mut c,
            Method::OPTIONS,
            h,
            "/cors",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "x-header-1"),
            ],
        )
        .await;
        assert!(
            r.status.is_success(),
            "{origin}: {} {:?}",
            r.status,
            r.headers
        );
        assert_eq!(
            header(&r, "access-control-allow-origin").as_deref(),
            Some(origin),
            "{:?}",
            r.headers
        );
        let methods = header(&r, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains("GET"), "{:?}", r.headers);
        let headers = header(&r, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(headers.contains("x-header-1"), "{:?}", r.headers);
        assert_eq!(
            header(&r, "access-control-allow-credentials").as_deref(),
            Some("true"),
            "{:?}",
            r.headers
        );
        assert_eq!(
            header(&r, "access-control-max-age").as_deref(),
            Some("3600"),
            "{:?}",
            r.headers
        );
    }
    // A simple (non-preflight) request from an allowed origin reaches the backend and
    // gets Allow-Origin and Expose-Headers.
    let r = send(
        &mut c,
        Method::GET,
        h,
        "/cors",
        &[("Origin", "https://www.foo.com")],
    )
    .await;
    assert_eq!(r.pod().as_deref(), Some("be-0"), "{}", r.text());
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://www.foo.com"),
        "{:?}",
        r.headers
    );
    let expose = header(&r, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(expose.contains("x-header-3"), "{:?}", r.headers);
    let r = send(
        &mut c,
        Method::OPTIONS,
        h,
        "/cors",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .await;
    let allow: Vec<_> = r
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-allow"))
        .collect();
    assert!(allow.is_empty(), "disallowed origin got {allow:?}");
}

// === HTTPS listeners ===

/// A self-signed certificate (EC P-256) with common name `cn` and DNS SAN `san`, and its
/// key, both PEM.
fn cert_pem(cn: &str, san: &str) -> (String, String) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key: PKey<Private> =
        PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(rand_serial())
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    b.set_serial_number(&serial).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("na");
    let ext = SubjectAlternativeName::new()
        .dns(san)
        .build(&b.x509v3_context(None, None))
        .expect("san");
    b.append_extension(ext).expect("append san");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    (
        String::from_utf8(cert.to_pem().expect("cert pem")).expect("utf8"),
        String::from_utf8(key.private_key_to_pem_pkcs8().expect("key pem")).expect("utf8"),
    )
}

fn rand_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() | 1)
        .unwrap_or(1)
}

/// A `kubernetes.io/tls` Secret `name` holding `cert` and `key` (PEM).
fn tls_secret(ns: &str, name: &str, cert: &str, key: &str) -> String {
    yaml(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": openssl::base64::encode_block(cert.as_bytes()),
            "tls.key": openssl::base64::encode_block(key.as_bytes()),
        },
    }))
}

/// A Gateway `gw` at `addr` with HTTPS listeners `(name, hostname, secret)` on
/// [`HTTPS_PORT`], each terminating TLS with its Secret.
fn https_gateway(ns: &str, addr: IpAddr, listeners: &[(&str, &str, &str)]) -> String {
    let listeners: Vec<Value> = listeners
        .iter()
        .map(|(name, host, secret)| {
            json!({
                "name": name,
                "protocol": "HTTPS",
                "port": HTTPS_PORT,
                "hostname": host,
                "allowedRoutes": {"namespaces": {"from": "Same"}},
                "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": secret}]},
            })
        })
        .collect();
    yaml(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": ns},
        "spec": {
            "gatewayClassName": "sluice",
            "addresses": [{"type": "IPAddress", "value": addr.to_string()}],
            "listeners": listeners,
        },
    }))
}

/// One HTTPS exchange: TLS with SNI `sni` (no verification), `GET path` with `Host:
/// host`, `Connection: close`. Returns the server certificate's common name, the
/// status code and the body.
#[derive(Debug)]
struct TlsReply {
    cn: String,
    status: u16,
    body: String,
}

fn https_get(addr: SocketAddr, sni: &str, host: &str, path: &str) -> Result<TlsReply, String> {
    let mut c = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    c.set_verify(SslVerifyMode::NONE);
    let mut cfg = c.build().configure().map_err(|e| e.to_string())?;
    cfg.set_verify_hostname(false);
    let tcp = TcpStream::connect_timeout(&addr, T).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut s = cfg
        .connect(sni, tcp)
        .map_err(|e| format!("handshake: {e}"))?;
    let cn = s
        .ssl()
        .peer_certificate()
        .and_then(|c| {
            c.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().to_string().ok())
        })
        .ok_or("no peer certificate")?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    // A TLS close without close_notify is an error for openssl; keep what was read.
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok(TlsReply { cn, status, body })
}

async fn https_get_async(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
) -> Result<TlsReply, String> {
    let (sni, host, path) = (sni.to_owned(), host.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || https_get(addr, &sni, &host, &path))
        .await
        .expect("join")
}

/// Polls HTTPS requests until `pred` holds; returns that answer.
async fn wait_https(
    s: &mut Sluice,
    addr: SocketAddr,
    sni: &str,
    host: &str,
    pred: impl Fn(&TlsReply) -> bool,
) -> TlsReply {
    let deadline = Instant::now() + T;
    loop {
        s.assert_running();
        let r = https_get_async(addr, sni, host, "/").await;
        match r {
            Ok(r) if pred(&r) => return r,
            last => assert!(
                Instant::now() < deadline,
                "waited {T:?} for an HTTPS answer (SNI {sni}, Host {host}); last: {last:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pins TLS termination on an HTTPS listener `*.example.com` with a wildcard
/// certificate from a `kubernetes.io/tls` Secret: the client sees that certificate and
/// the route's backend answers over plain HTTP; SNI selects the listener: SNI
/// `a.example.com` gets listener `a`'s own certificate and route, SNI `x.example.com`
/// the wildcard listener's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_termination_and_sni() {
    let fx = Fixture::new("gf-https", test_addr(30, 9), 18080);
    let (cert, key) = cert_pem("wildcard-1", "*.example.com");
    let (cert_a, key_a) = cert_pem("only-a", "a.example.com");
    fx.write(
        "secret.yaml",
        &docs(&[
            tls_secret(&fx.ns, "cert", &cert, &key),
            tls_secret(&fx.ns, "cert-a", &cert_a, &key_a),
        ]),
    );
    fx.write(
        "gateway.yaml",
        &https_gateway(
            &fx.ns,
            fx.addr,
            &[
                ("a", "a.example.com", "cert-a"),
                ("wild", "*.example.com", "cert"),
            ],
        ),
    );
    let _a = fx.backend("a").await;
    let _w = fx.backend("w").await;
    let route_on = |name: &str, section: &str, svc: &str| {
        yaml(&json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": fx.ns},
            "spec": {
                "parentRefs": [{"name": GATEWAY, "sectionName": section}],
                "rules": [{"backendRefs": backend_ref(svc)}],
            },
        }))
    };
    fx.write("route-a.yaml", &route_on("a", "a", "a"));
    fx.write("route-w.yaml", &route_on("w", "wild", "w"));
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = SocketAddr::new(fx.addr, HTTPS_PORT);
    let r = wait_https(&mut s, addr, "a.example.com", "a.example.com", |r| {
        r.status == 200
    })
    .await;
    assert_eq!(
        r.cn, "only-a",
        "SNI a.example.com selects listener a and its certificate"
    );
    assert!(r.body.contains("\"pod\":\"a-0\""), "{}", r.body);
    let r = https_get_async(addr, "x.example.com", "x.example.com", "/")
        .await
        .expect("HTTPS to x.example.com");
    assert_eq!((r.status, r.cn.as_str()), (200, "wildcard-1"), "{r:?}");
    assert!(r.body.contains("\"pod\":\"w-0\""), "{}", r.body);
    assert!(r.body.contains("\"host\":\"x.example.com\""), "{}", r.body);
}

/// Pins GatewayHTTPSListenerDetectMisdirectedRequests: with HTTPS listeners
/// `a.example.com` and `b.example.com` on one port, a request whose SNI is
/// `a.example.com` but whose Host is `b.example.com` gets 421 Misdirected Request;
/// matching SNI and Host get 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_misdirected_421() {
    let fx = Fixture::new("gf-421", test_addr(30, 10), 18080);
    let (cert, key) = cert_pem("wildcard-421", "*.example.com");
    fx.write("secret.yaml", &tls_secret(&fx.ns, "cert", &cert, &key));
    fx.write(
        "gateway.yaml",
        &https_gateway(
            &fx.ns,
            fx.addr,
            &[
                ("a", "a.example.com", "cert"),
                ("b", "b.example.com", "cert"),
            ],
        ),
    );
    let be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "all",
            &[],
            json!([{"backendRefs": backend_ref("be")}]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let addr = SocketAddr::new(fx.addr, HTTPS_PORT);
    wait_https(&mut s, addr, "a.example.com", "a.example.com", |r| {
        r.status == 200
    })
    .await;
    wait_https(&mut s, addr, "b.example.com", "b.example.com", |r| {
        r.status == 200
    })
    .await;
    let before = be.requests();
    let r = https_get_async(addr, "a.example.com", "b.example.com", "/")
        .await
        .expect("HTTPS");
    assert_eq!(r.status, 421, "{r:?}");
    let r = https_get_async(addr, "b.example.com", "a.example.com", "/")
        .await
        .expect("HTTPS");
    assert_eq!(r.status, 421, "{r:?}");
    assert_eq!(
        be.requests(),
        before,
        "misdirected requests never reach the backend"
    );
}

/// Pins certificate rotation without restart: rewriting the Secret with a new
/// certificate makes new handshakes present it, and the process keeps its pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_certificate_rotation() {
    let fx = Fixture::new("gf-rotate", test_addr(30, 11), 18080);
    let (cert, key) = cert_pem("rotate-old", "*.example.com");
    fx.write("secret.yaml", &tls_secret(&fx.ns, "cert", &cert, &key));
    fx.write(
        "gateway.yaml",
        &https_gateway(&fx.ns, fx.addr, &[("wild", "*.example.com", "cert")]),
    );
    let _be = fx.backend("be").await;
    fx.write(
        "route.yaml",
        &route(
            &fx.ns,
            "all",
            &[],
            json!([{"backendRefs": backend_ref("be")}]),
        ),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let pid = s.pid();
    let addr = SocketAddr::new(fx.addr, HTTPS_PORT);
    let h = "r.example.com";
    let r = wait_https(&mut s, addr, h, h, |r| r.status == 200).await;
    assert_eq!(r.cn, "rotate-old");
    let (cert, key) = cert_pem("rotate-new", "*.example.com");
    fx.write("secret.yaml", &tls_secret(&fx.ns, "cert", &cert, &key));
    let r = wait_https(&mut s, addr, h, h, |r| r.cn == "rotate-new").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s.pid(), pid);
    s.assert_running();
}
