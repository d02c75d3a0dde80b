//! Small pure pieces: label selectors, durations, transition-time stamping, dataplane
//! feedback on a bare report.
use sluice_controller::status::{
    self, Condition, GatewayStatus, ListenerStatus, ObjectStatus, Status, StatusMetadata,
};
use sluice_controller::translate::graph::selector_matches;
use sluice_controller::translate::lower::parse_duration_ms;
use sluice_controller::StatusReport;
use std::collections::BTreeMap;

/// matchLabels and every matchExpressions operator; unknown operators match nothing.
#[test]
fn label_selectors() {
    use gateway_api::apis::experimental::gateways::{
        GatewayListenersAllowedRoutesNamespacesSelector as Sel,
        GatewayListenersAllowedRoutesNamespacesSelectorMatchExpressions as Expr,
    };
    let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
    let expr = |op: &str, values: Option<Vec<&str>>| Sel {
        match_labels: None,
        match_expressions: Some(vec![Expr {
            key: "a".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        }]),
    };
    assert!(
        selector_matches(&Sel::default(), &labels),
        "empty selector matches all"
    );
    assert!(selector_matches(
        &Sel {
            match_labels: Some(labels.clone()),
            match_expressions: None
        },
        &labels
    ));
    assert!(selector_matches(&expr("In", Some(vec!["1", "2"])), &labels));
    assert!(!selector_matches(&expr("NotIn", Some(vec!["1"])), &labels));
    assert!(selector_matches(&expr("Exists", None), &labels));
    assert!(!selector_matches(&expr("DoesNotExist", None), &labels));
    assert!(!selector_matches(&expr("Bogus", None), &labels));
}

/// Gateway API durations.
#[test]
fn durations() {
    assert_eq!(parse_duration_ms("10s"), Some(10_000));
    assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
    assert_eq!(parse_duration_ms("500ms"), Some(500));
    assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
    assert_eq!(parse_duration_ms("0s"), Some(0));
    assert_eq!(parse_duration_ms(""), None);
    assert_eq!(parse_duration_ms("10"), None);
    assert_eq!(parse_duration_ms("s"), None);
}

fn cond(type_: &str, status: &str, reason: &str, time: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: "M.".into(),
        observed_generation: 1,
        last_transition_time: time.into(),
    }
}

fn report(programmed: &str, reason: &str, time: &str) -> StatusReport {
    StatusReport {
        objects: vec![ObjectStatus {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "Gateway".into(),
            metadata: StatusMetadata {
                namespace: Some("ns".into()),
                name: "gw".into(),
                generation: 1,
            },
            status: Status::Gateway(GatewayStatus {
                addresses: vec![],
                conditions: vec![cond("Programmed", programmed, reason, time)],
                listeners: vec![ListenerStatus {
                    name: "http".into(),
                    supported_kinds: vec![],
                    attached_routes: 0,
                    conditions: vec![cond("Programmed", programmed, reason, time)],
                }],
            }),
        }],
    }
}

/// A condition keeps its lastTransitionTime while status and reason stay; any change
/// stamps `now`.
#[test]
fn stamping() {
    let prev = report("True", "Programmed", "2020-01-01T00:00:00Z");
    let mut same = report("True", "Programmed", status::ZERO_TIME);
    status::stamp(&mut same, &prev, "2021-01-01T00:00:00Z");
    assert_eq!(same, prev);
    let mut changed = report("False", "Invalid", status::ZERO_TIME);
    status::stamp(&mut changed, &prev, "2021-01-01T00:00:00Z");
    assert_eq!(changed, report("False", "Invalid", "2021-01-01T00:00:00Z"));
    assert!(changed.equal_ignoring_times(&report("False", "Invalid", "x")));
}

