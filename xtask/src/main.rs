//! Developer tasks: `cargo xtask <task>`.
//!
//! - `schema`: writes the IR's JSON schema to `config/ir.schema.json`.
//! - `golden`: regenerates translation golden files (`UPDATE_GOLDEN=1`), for review.
//! - `conformance [--debug] [--report] [ARGS...]`: builds the release (or debug) binary and runs the shared Gateway API
//!   conformance runner on it; extra arguments go to `run.py`. With `--report`, the
//!   results are also written to `docs/conformance.md` in the shape of an upstream
//!   conformance report (features with the cases that exercise them).
//! - `bench [--quick] [--only NAME]`: the performance benchmarks (docs/benchmarks.md).

mod bench;
mod bench_gen;
mod bench_proxy;
mod bench_reload;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "schema" => schema(),
        "golden" => golden(),
        "conformance" => conformance(&rest),
        "bench" => bench::run(&root(), &rest),
        _ => {
            eprintln!("usage: cargo xtask <schema|golden|conformance [run.py args]|bench [--quick] [--only NAME]>");
            bail!("unknown task {task:?}")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn schema() -> Result<()> {
    let schema = sluice_ir::Config::json_schema();
    let path = root().join("config/ir.schema.json");
    let text = serde_json::to_string_pretty(&schema)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn golden() -> Result<()> {
    let status = Command::new(cargo())
        .args(["test", "-p", "sluice-controller", "-p", "sluice-proxy"])
        .env("UPDATE_GOLDEN", "1")
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("golden regeneration failed");
    }
    println!("golden files rewritten; review them with `git diff`");
    Ok(())
}

fn conformance(extra: &[String]) -> Result<()> {
    let root = root();
    let report = extra.iter().any(|a| a == "--report");
    let debug = extra.iter().any(|a| a == "--debug");
    let mut extra: Vec<String> = extra
        .iter()
        .filter(|a| *a != "--report" && *a != "--debug")
        .cloned()
        .collect();
    let json_path =
        std::env::temp_dir().join(format!("sluice-conformance-{}.json", std::process::id()));
    if report {
        extra.push("--json".to_string());
        extra.push(json_path.display().to_string());
    }
    let profile = if debug { "debug" } else { "release" };
    let mut build = Command::new(cargo());
    build.args(["build", "-p", "sluice"]).current_dir(&root);
    if !debug {
        build.arg("--release");
    }
    if !build.status()?.success() {
        bail!("{profile} build failed");
    }
    let shared = root.join("../shared/conformance");
    if !shared.join("run.py").exists() {
        bail!("{} not found", shared.join("run.py").display());
    }
    let bin = root.join("target").join(profile).join("sluice");
    let cmd = format!(
        "{} run --manifests {{manifests}} --admin-addr {{admin}}",
        bin.display()
    );
    let status = Command::new("python3")
        .arg(shared.join("run.py"))
        .arg("--suite")
        .arg(shared.join("gateway-api"))
        .args([
            "--controller-name",
            "sluice.dev/gateway-controller",
            "--cmd",
            &cmd,
        ])
        .args(&extra)
        .current_dir(&root)
        .status()?;
    if report {
        write_report(&root, &shared.join("gateway-api"), &json_path, profile)?;
    }
    if !status.success() {
        bail!("conformance run reported failures");
    }
    Ok(())
}

/// Writes `docs/conformance.md` from a run's JSON results and the suite's case files.
fn write_report(root: &Path, suite: &Path, results: &Path, profile: &str) -> Result<()> {
    use std::collections::BTreeMap;
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(results)
            .with_context(|| format!("reading {}", results.display()))?,
    )?;
    let mut outcome: BTreeMap<String, (String, String)> = BTreeMap::new();
    for case in results["cases"].as_array().into_iter().flatten() {
        let name = case["name"].as_str().unwrap_or_default().to_string();
        let result = case["result"].as_str().unwrap_or_default().to_string();
        let reason = case["reason"].as_str().unwrap_or_default().to_string();
        outcome.insert(name, (result, reason));
    }
    // feature -> cases
    let mut features: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cases_dir: Vec<PathBuf> = std::fs::read_dir(suite.join("cases"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases_dir.sort();
    for file in cases_dir {
        let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        for case in cases.as_array().into_iter().flatten() {
            let name = case["name"].as_str().unwrap_or_default().to_string();
            for f in case["features"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str() {
                    features
                        .entry(f.to_string())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
    }
    let passed = outcome.values().filter(|(r, _)| r == "PASS").count();
    let failed = outcome.values().filter(|(r, _)| r == "FAIL").count();
    let skipped = outcome.values().filter(|(r, _)| r == "SKIP").count();
    let mut md = String::new();
    md.push_str("# Gateway API conformance report\n\n");
    md.push_str(
        "Generated by `cargo xtask conformance --report` from a run of the shared black-box\n",
    );
    md.push_str(
        "runner (`../shared/conformance/run.py`) on the Gateway API v1.6 cases, against the\n",
    );
    md.push_str(&format!(
        "{profile} binary in folder mode. Do not edit by hand.\n\n"
    ));
    md.push_str("```yaml\nimplementation:\n  project: sluice\n  controllerName: sluice.dev/gateway-controller\n");
    md.push_str("gatewayAPIVersion: v1.6\nmode: default (folder mode)\n");
    md.push_str(&format!(
        "summary:\n  passed: {passed}\n  failed: {failed}\n  skipped: {skipped}\n```\n\n"
    ));
    md.push_str(
        "## Features\n\nA feature is *supported* when every case that exercises it passes.\n\n",
    );
    md.push_str("| feature | status | cases passed |\n|---|---|---|\n");
    for (feature, cases) in &features {
        let ran: Vec<&String> = cases.iter().filter(|c| outcome.contains_key(*c)).collect();
        let ok = ran
            .iter()
            .filter(|c| outcome.get(**c).is_some_and(|(r, _)| r == "PASS"))
            .count();
        let status = if ran.is_empty() {
            "not run"
        } else if ok == cases.len() {
            "supported"
        } else if ok == 0 {
            "not supported"
        } else {
            "partial"
        };
        md.push_str(&format!(
            "| {feature} | {status} | {ok}/{} |\n",
            cases.len()
        ));
    }
    md.push_str("\n## Cases\n\n| case | result | reason |\n|---|---|---|\n");
    for (name, (result, reason)) in &outcome {
        let reason = reason.replace('|', "\\|");
        md.push_str(&format!("| {name} | {result} | {reason} |\n"));
    }
    let path = root.join("docs/conformance.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
