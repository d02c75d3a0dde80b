//! Every manifest of the shared conformance suite (when present beside the workspace)
//! parses and translates without panicking; the kinds the Store holds deserialize into
//! their typed structs (the experimental Gateway API types read standard manifests).
use sluice_controller::pipeline::Pipeline;
use sluice_controller::source::parse::parse_manifest;
use sluice_controller::{translate, Settings};
use std::path::Path;

/// Pins that conformance manifests are read (no parse error) and translate.
#[test]
fn conformance_manifests_parse_and_translate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/gateway-api/manifests");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("{} not present: skipped", dir.display());
        return;
    };
    let settings = Settings {
        controller_name: "example.net/gateway-controller".into(),
        ..Default::default()
    };
    let base = std::fs::read_to_string(dir.join("base.yaml")).unwrap();
    let subst = |t: &str| {
        t.replace("{GATEWAY_CLASS_NAME}", "conformance")
            .replace("{CONTROLLER_NAME}", &settings.controller_name)
    };
    let base_objects = parse_manifest(&subst(&base), false).expect("base.yaml parses");
    let mut failures = Vec::new();
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.display().to_string();
        if !name.ends_with(".yaml") {
            continue;
        }
        let text = subst(&std::fs::read_to_string(&path).unwrap());
        match parse_manifest(&text, false) {
            Ok(objects) => {
                let mut all = base_objects.clone();
                all.extend(objects);
                let mut p = Pipeline::new(settings.clone());
                let (store, _) = p.build_store(&all, chrono::Utc::now());
                let t = translate(&store, &settings);
                if let Err(e) = t.config.validate() {
                    failures.push(format!("{name}: IR does not validate: {e:?}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
