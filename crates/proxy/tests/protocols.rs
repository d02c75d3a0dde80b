//! Protocol paths through the proxy: h2c both ways, upgrades, timeouts, and TLS
//! termination with SNI certificate selection, ALPN h2 and certificate rotation.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use pingora_core::tls::tokio_ssl::SslStream;
use sluice_ir as ir;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/1.1 request over any connected IO.
async fn h1<I>(io: I, host: &str, path: &str) -> Result<Resp, BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    collect(tokio::time::timeout(WAIT, sender.send_request(req)).await??).await
}

/// HTTP/2 request (prior knowledge, or after ALPN) over any connected IO.
async fn h2<I>(io: I, scheme: &str, host: &str, path: &str) -> Result<Resp, BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("{scheme}://{host}{path}"))
        .body(Empty::<Bytes>::new())?;
    collect(tokio::time::timeout(WAIT, sender.send_request(req)).await??).await
}

async fn collect(resp: hyper::Response<hyper::body::Incoming>) -> Result<Resp, BoxError> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn h2c_backend(name: &str, addr: SocketAddr) -> ir::Backend {
    let mut b = backend(name, 1, &[addr]);
    if let ir::BackendKind::Endpoints(set) = &mut b.kind {
        set.protocol = ir::UpstreamProtocol::H2c;
    }
    b
}

/// HTTP/2 with prior knowledge works downstream (client → proxy) and upstream
/// (`H2c` backends), in every combination with HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_both_ways() {
    let a = echo("a").await;
    let port = free_port();
    let routes = vec![
        route("h2c", "/h2c", forward(vec![h2c_backend("a", a.addr)])),
        route("h1", "/", forward(vec![backend("a", 1, &[a.addr])])),
    ];
    let (_tx, _h) = start(config(1, vec![listener(port, routes)])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();

    let r = send(proxy, "example.com", "/h2c/x", &[]).await;
    assert_eq!((r.status, r.version()), (200, Some("HTTP/2.0")), "{r:?}");
    assert_eq!(r.seen("x-forwarded-proto"), Some("http"));

    let tcp = TcpStream::connect(proxy).await.expect("connect");
    let r = h2(tcp, "http", "example.com", "/plain")
        .await
        .expect("h2c request");
    assert_eq!((r.status, r.version()), (200, Some("HTTP/1.1")), "{r:?}");
    assert_eq!(
        r.seen("host"),
        Some("example.com"),
        "authority becomes Host"
    );
    assert_eq!(r.target(), Some("/plain"));

    let tcp = TcpStream::connect(proxy).await.expect("connect");
    let r = h2(tcp, "http", "example.com", "/h2c/y")
        .await
        .expect("h2c request");
    assert_eq!((r.status, r.version()), (200, Some("HTTP/2.0")), "{r:?}");
    assert_eq!(r.target(), Some("/h2c/y"));
}

/// A backend slower than the route's request timeout answers 504; a fast one 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout() {
    let a = echo("a").await;
    let port = free_port();
    let mut r = route("slow", "/", forward(vec![backend("a", 1, &[a.addr])]));
    r.timeouts.request_ms = Some(300);
    let (_tx, _h) = start(config(1, vec![listener(port, vec![r])])).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(send(proxy, "x", "/sleep/10", &[]).await.status, 200);
    assert_eq!(send(proxy, "x", "/sleep/2000", &[]).await.status, 504);
}

/// `Upgrade` requests (WebSocket) pass through: 101, then bytes both ways.
///
/// Pingora 0.9.1 tears a fresh tunnel down when the upstream's 101 is read before the
/// upgrade request's empty body end (cloudflare/pingora#946, fixes pending in #947 and
/// #1016): the client gets the 101, then EOF. It happens on a small share of upgrades,
/// more under CPU pressure, so this test allows a few attempts; it still fails if
/// upgrades do not work at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_passes_through() {
    let up = upgrade_echo().await;
    let port = free_port();
    let routes = vec![route("ws", "/", forward(vec![backend("ws", 1, &[up])]))];
    let (_tx, _h) = start(config(1, vec![listener(port, routes)])).await;
    let proxy = SocketAddr::from(([127, 0, 0, 1], port));
    let mut errors = Vec::new();
    for _ in 0..5 {
        match upgrade_once(proxy).await {
            Ok(()) => return,
            Err(e) => errors.push(e),
        }
    }
    panic!("no upgrade went through: {errors:?}");
}

