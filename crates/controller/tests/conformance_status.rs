//! The status expectations of shared conformance cases (when the suite is present beside
//! the workspace), checked on translation alone, without a proxy: each case's manifests
//! (after the suite's setup files) are translated and the statuses compared the way
//! `run.py` compares `/status` (conditions by type with the listed fields, listeners by
//! name, parents and ancestors by the listed reference fields, addresses present).
use serde_json::Value;
use sluice_controller::pipeline::Pipeline;
use sluice_controller::source::parse::parse_manifest;
use sluice_controller::{translate, Settings};
use std::path::Path;

/// Cases whose status expectations translation alone must meet.
const CASES: &[&str] = &[
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRetry",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteRetryWithTimeouts",
    "HTTPRouteCORS",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayFrontendInvalidDefaultClientCertificateValidation",
    "GatewayInvalidFrontendClientCertificateValidation",
    "GatewayTLSBackendClientCertificate",
    "GatewayInvalidTLSBackendConfiguration",
];

fn field_problems(label: &str, want: &Value, got: &Value, skip: &[&str]) -> Vec<String> {
    let Some(want) = want.as_object() else {
        return vec![];
    };
    want.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter(|(k, v)| got.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{label}: {k} {:?} (want {v})", got.get(k.as_str())))
        .collect()
}

fn condition_problems(label: &str, want: &Value, have: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for w in want.as_array().into_iter().flatten() {
        let got = have
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c.get("type") == w.get("type"));
        match got {
            None => out.push(format!("{label}: no {} condition", w["type"])),
            Some(c) => out.extend(field_problems(
                &format!("{label} condition {}", w["type"]),
                w,
                c,
                &[],
            )),
        }
    }
    out
}

fn ref_matches(want: &Value, got: &Value, namespace: &str) -> bool {
    let mut full = serde_json::json!({
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": namespace,
    });
    for (k, v) in got.as_object().into_iter().flatten() {
        full[k] = v.clone();
    }
    want.as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| full.get(k) == Some(v))
}

fn refs_problems(who: &str, want: &Value, have: &Value, ns: &str, key: &str) -> Vec<String> {
    let r = &want[key];
    let matching: Vec<&Value> = have
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| ref_matches(r, &p[key], ns))
        .collect();
    if matching.is_empty() {
        return vec![format!("{who}: {key} {r} not listed")];
    }
    matching
        .iter()
        .map(|p| {
            condition_problems(
                &format!("{who} {key} {r}"),
                &want["conditions"],
                &p["conditions"],
            )
        })
        .min_by_key(Vec::len)
        .unwrap_or_default()
}

fn status_problems(want: &Value, objects: &[Value]) -> Vec<String> {
    let ns = want["namespace"].as_str().unwrap_or("");
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let who = format!("{} {ns}/{}", s(&want["kind"]), s(&want["name"]));
    let obj = objects.iter().find(|o| {
        o["kind"] == want["kind"]
            && o["metadata"]["namespace"].as_str().unwrap_or("") == ns
            && o["metadata"]["name"] == want["name"]
    });
    let Some(obj) = obj else {
        return vec![format!("{who} not listed")];
    };
    let status = &obj["status"];
    let mut out = condition_problems(&who, &want["conditions"], &status["conditions"]);
    if let Some(a) = want["addresses"].as_bool() {
        let has = status["addresses"]
            .as_array()
            .is_some_and(|v| !v.is_empty());
        if has != a {
            out.push(format!("{who}: addresses {}", status["addresses"]));
        }
    }
    for p in want["parents"].as_array().into_iter().flatten() {
        out.extend(refs_problems(&who, p, &status["parents"], ns, "parentRef"));
    }
    for p in want["ancestors"].as_array().into_iter().flatten() {
        out.extend(refs_problems(
            &who,
            p,
            &status["ancestors"],
            ns,
            "ancestorRef",
        ));
    }
    for l in want["listeners"].as_array().into_iter().flatten() {
        let got = status["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == l["name"]);
        match got {
            None => out.push(format!("{who}: listener {} not listed", l["name"])),
            Some(g) => out.extend(condition_problems(
                &format!("{who} listener {}", l["name"]),
                &l["conditions"],
                &g["conditions"],
            )),
        }
    }
    out
}

#[test]
fn conformance_case_statuses() {
    let suite =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/gateway-api");
    let Ok(suite_json) = std::fs::read_to_string(suite.join("suite.json")) else {
        eprintln!("{} not present: skipped", suite.display());
        return;
    };
    let suite_json: Value = serde_json::from_str(&suite_json).unwrap();
    let settings = Settings {
        controller_name: "sluice.dev/gateway-controller".into(),
        ..Default::default()
    };
    let read = |rel: &str| {
        let mut t = std::fs::read_to_string(suite.join(rel)).unwrap();
        for (k, v) in suite_json["substitutions"]
            .as_object()
            .into_iter()
            .flatten()
        {
            t = t.replace(k, v.as_str().unwrap());
        }
        t = t.replace("{CONTROLLER_NAME}", &settings.controller_name);
        parse_manifest(&t, false).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let mut cases: Vec<Value> = Vec::new();
    for part in std::fs::read_dir(suite.join("cases")).unwrap() {
        let text = std::fs::read_to_string(part.unwrap().path()).unwrap();
        cases.extend(serde_json::from_str::<Vec<Value>>(&text).unwrap());
    }
    // `SLUICE_STATUS_ALL=1`: report on every case of the suite instead (no assertion).
    let all = std::env::var_os("SLUICE_STATUS_ALL").is_some();
    let names: Vec<String> = if all {
        cases
            .iter()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    } else {
        CASES.iter().map(|s| s.to_string()).collect()
    };
    let mut failures = Vec::new();
    for name in &names {
        let case = cases
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap_or_else(|| panic!("case {name} not in the suite"));
        let mut objects = Vec::new();
        for rel in suite_json["setup"].as_array().unwrap() {
            objects.extend(read(rel.as_str().unwrap()));
        }
        for rel in case["manifests"].as_array().unwrap() {
            objects.extend(read(rel.as_str().unwrap()));
        }
        let mut p = Pipeline::new(settings.clone());
        let (store, _) = p.build_store(&objects, chrono::Utc::now());
        let t = translate(&store, &settings);
        let report = serde_json::to_value(&t.statuses).unwrap();
        let listed = report["objects"].as_array().unwrap();
        for want in case["status"].as_array().into_iter().flatten() {
            for problem in status_problems(want, listed) {
                failures.push(format!("{name}: {problem}"));
            }
        }
    }
    if all {
        for f in &failures {
            println!("{f}");
        }
        let failed: std::collections::BTreeSet<&str> = failures
            .iter()
            .filter_map(|f| f.split(':').next())
            .collect();
        println!(
            "{} of {} cases meet their status expectations",
            names.len() - failed.len(),
            names.len()
        );
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
