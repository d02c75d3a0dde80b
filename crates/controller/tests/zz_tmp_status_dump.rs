//! TEMPORARY (not for commit): dumps statuses of conformance cases for run.py's checker.
use sluice_controller::pipeline::Pipeline;
use sluice_controller::source::parse::parse_manifest;
use sluice_controller::{translate, Settings};

#[test]
fn dump() {
    let Ok(spec) = std::env::var("DUMP_SPEC") else {
        return;
    };
    // lines: out_path|file1,file2,...
    let settings = Settings {
        controller_name: "sluice.dev/gateway-controller".into(),
        ..Default::default()
    };
    for line in spec.lines().filter(|l| !l.is_empty()) {
        let (out, files) = line.split_once('|').unwrap();
        let mut all = Vec::new();
        for f in files.split(',') {
            let t = std::fs::read_to_string(f)
                .unwrap()
                .replace("{GATEWAY_CLASS_NAME}", "conformance")
                .replace("{CONTROLLER_NAME}", &settings.controller_name);
            all.extend(parse_manifest(&t, false).unwrap());
        }
        let mut p = Pipeline::new(settings.clone());
        let (store, _) = p.build_store(&all, chrono::Utc::now());
        let t = translate(&store, &settings);
        let ir = serde_json::to_string_pretty(&t.config).unwrap();
        std::fs::write(format!("{out}.ir.json"), ir).unwrap();
        std::fs::write(out, serde_json::to_string_pretty(&t.statuses).unwrap()).unwrap();
    }
}