async fn upgrade_once(proxy: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .map_err(|_| "timeout reading the 101".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "closed before the 101: {}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("not a 101: {head}"));
    }
    s.write_all(b"ping over upgraded connection")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 29];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .map_err(|_| "timeout reading the echo".to_string())?
        .map_err(|e| format!("reading the echo: {e}"))?;
    if buf != b"ping over upgraded connection" {
        return Err(format!("wrong echo {:?}", String::from_utf8_lossy(&buf)));
    }
    Ok(())
}

// === TLS ===

/// A certificate and its key.
struct Issued {
    cert: X509,
    key: PKey<Private>,
}

/// A certificate for `names` (first = CN), signed by `issuer` or self-signed; `ca`
/// makes it a CA.
fn issue(names: &[&str], serial: u32, issuer: Option<&Issued>, ca: bool) -> Issued {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", names[0]).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(serial)
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    b.set_serial_number(&serial).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name()))
        .expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("na");
    if ca {
        let bc = BasicConstraints::new().critical().ca().build().expect("bc");
        b.append_extension(bc).expect("ext");
    } else {
        let mut san = SubjectAlternativeName::new();
        for n in names {
            san.dns(n);
        }
        let san = san
            .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))
            .expect("san");
        b.append_extension(san).expect("ext");
    }
    b.sign(issuer.map_or(&key, |i| &i.key), MessageDigest::sha256())
        .expect("sign");
    Issued {
        cert: b.build(),
        key,
    }
}

/// A self-signed certificate for `names` (first = CN), PEM cert and key.
fn self_signed(names: &[&str], serial: u32) -> ir::Certificate {
    pem(&issue(names, serial, None, false))
}

fn pem(i: &Issued) -> ir::Certificate {
    ir::Certificate {
        name: String::new(),
        cert_pem: String::from_utf8(i.cert.to_pem().expect("pem")).expect("utf8"),
        key_pem: String::from_utf8(i.key.private_key_to_pem_pkcs8().expect("pem")).expect("utf8"),
    }
}

/// Connects with TLS, SNI `sni`, offering `alpn`; returns the stream and the serial
/// number of the certificate the proxy served.
async fn tls_connect(addr: SocketAddr, sni: &str, alpn: &[u8]) -> (SslStream<TcpStream>, u32) {
    tls_connect_with(addr, sni, alpn, None)
        .await
        .expect("handshake")
}

/// Like [`tls_connect`], presenting `client` as client certificate; the handshake may
/// fail.
async fn tls_connect_with(
    addr: SocketAddr,
    sni: &str,
    alpn: &[u8],
    client: Option<&Issued>,
) -> Result<(SslStream<TcpStream>, u32), String> {
    let mut c = SslConnector::builder(SslMethod::tls()).expect("connector");
    c.set_verify(SslVerifyMode::NONE);
    c.set_alpn_protos(alpn).expect("alpn");
    if let Some(client) = client {
        c.set_certificate(&client.cert).expect("client cert");
        c.set_private_key(&client.key).expect("client key");
    }
    let ssl = c
        .build()
        .configure()
        .expect("configure")
        .verify_hostname(false)
        .into_ssl(sni)
        .expect("ssl");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut s = SslStream::new(ssl, tcp).expect("stream");
    tokio::time::timeout(WAIT, Pin::new(&mut s).connect())
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let serial = s
        .ssl()
        .peer_certificate()
        .and_then(|c| c.serial_number().to_bn().ok())
        .and_then(|n| n.to_dec_str().ok())
        .and_then(|s| s.parse().ok())
        .expect("peer certificate");
    Ok((s, serial))
}

