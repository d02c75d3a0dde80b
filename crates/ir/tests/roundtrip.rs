//! The IR survives a JSON round trip unchanged, and its schema is generated.

use sluice_ir::*;
use std::collections::BTreeMap;

fn sample() -> Config {
    let src = Source {
        kind: "HTTPRoute".into(),
        namespace: "ns".into(),
        name: "r".into(),
        rule: Some(0),
        section: None,
        annotation: None,
    };
    let mut certificates = BTreeMap::new();
    certificates.insert(
        "ns/cert".to_string(),
        Certificate {
            name: "ns/cert".into(),
            cert_pem: "C".into(),
            key_pem: "K".into(),
        },
    );
    Config {
        generation: 7,
        certificates,
        listeners: vec![Listener {
            name: "127.0.1.1:443".into(),
            address: "127.0.1.1".parse().unwrap(),
            port: 443,
            protocol: Protocol::Https,
            servers: vec![Server {
                name: "gateway/ns/gw/https".into(),
                source: Source::object("Gateway", "ns", "gw"),
                hostname: Some(HostMatch::parse("*.Example.com")),
                tls: Some(ServerTls {
                    certificates: vec!["ns/cert".into()],
                    client_validation: None,
                }),
                passthrough: vec![],
                virtual_hosts: vec![VirtualHost {
                    hostname: None,
                    routes: vec![Route {
                        name: "httproute/ns/r/rule/0/match/0".into(),
                        source: src.clone(),
                        matcher: RouteMatch {
                            path: PathMatch::Exact("/a".into()),
                            headers: vec![HeaderMatch {
                                name: "x".into(),
                                value: StringMatch::Exact("1".into()),
                            }],
                            query_params: vec![QueryParamMatch {
                                name: "q".into(),
                                value: StringMatch::Regex("^a".into()),
                            }],
                            method: Some("GET".into()),
                        },
                        filters: vec![Filter::RequestHeaders(HeaderModifier {
                            set: vec![HeaderValue {
                                name: "a".into(),
                                value: "b".into(),
                            }],
                            add: vec![],
                            remove: vec!["c".into()],
                        })],
                        action: Action::Forward(Forward {
                            backends: vec![
                                Backend {
                                    name: "ns/svc:80".into(),
                                    source: src.clone(),
                                    weight: 3,
                                    filters: vec![],
                                    kind: BackendKind::Endpoints(EndpointSet {
                                        protocol: UpstreamProtocol::Http1,
                                        endpoints: vec![Endpoint {
                                            address: "10.0.0.1".parse().unwrap(),
                                            port: 8080,
                                        }],
                                        tls: None,
                                    }),
                                },
                                Backend {
                                    name: "ns/missing".into(),
                                    source: src,
                                    weight: 1,
                                    filters: vec![],
                                    kind: BackendKind::Invalid {
                                        reason: "not found".into(),
                                        status: 500,
                                    },
                                },
                            ],
                        }),
                        timeouts: Timeouts {
                            request_ms: Some(1000),
                            ..Default::default()
                        },
                        retry: Some(Retry {
                            codes: vec![500],
                            attempts: 2,
                            backoff_ms: None,
                            on_connection_error: true,
                        }),
                    }],
                }],
            }],
        }],
    }
}

/// A Config serialized to JSON and parsed back is equal to the original.
#[test]
fn json_round_trip() {
    let c = sample();
    let json = serde_json::to_string(&c).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(c, back);
    assert!(c.validate().is_ok());
}

/// Redaction hides private keys and nothing else.
#[test]
fn redacted_json_hides_keys() {
    let json = sample().to_redacted_json();
    assert!(json.contains("<redacted>"));
    assert!(!json.contains("\"K\""));
    assert!(json.contains("\"C\""));
}

/// Wildcards match one or more labels in front of the suffix, never the bare suffix.
#[test]
fn wildcard_host_matching() {
    let w = HostMatch::parse("*.example.com");
    assert!(w.matches("a.example.com"));
    assert!(w.matches("a.b.example.com"));
    assert!(!w.matches("example.com"));
    assert!(!w.matches("aexample.com"));
    assert!(HostMatch::parse("Foo.com").matches("foo.com"));
}

/// Validation reports every broken invariant.
#[test]
fn validation_reports_all_errors() {
    let mut c = sample();
    let l = c.listeners[0].clone();
    c.listeners.push(l);
    c.certificates.clear();
    let errs = c.validate().unwrap_err();
    assert!(errs
        .iter()
        .any(|e| matches!(e, ValidationError::DuplicateListener(..))));
    assert_eq!(
        errs.iter()
            .filter(|e| matches!(e, ValidationError::UnknownCertificate { .. }))
            .count(),
        2
    );
}

/// The JSON schema is generated and describes the top-level fields.
#[test]
fn schema_dump() {
    let schema = serde_json::to_value(Config::json_schema()).unwrap();
    let props = &schema["properties"];
    assert!(props.get("listeners").is_some());
    assert!(props.get("certificates").is_some());
}

/// The committed schema (`config/ir.schema.json`) is the one the types generate:
/// `cargo xtask schema` rewrites it after an IR change.
#[test]
fn committed_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ir.schema.json");
    let committed = std::fs::read_to_string(&path).expect("config/ir.schema.json exists");
    let generated = serde_json::to_string_pretty(&Config::json_schema()).unwrap() + "\n";
    assert!(
        committed == generated,
        "config/ir.schema.json is stale: run `cargo xtask schema`"
    );
}
