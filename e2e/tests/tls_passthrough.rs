//! TLS passthrough through the real binary: a Gateway listener `protocol: TLS`,
//! `tls.mode: Passthrough` and a TLSRoute send the still-encrypted connection to a TLS
//! echo backend chosen by SNI; the client completes its handshake with the backend and
//! sees the backend's certificate. Addresses: 127.77.20.<test>.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509NameBuilder, X509};
use serde_json::{json, Value};
use sluice_e2e::harness::find_object;
use sluice_e2e::manifests::{docs, mk_service_with_endpoints};
use sluice_e2e::{test_addr, Fixture, Sluice, GATEWAY};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const TLS_PORT: u16 = 18443;

/// A TLS echo server on 127.0.0.1 presenting a self-signed certificate with common
/// name `cn`, on plain threads; returns its port.
fn tls_echo(cn: &str) -> u16 {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(7)
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
    let cert = b.build();
    let mut a = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    a.set_certificate(&cert).expect("cert");
    a.set_private_key(&key).expect("key");
    let acceptor = a.build();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = acceptor.accept(tcp) else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Connects to `addr` with SNI `sni`, sends a line; returns the common name of the
/// server certificate and the echoed line.
fn tls_roundtrip(addr: SocketAddr, sni: &str) -> Result<(String, String), String> {
    let mut c = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    c.set_verify(SslVerifyMode::NONE);
    let mut cfg = c.build().configure().map_err(|e| e.to_string())?;
    cfg.set_verify_hostname(false);
    let tcp = TcpStream::connect_timeout(&addr, T).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(T)).map_err(|e| e.to_string())?;
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
    s.write_all(b"hello\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
    Ok((cn, String::from_utf8_lossy(&buf).into_owned()))
}

fn tls_gateway(ns: &str, addr: std::net::IpAddr) -> String {
    serde_yaml::to_string(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": ns},
        "spec": {
            "gatewayClassName": "sluice",
            "addresses": [{"type": "IPAddress", "value": addr.to_string()}],
            "listeners": [{
                "name": "tls",
                "protocol": "TLS",
                "port": TLS_PORT,
                "tls": {"mode": "Passthrough"},
            }],
        },
    }))
    .expect("yaml")
}

fn tls_route(ns: &str, name: &str, host: &str, service: &str, port: u16) -> String {
    serde_yaml::to_string(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "TLSRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": GATEWAY}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": service, "port": port}]}],
        },
    }))
    .expect("yaml")
}

fn accepted(status: &Value, ns: &str, name: &str) -> bool {
    find_object(status, "TLSRoute", Some(ns), name)
        .and_then(|o| o["status"]["parents"][0]["conditions"].as_array().cloned())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Accepted" && c["status"] == "True")
        })
}

/// Pins TLS passthrough end to end: SNI `secure.example.com` reaches the TLS echo
/// backend (the client sees its certificate, not one of Sluice's), SNI
/// `other.example.com` reaches the second backend, an SNI without a route is closed,
/// and the TLSRoutes are Accepted with attachedRoutes 2 on the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_by_sni() {
    let fx = Fixture::new("tls-pt", test_addr(20, 1), 18080);
    fx.write("gateway.yaml", &tls_gateway(&fx.ns, fx.addr));
    let secure = tls_echo("secure-backend.e2e");
    let other = tls_echo("other-backend.e2e");
    fx.write(
        "backends.yaml",
        &docs(&[
            mk_service_with_endpoints(&fx.ns, "secure", 8443, secure),
            mk_service_with_endpoints(&fx.ns, "other", 8443, other),
            tls_route(&fx.ns, "secure", "secure.example.com", "secure", 8443),
            tls_route(&fx.ns, "other", "*.example.com", "other", 8443),
        ]),
    );
    let mut s = Sluice::start_ready(fx.dir()).await;
    let ns = fx.ns.clone();
    let status = s
        .wait_status("TLSRoutes accepted", T, |st| {
            accepted(st, &ns, "secure") && accepted(st, &ns, "other")
        })
        .await;
    let gw = find_object(&status, "Gateway", Some(&fx.ns), GATEWAY).expect("gateway status");
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 2, "{gw}");
    let addr = SocketAddr::new(fx.addr, TLS_PORT);
    let deadline = Instant::now() + T;
    let first = loop {
        let r = tokio::task::spawn_blocking(move || tls_roundtrip(addr, "secure.example.com"))
            .await
            .expect("join");
        if r.is_ok() || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        first,
        Ok(("secure-backend.e2e".to_string(), "hello\n".to_string())),
        "log:\n{}",
        s.log()
    );
    let r = tokio::task::spawn_blocking(move || tls_roundtrip(addr, "x.example.com"))
        .await
        .expect("join");
    assert_eq!(
        r,
        Ok(("other-backend.e2e".to_string(), "hello\n".to_string()))
    );
    let r = tokio::task::spawn_blocking(move || tls_roundtrip(addr, "nothing.example.org"))
        .await
        .expect("join");
    assert!(r.is_err(), "an SNI without a route must be closed: {r:?}");
}