fn https_config(generation: u64, port: u16, echo: SocketAddr, foo_serial: u32) -> Arc<ir::Config> {
    let server = |name: &str, host: &str, cert: &str| ir::Server {
        name: name.into(),
        source: ir::Source::object("Gateway", "default", "gw"),
        hostname: Some(ir::HostMatch::parse(host)),
        tls: Some(ir::ServerTls {
            certificates: vec![cert.into()],
            client_validation: None,
        }),
        passthrough: vec![],
        virtual_hosts: vec![ir::VirtualHost {
            hostname: None,
            routes: vec![route(name, "/", forward(vec![backend(name, 1, &[echo])]))],
        }],
    };
    let mut certificates = std::collections::BTreeMap::new();
    for (name, cert) in [
        ("default/foo", self_signed(&["foo.example.com"], foo_serial)),
        ("default/bar", self_signed(&["*.bar.example.com"], 2)),
    ] {
        certificates.insert(
            name.to_string(),
            ir::Certificate {
                name: name.into(),
                ..cert
            },
        );
    }
    Arc::new(ir::Config {
        generation,
        listeners: vec![ir::Listener {
            name: format!("127.0.0.1:{port}"),
            address: "127.0.0.1".parse().expect("ip"),
            port,
            protocol: ir::Protocol::Https,
            servers: vec![
                server("foo", "foo.example.com", "default/foo"),
                server("bar", "*.bar.example.com", "default/bar"),
            ],
        }],
        certificates,
    })
}

/// TLS termination: the SNI picks the server's certificate, HTTP/1.1 and h2 (ALPN)
/// are served with `X-Forwarded-Proto: https`, a Host that selects another server
/// than the SNI gets 421, and a new config rotates the certificate without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sni_alpn_rotation() {
    let a = echo("a").await;
    let port = free_port();
    let cfg = https_config(1, port, a.addr, 1);
    cfg.validate().expect("valid IR");
    let (tx, handle) = start(cfg).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();

    let (s, serial) = tls_connect(proxy, "foo.example.com", b"\x08http/1.1").await;
    assert_eq!(serial, 1);
    let r = h1(s, "foo.example.com", "/x").await.expect("https request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.seen("x-forwarded-proto"), Some("https"));

    let (s, serial) = tls_connect(proxy, "x.bar.example.com", b"\x02h2\x08http/1.1").await;
    assert_eq!(serial, 2);
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    let r = h2(s, "https", "x.bar.example.com", "/y")
        .await
        .expect("h2 request");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.seen("x-forwarded-proto"), Some("https"));

    // Misdirected: the Host selects another server than the SNI did.
    let (s, _) = tls_connect(proxy, "foo.example.com", b"\x08http/1.1").await;
    let r = h1(s, "y.bar.example.com", "/")
        .await
        .expect("https request");
    assert_eq!(r.status, 421, "{r:?}");
    let (s, _) = tls_connect(proxy, "x.bar.example.com", b"\x08http/1.1").await;
    let r = h1(s, "y.bar.example.com", "/")
        .await
        .expect("https request");
    assert_eq!(r.status, 200, "same server for SNI and Host: {r:?}");

    tx.send_replace(https_config(2, port, a.addr, 7));
    let applied = wait_applied(&handle, 2).await;
    assert!(applied.listener_errors.is_empty(), "{applied:?}");
    let (_s, serial) = tls_connect(proxy, "foo.example.com", b"\x08http/1.1").await;
    assert_eq!(serial, 7, "rotated certificate served");
}

/// Client certificates: `require` rejects clients without a certificate from the CA,
/// `requestOnly` asks but lets everyone in; the choice follows the SNI's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let a = echo("a").await;
    let port = free_port();
    let ca = issue(&["test-ca"], 100, None, true);
    let good = issue(&["client"], 101, Some(&ca), false);
    let stranger = issue(&["stranger"], 102, None, false);
    let mut cfg = (*https_config(1, port, a.addr, 1)).clone();
    let ca_pem = String::from_utf8(ca.cert.to_pem().expect("pem")).expect("utf8");
    for (server, mode) in cfg.listeners[0]
        .servers
        .iter_mut()
        .zip([ir::ClientCertMode::Require, ir::ClientCertMode::RequestOnly])
    {
        if let Some(tls) = server.tls.as_mut() {
            tls.client_validation = Some(ir::ClientValidation {
                ca_pem: ca_pem.clone(),
                mode,
                verify_depth: None,
            });
        }
    }
    let (_tx, _h) = start(Arc::new(cfg)).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();

    assert!(
        served(proxy, "foo.example.com", Some(&good)).await,
        "valid client certificate"
    );
    assert!(
        !served(proxy, "foo.example.com", None).await,
        "no client certificate"
    );
    assert!(
        !served(proxy, "foo.example.com", Some(&stranger)).await,
        "untrusted client certificate"
    );
    assert!(
        served(proxy, "x.bar.example.com", None).await,
        "requestOnly: no certificate"
    );
    assert!(
        served(proxy, "x.bar.example.com", Some(&stranger)).await,
        "requestOnly: untrusted"
    );
}

