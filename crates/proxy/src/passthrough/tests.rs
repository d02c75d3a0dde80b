//! ClientHello parsing on real ClientHellos written by OpenSSL, and SNI selection.
use super::*;
use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslVersion};
use std::io::{Read, Write};

/// A transport that records what the client writes and never answers, so the
/// handshake stops right after the ClientHello.
#[derive(Debug)]
struct Capture(Vec<u8>);

impl Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The ClientHello OpenSSL sends for `sni` (none when `None`); `tls12` caps the
/// version at TLS 1.2 (a different extension set).
fn client_hello(sni: Option<&str>, tls12: bool) -> Vec<u8> {
    let mut b = SslConnector::builder(SslMethod::tls()).expect("connector");
    if tls12 {
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .expect("version");
    }
    let mut cfg = b.build().configure().expect("configure");
    cfg.set_verify_hostname(false);
    if sni.is_none() {
        cfg.set_use_server_name_indication(false);
    }
    match cfg.connect(sni.unwrap_or("unused.invalid"), Capture(Vec::new())) {
        Err(HandshakeError::WouldBlock(mid)) => mid.get_ref().0.clone(),
        Err(e) => panic!("unexpected handshake error: {e}"),
        Ok(_) => panic!("handshake cannot complete"),
    }
}

/// Re-frames the handshake bytes of `hello` into records of at most `size` bytes.
fn reframe(hello: &[u8], size: usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    let payload = &hello[5..5 + len];
    let mut out = Vec::new();
    for chunk in payload.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn sni(s: &str) -> Result<Hello, HelloError> {
    Ok(Hello::Complete {
        sni: Some(s.to_string()),
    })
}

/// The SNI of TLS 1.3 and TLS 1.2 ClientHellos is found, lower-cased.
#[test]
fn finds_sni() {
    for tls12 in [false, true] {
        let hello = client_hello(Some("Foo.Example.com"), tls12);
        assert_eq!(parse_client_hello(&hello), sni("foo.example.com"));
    }
}

/// A ClientHello without the server_name extension parses, without SNI.
#[test]
fn no_sni() {
    let hello = client_hello(None, false);
    assert_eq!(
        parse_client_hello(&hello),
        Ok(Hello::Complete { sni: None })
    );
}

/// Every strict prefix of a ClientHello asks for more bytes (no error, no guess).
#[test]
fn prefixes_are_incomplete() {
    let hello = client_hello(Some("a.example.com"), false);
    for n in 0..hello.len() {
        assert_eq!(
            parse_client_hello(&hello[..n]),
            Ok(Hello::Incomplete),
            "prefix {n}"
        );
    }
    // Bytes after the ClientHello (none are expected, but they must not matter).
    let mut more = hello.clone();
    more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
    assert_eq!(parse_client_hello(&more), sni("a.example.com"));
}

/// A ClientHello split over several handshake records is reassembled.
#[test]
fn split_records() {
    let hello = client_hello(Some("split.example.com"), false);
    for size in [1, 7, 100] {
        let framed = reframe(&hello, size);
        assert_eq!(
            parse_client_hello(&framed),
            sni("split.example.com"),
            "records of {size}"
        );
        assert_eq!(
            parse_client_hello(&framed[..framed.len() - 1]),
            Ok(Hello::Incomplete)
        );
    }
}

/// Non-TLS bytes and broken ClientHellos are errors, never a panic.
#[test]
fn rejects_garbage() {
    assert_eq!(
        parse_client_hello(b"GET / HTTP/1.1\r\n"),
        Err(HelloError::NotTls)
    );
    assert_eq!(parse_client_hello(b"G"), Err(HelloError::NotTls));
    // An alert record first.
    assert_eq!(
        parse_client_hello(&[21, 3, 3, 0, 2, 2, 40]),
        Err(HelloError::NotTls)
    );
    // A ClientHello cut short by 10 bytes, with record and handshake lengths adjusted.
    let hello = client_hello(Some("cut.example.com"), false);
    let mut cut = hello[..hello.len() - 10].to_vec();
    let rlen = u16::from_be_bytes([cut[3], cut[4]]) - 10;
    cut[3..5].copy_from_slice(&rlen.to_be_bytes());
    let hlen = (usize::from(cut[6]) << 16 | usize::from(cut[7]) << 8 | usize::from(cut[8])) - 10;
    cut[6] = (hlen >> 16) as u8;
    cut[7] = (hlen >> 8) as u8;
    cut[8] = hlen as u8;
    assert!(matches!(
        parse_client_hello(&cut),
        Err(HelloError::Malformed(_))
    ));
    // Every single-byte corruption of a real ClientHello: a result or an error.
    for i in 0..hello.len() {
        let mut bad = hello.clone();
        bad[i] ^= 0xff;
        let _ = parse_client_hello(&bad);
    }
}

fn h(s: &str) -> Option<ir::HostMatch> {
    Some(ir::HostMatch::parse(s))
}

fn backend(weight: u32, port: u16) -> ir::Backend {
    ir::Backend {
        name: format!("b{port}"),
        source: ir::Source::object("TLSRoute", "ns", "r"),
        weight,
        filters: vec![],
        kind: ir::BackendKind::Endpoints(ir::EndpointSet {
            protocol: ir::UpstreamProtocol::Http1,
            endpoints: vec![ir::Endpoint {
                address: "127.0.0.1".parse().expect("ip"),
                port,
            }],
            tls: None,
        }),
    }
}

fn route(name: &str, host: Option<ir::HostMatch>, backends: Vec<ir::Backend>) -> RouteEntry {
    RouteEntry {
        name: name.into(),
        hostname: host,
        total_weight: backends.iter().map(|b| u64::from(b.weight)).sum(),
        backends,
    }
}

/// Servers are selected exact-first, then by the longest wildcard, then the one
/// without hostname, and a selected server never falls through to another.
#[test]
fn selection() {
    let table = Table {
        servers: vec![
            ServerEntry {
                hostname: h("*.example.com"),
                routes: vec![route("wild-a", h("a.example.com"), vec![backend(1, 1)])],
            },
            ServerEntry {
                hostname: h("*.b.example.com"),
                routes: vec![route("deep", None, vec![backend(1, 2)])],
            },
            ServerEntry {
                hostname: None,
                routes: vec![
                    route("any", None, vec![backend(1, 3)]),
                    route("x-exact", h("x.other.com"), vec![backend(1, 4)]),
                    route("x-wild", h("*.other.com"), vec![backend(1, 5)]),
                ],
            },
        ],
    };
    let name = |sni: &str| table.select(sni).map(|r| r.name.clone());
    assert_eq!(name("a.example.com"), Ok("wild-a".into()));
    assert_eq!(name("c.b.example.com"), Ok("deep".into()));
    // Selected by *.example.com, which has no route for it: no fall-through to "any".
    assert_eq!(name("z.example.com"), Err(Refusal::NoRoute));
    assert_eq!(name("x.other.com"), Ok("x-exact".into()));
    assert_eq!(name("y.other.com"), Ok("x-wild".into()));
    assert_eq!(name("elsewhere.net"), Ok("any".into()));
    let only_named = Table {
        servers: vec![ServerEntry {
            hostname: h("a.example.com"),
            routes: vec![route("a", None, vec![backend(1, 1)])],
        }],
    };
    assert!(matches!(
        only_named.select("b.example.com"),
        Err(Refusal::NoServer)
    ));
}

/// Backends are picked by weight; weight 0 is never picked; an Invalid backend or
/// no weight at all refuses the connection.
#[test]
fn picks() {
    let mut rng = rand::rng();
    let r = route("r", None, vec![backend(0, 1), backend(3, 2), backend(1, 3)]);
    let mut counts = HashMap::new();
    for _ in 0..4000 {
        *counts
            .entry(r.pick(&mut rng).map(|a| a.port()).ok())
            .or_insert(0) += 1;
    }
    assert_eq!(counts.get(&Some(1)), None);
    let two = counts.get(&Some(2)).copied().unwrap_or(0);
    assert!((2700..3300).contains(&two), "{counts:?}");
    let invalid = ir::Backend {
        kind: ir::BackendKind::Invalid {
            reason: "Service ns/x does not exist.".into(),
            status: 500,
        },
        ..backend(1, 9)
    };
    assert!(matches!(
        route("bad", None, vec![invalid]).pick(&mut rng),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(
        route("none", None, vec![backend(0, 1)]).pick(&mut rng),
        Err(Refusal::NoBackend)
    );
    assert_eq!(
        route("empty", None, vec![]).pick(&mut rng),
        Err(Refusal::NoBackend)
    );
}
