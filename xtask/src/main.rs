//! Developer tasks: `cargo xtask <task>`.
//!
//! - `schema`: writes the IR's JSON schema to `config/ir.schema.json`.
//! - `golden`: regenerates translation golden files (`UPDATE_GOLDEN=1`), for review.
//! - `conformance [ARGS...]`: builds the release binary and runs the shared Gateway API
//!   conformance runner on it; extra arguments go to `run.py`.

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
        _ => {
            eprintln!("usage: cargo xtask <schema|golden|conformance [run.py args]>");
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
    let status = Command::new(cargo())
        .args(["build", "--release", "-p", "sluice"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("release build failed");
    }
    let shared = root.join("../shared/conformance");
    if !shared.join("run.py").exists() {
        bail!("{} not found", shared.join("run.py").display());
    }
    let bin = root.join("target/release/sluice");
    let cmd = format!("{} run --manifests {{manifests}} --admin-addr {{admin}}", bin.display());
    let status = Command::new("python3")
        .arg(shared.join("run.py"))
        .arg("--suite")
        .arg(shared.join("gateway-api"))
        .args(["--controller-name", "sluice.dev/gateway-controller", "--cmd", &cmd])
        .args(extra)
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("conformance run reported failures");
    }
    Ok(())
}