/// Does a request over a TLS connection presenting `client` get a 200?
async fn served(proxy: SocketAddr, sni: &str, client: Option<&Issued>) -> bool {
    match tls_connect_with(proxy, sni, b"\x08http/1.1", client).await {
        Ok((s, _)) => h1(s, sni, "/").await.is_ok_and(|r| r.status == 200),
        Err(_) => false,
    }
}

/// An HTTPS echo backend serving `server`'s certificate; with `client_ca`, it
/// requires a client certificate from that CA.
async fn tls_echo(server: &Issued, client_ca: Option<&X509>) -> SocketAddr {
    use openssl::ssl::{Ssl, SslAcceptor};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    b.set_certificate(&server.cert).expect("cert");
    b.set_private_key(&server.key).expect("key");
    if let Some(ca) = client_ca {
        b.cert_store_mut().add_cert(ca.clone()).expect("ca");
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    let acceptor = Arc::new(b.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(ssl) = Ssl::new(acceptor.context()) else {
                    return;
                };
                let Ok(mut s) = SslStream::new(ssl, tcp) else {
                    return;
                };
                if Pin::new(&mut s).accept().await.is_err() {
                    return;
                }
                let svc = hyper::service::service_fn(|req| echo_answer("tls", req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// HTTPS backends: the server certificate is verified against the IR's CA and name,
/// and the IR's client certificate is presented; without TLS settings, any
/// certificate is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls() {
    let ca = issue(&["upstream-ca"], 200, None, true);
    let server = issue(&["backend.example"], 201, Some(&ca), false);
    let client = issue(&["gateway"], 202, Some(&ca), false);
    let other_ca = issue(&["other-ca"], 203, None, true);
    let plain = tls_echo(&server, None).await;
    let mutual = tls_echo(&server, Some(&ca.cert)).await;
    let ca_pem = |i: &Issued| String::from_utf8(i.cert.to_pem().expect("pem")).expect("utf8");
    let tls_backend = |name: &str, addr, tls: Option<ir::UpstreamTls>| {
        let mut b = backend(name, 1, &[addr]);
        if let ir::BackendKind::Endpoints(set) = &mut b.kind {
            set.protocol = ir::UpstreamProtocol::Https;
            set.tls = tls;
        }
        b
    };
    let verified = |ca: &Issued, client: Option<&str>| ir::UpstreamTls {
        server_name: "backend.example".into(),
        verify: true,
        ca_pem: Some(ca_pem(ca)),
        subject_alt_names: vec![],
        client_certificate: client.map(str::to_string),
    };
    let routes = vec![
        route(
            "any-cert",
            "/any",
            forward(vec![tls_backend("a", plain, None)]),
        ),
        route(
            "verified",
            "/verified",
            forward(vec![tls_backend("v", plain, Some(verified(&ca, None)))]),
        ),
        route(
            "wrong-ca",
            "/wrong-ca",
            forward(vec![tls_backend(
                "w",
                plain,
                Some(verified(&other_ca, None)),
            )]),
        ),
        route(
            "mutual",
            "/mutual",
            forward(vec![tls_backend(
                "m",
                mutual,
                Some(verified(&ca, Some("default/gateway"))),
            )]),
        ),
        route(
            "mutual-no-cert",
            "/no-cert",
            forward(vec![tls_backend("n", mutual, Some(verified(&ca, None)))]),
        ),
    ];
    let port = free_port();
    let mut cfg = (*config(1, vec![listener(port, routes)])).clone();
    cfg.certificates.insert(
        "default/gateway".into(),
        ir::Certificate {
            name: "default/gateway".into(),
            ..pem(&client)
        },
    );
    let (_tx, _h) = start(Arc::new(cfg)).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], port).into();
    for (path, want) in [
        ("/any", 200),
        ("/verified", 200),
        ("/wrong-ca", 503),
        ("/mutual", 200),
        ("/no-cert", 503),
    ] {
        let r = send(proxy, "x", path, &[]).await;
        assert_eq!(r.status, want, "{path}: {r:?}");
    }
}
