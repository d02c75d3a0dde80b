//! Translation golden tests: `testdata/translate/gateway-api/<case>.in.yaml` (the
//! manifests, exactly what `--manifests` reads) → `<case>.out.yaml` =
//! `{ir, statuses, notices}`, timestamps zeroed, from sorted structures.
//!
//! - A leading `# settings: {"controllerName": ..., "gatewayAddressPool": ...}` comment
//!   sets per-case settings.
//! - A leading `# same-as: <case>` comment says the output must equal that case's
//!   (shuffled-input goldens).
//! - Every case is also translated with its documents in reverse order, and the output
//!   must be byte-identical (determinism).
//! - `UPDATE_GOLDEN=1 cargo test -p sluice-controller --test translate_golden` rewrites
//!   the `.out.yaml` files.
use serde::Serialize;
use sluice_controller::pipeline::Pipeline;
use sluice_controller::source::parse::{parse_manifest, RawObject};
use sluice_controller::{translate, Notice, Settings, StatusReport};
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct Golden<'a> {
    ir: &'a sluice_ir::Config,
    statuses: &'a StatusReport,
    notices: &'a [Notice],
}

fn settings_for(text: &str) -> Settings {
    let mut settings = Settings::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("# settings:") {
            let v: serde_json::Value =
                serde_json::from_str(rest.trim()).expect("settings comment is JSON");
            if let Some(c) = v.get("controllerName").and_then(|v| v.as_str()) {
                settings.controller_name = c.to_string();
            }
            if let Some(p) = v.get("gatewayAddressPool").and_then(|v| v.as_str()) {
                settings.gateway_address_pool = p.parse().expect("pool");
            }
        }
    }
    settings
}

fn same_as(text: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix("# same-as:").map(|s| s.trim().to_string()))
}

fn render(objects: &[RawObject], settings: &Settings) -> String {
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut pipeline = Pipeline::new(settings.clone());
    let (store, mut notices) = pipeline.build_store(objects, now);
    let t = translate(&store, settings);
    if let Err(errors) = t.config.validate() {
        panic!("translated IR does not validate: {errors:?}");
    }
    notices.extend(t.notices.iter().cloned());
    notices.sort();
    let mut statuses = t.statuses.clone();
    statuses.zero_times();
    let golden = Golden {
        ir: &t.config,
        statuses: &statuses,
        notices: &notices,
    };
    serde_yaml::to_string(&golden).expect("serializable")
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    v.sort();
    v
}

/// Pins the IR, statuses and notices of every translation case, and that document
/// order does not matter.
#[test]
fn gateway_api_goldens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate/gateway-api");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let all = cases(&dir);
    assert!(!all.is_empty(), "no golden cases in {}", dir.display());
    for input in all {
        let name = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".in.yaml")
            .to_string();
        let text = std::fs::read_to_string(&input).unwrap();
        let settings = settings_for(&text);
        let objects = parse_manifest(&text, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = render(&objects, &settings);
        let mut reversed = objects.clone();
        reversed.reverse();
        if render(&reversed, &settings) != got {
            failures.push(format!("{name}: output depends on input order"));
        }
        let expected_name = same_as(&text).unwrap_or_else(|| name.clone());
        let out = dir.join(format!("{expected_name}.out.yaml"));
        if update && expected_name == name {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&out) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{name}: output differs from {}:\n{}",
                out.display(),
                diff(&want, &got)
            )),
            Err(_) => failures.push(format!(
                "{name}: {} missing (run with UPDATE_GOLDEN=1)",
                out.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A minimal line diff for failure messages.
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i).copied(), g.get(i).copied());
        if a != b {
            out.push_str(&format!(
                "line {}:\n- {}\n+ {}\n",
                i + 1,
                a.unwrap_or(""),
                b.unwrap_or("")
            ));
            if out.len() > 4000 {
                break;
            }
        }
    }
    out
}
