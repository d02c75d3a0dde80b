//! Router goldens: every `testdata/router/<case>.yaml` holds a hand-written IR and
//! requests with the route each must select (or 404). Pins host selection, listener
//! isolation, virtual-host fall-through and every kind of match.

use serde::Deserialize;
use sluice_proxy::router::{compile, normalize_host, RequestView};
use sluice_proxy::Metrics;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Free space for YAML anchors shared by the IR.
    #[serde(default)]
    #[allow(dead_code)]
    anchors: serde_yaml::Value,
    ir: sluice_ir::Config,
    /// Number of compile errors expected (bad regexes and the like).
    #[serde(default)]
    errors: usize,
    requests: Vec<Request>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// Listener name; default: the first listener.
    #[serde(default)]
    listener: Option<String>,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    host: String,
    /// Path with optional `?query`.
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
    /// Route name, or 404.
    expect: serde_yaml::Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn get() -> String {
    "GET".into()
}

fn run(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read case");
    let case: Case =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (router, errors) = compile(&case.ir, &Metrics::default());
    let mut failures = Vec::new();
    if errors.len() != case.errors {
        failures.push(format!(
            "expected {} compile errors, got {errors:?}",
            case.errors
        ));
    }
    for (i, r) in case.requests.iter().enumerate() {
        let listener = match &r.listener {
            Some(name) => router.listener_by_name(name).expect("listener exists"),
            None => 0,
        };
        let mut headers = http::HeaderMap::new();
        for (name, values) in &r.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
            let values = match values {
                OneOrMany::One(v) => vec![v.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            for v in values {
                headers.append(name.clone(), v.parse().expect("header value"));
            }
        }
        let method = http::Method::from_bytes(r.method.as_bytes()).expect("method");
        let host = normalize_host(&r.host);
        let (p, q) = match r.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (r.path.as_str(), None),
        };
        let view = RequestView {
            method: &method,
            host: &host,
            path: p,
            query: q,
            headers: &headers,
        };
        let got = match router.select(listener, &view) {
            Some(route) => router.route(route).name.to_string(),
            None => "404".to_string(),
        };
        let want = match &r.expect {
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s.clone(),
            other => panic!("bad expect {other:?}"),
        };
        if got != want {
            failures.push(format!(
                "request #{i} {} {}{} (headers {:?}): want {want}, got {got}",
                r.method, r.host, r.path, headers
            ));
        }
    }
    failures
}

/// Runs every case file and reports every failing request.
#[test]
fn router_goldens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/router");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/router")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 9,
        "expected the router cases, found {files:?}"
    );
    let mut report = String::new();
    for f in &files {
        for failure in run(f) {
            report.push_str(&format!(
                "{}: {failure}\n",
                f.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    assert!(report.is_empty(), "router golden failures:\n{report}");
}
