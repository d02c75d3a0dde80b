//! TLS passthrough listeners end to end through the proxy: SNI routing between two
//! TLS echo backends (the client sees the backend's own certificate), fail-closed
//! cases, and route changes applied without a rebind.

mod common;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509NameBuilder, X509};
use pingora_core::tls::tokio_ssl::SslStream;
use sluice_ir as ir;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A self-signed certificate with common name `cn`.
fn self_signed(cn: &str) -> (X509, PKey<Private>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(1)
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
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    (b.build(), key)
}

/// A TLS echo server presenting a certificate for `cn`: echoes every byte back.
async fn tls_echo(cn: &str) -> SocketAddr {
    let (cert, key) = self_signed(cn);
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    b.set_certificate(&cert).expect("cert");
    b.set_private_key(&key).expect("key");
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
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Connects through `proxy` with SNI `sni` (none when `None`), sends a line and
/// returns the common name of the certificate the client saw and the echoed line.
async fn roundtrip(proxy: SocketAddr, sni: Option<&str>) -> Result<(String, String), String> {
    let mut c = SslConnector::builder(SslMethod::tls()).expect("connector");
    c.set_verify(SslVerifyMode::NONE);
    let mut cfg = c.build().configure().expect("configure");
    cfg.set_verify_hostname(false);
    if sni.is_none() {
        cfg.set_use_server_name_indication(false);
    }
    let ssl = cfg.into_ssl(sni.unwrap_or("unused.invalid")).expect("ssl");
    let tcp = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut s = SslStream::new(ssl, tcp).expect("stream");
    tokio::time::timeout(WAIT, Pin::new(&mut s).connect())
        .await
        .map_err(|_| "handshake timed out".to_string())?
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
    s.write_all(b"ping\n").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf))
        .await
        .map_err(|_| "echo timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    Ok((cn, String::from_utf8_lossy(&buf).into_owned()))
}

fn passthrough_route(
    name: &str,
    host: Option<&str>,
    backends: Vec<ir::Backend>,
) -> ir::PassthroughRoute {
    ir::PassthroughRoute {
        name: name.into(),
        source: ir::Source::object("TLSRoute", "default", name),
        hostname: host.map(ir::HostMatch::parse),
        backends,
    }
}

fn passthrough_listener(port: u16, routes: Vec<ir::PassthroughRoute>) -> ir::Listener {
    ir::Listener {
        name: format!("127.0.0.1:{port}"),
        address: "127.0.0.1".parse().expect("ip"),
        port,
        protocol: ir::Protocol::TlsPassthrough,
        servers: vec![ir::Server {
            name: "gateway/default/gw/tls".into(),
            source: ir::Source::object("Gateway", "default", "gw"),
            hostname: None,
            tls: None,
            virtual_hosts: vec![],
            passthrough: routes,
        }],
    }
}

/// SNI selects the backend (exact name before wildcard); the client completes its
/// handshake with the backend itself and sees the backend's certificate; an SNI
/// without a route, a missing SNI and an Invalid backend close the connection; a
/// route change applies to new connections on the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_routing() {
    let a = tls_echo("backend-a").await;
    let b = tls_echo("backend-b").await;
    let port = free_port();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let invalid = ir::Backend {
        kind: ir::BackendKind::Invalid {
            reason: "Service default/gone does not exist.".into(),
            status: 500,
        },
        ..backend("gone", 1, &[])
    };
    let cfg = config(
        1,
        vec![passthrough_listener(
            port,
            vec![
                passthrough_route("a", Some("a.example.com"), vec![backend("a", 1, &[a])]),
                passthrough_route("gone", Some("gone.example.com"), vec![invalid]),
                passthrough_route("b", Some("*.example.com"), vec![backend("b", 1, &[b])]),
            ],
        )],
    );
    let (tx, handle) = start(cfg).await;
    assert_eq!(
        roundtrip(proxy, Some("a.example.com")).await,
        Ok(("backend-a".into(), "ping\n".into()))
    );
    assert_eq!(
        roundtrip(proxy, Some("B.Example.com")).await,
        Ok(("backend-b".into(), "ping\n".into()))
    );
    for sni in [Some("example.org"), Some("gone.example.com"), None] {
        assert!(
            roundtrip(proxy, sni).await.is_err(),
            "{sni:?} must not be served"
        );
    }
    // Generation 2: a.example.com now goes to b; same socket, no rebind.
    tx.send_replace(config(
        2,
        vec![passthrough_listener(
            port,
            vec![passthrough_route(
                "a",
                Some("a.example.com"),
                vec![backend("b", 1, &[b])],
            )],
        )],
    ));
    let applied = wait_applied(&handle, 2).await;
    assert!(applied.listener_errors.is_empty(), "{applied:?}");
    assert_eq!(
        roundtrip(proxy, Some("a.example.com")).await,
        Ok(("backend-b".into(), "ping\n".into()))
    );
    assert!(roundtrip(proxy, Some("c.example.com")).await.is_err());
    // Generation 3: the listener is gone.
    tx.send_replace(config(3, vec![]));
    wait_applied(&handle, 3).await;
    assert!(
        TcpStream::connect(proxy).await.is_err(),
        "listener must be closed"
    );
}

/// Weighted backends of one route: both get connections, weight 0 gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_backends() {
    let a = tls_echo("backend-a").await;
    let b = tls_echo("backend-b").await;
    let c = tls_echo("backend-c").await;
    let port = free_port();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let cfg = config(
        1,
        vec![passthrough_listener(
            port,
            vec![passthrough_route(
                "split",
                None,
                vec![
                    backend("a", 1, &[a]),
                    backend("b", 1, &[b]),
                    backend("c", 0, &[c]),
                ],
            )],
        )],
    );
    let (_tx, _handle) = start(cfg).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let (cn, _) = roundtrip(proxy, Some("any.example.net"))
            .await
            .expect("served");
        *seen.entry(cn).or_insert(0) += 1;
    }
    assert!(
        seen.contains_key("backend-a") && seen.contains_key("backend-b"),
        "{seen:?}"
    );
    assert!(!seen.contains_key("backend-c"), "{seen:?}");
}