/// Feedback applies only to the generation the proxy reports on, and only to the
/// Gateway listeners behind the failed IR listener.
#[test]
fn dataplane_feedback() {
    let config: sluice_ir::Config = serde_json::from_value(serde_json::json!({
        "generation": 3,
        "listeners": [{
            "name": "127.0.1.1:80", "address": "127.0.1.1", "port": 80, "protocol": "HTTP",
            "servers": [{"name": "gateway/ns/gw/http",
                         "source": {"kind": "Gateway", "namespace": "ns", "name": "gw", "section": "http"},
                         "virtualHosts": []}]
        }]
    }))
    .unwrap();
    let mut applied = sluice_ir::Applied {
        generation: 2,
        ..Default::default()
    };
    applied
        .listener_errors
        .insert("127.0.1.1:80".into(), "Address in use".into());
    let mut r = report("True", "Programmed", status::ZERO_TIME);
    status::apply_dataplane_feedback(&mut r, &applied, &config);
    assert_eq!(
        r,
        report("True", "Programmed", status::ZERO_TIME),
        "stale report ignored"
    );
    applied.generation = 3;
    status::apply_dataplane_feedback(&mut r, &applied, &config);
    let Status::Gateway(g) = &r.objects[0].status else {
        panic!()
    };
    assert_eq!(g.conditions[0].status, "False");
    assert_eq!(g.listeners[0].conditions[0].status, "False");
    assert_eq!(g.listeners[0].conditions[1].reason, "PortUnavailable");
}

/// CORS: the spec's defaults (maxAge 5, no credentials) and origin validation.
#[test]
fn cors_defaults_and_origins() {
    use gateway_api::apis::experimental::httproutes::HttpRouteRulesFiltersCors as Cors;
    use sluice_controller::translate::lower::cors;
    let c = cors(&Cors {
        allow_origins: Some(vec!["https://*.example.com".into(), "*".into()]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.max_age_s, Some(5));
    assert!(!c.allow_credentials);
    for ok in ["http://a.b:8080", "https://x", "*"] {
        let v = Cors {
            allow_origins: Some(vec![ok.into()]),
            ..Default::default()
        };
        assert!(cors(&v).is_ok(), "{ok}");
    }
    for bad in [
        "ftp://a.b",
        "https://a.b/path",
        "a.b",
        "https://a.*.b",
        "http://a:0",
        "http://",
    ] {
        let v = Cors {
            allow_origins: Some(vec![bad.into()]),
            ..Default::default()
        };
        assert!(cors(&v).is_err(), "{bad}");
    }
    let neg = Cors {
        max_age: Some(-1),
        ..Default::default()
    };
    assert!(cors(&neg).is_err());
}

/// Retry: connection errors always retried, implementation default for attempts, bad
/// parts left out with a message.
#[test]
fn retry_policy() {
    use gateway_api::apis::experimental::httproutes::HttpRouteRulesRetry as Retry;
    use sluice_controller::translate::lower::{retry, DEFAULT_RETRY_ATTEMPTS};
    let (r, msg) = retry(&Retry::default());
    assert_eq!(r.attempts, DEFAULT_RETRY_ATTEMPTS);
    assert!(r.on_connection_error && r.codes.is_empty() && r.backoff_ms.is_none());
    assert!(msg.is_none());
    let (r, msg) = retry(&Retry {
        attempts: Some(3),
        backoff: Some("1m30s".into()),
        codes: Some(vec![500, 500, 399, 503]),
    });
    assert_eq!((r.attempts, r.backoff_ms), (3, Some(90_000)));
    assert_eq!(r.codes, vec![500, 503]);
    assert!(msg.unwrap().contains("399"));
}

/// BackendTLSPolicy lookup: a policy naming the port wins over one for the Service.
#[test]
fn backend_tls_lookup() {
    use sluice_controller::translate::backend::BackendTlsTable;
    use sluice_controller::ObjectKey;
    let svc = ObjectKey::new("ns", "svc");
    let mut t = BackendTlsTable::default();
    t.by_target.insert((svc.clone(), None), vec![0, 2]);
    t.by_target
        .insert((svc.clone(), Some("admin".into())), vec![1]);
    assert_eq!(t.lookup(&svc, "admin"), Some(&[1][..]));
    assert_eq!(t.lookup(&svc, "http"), Some(&[0, 2][..]));
    assert_eq!(t.lookup(&svc, ""), Some(&[0, 2][..]));
    assert_eq!(t.lookup(&ObjectKey::new("ns", "other"), "admin"), None);
}
