#!/usr/bin/env bash
# The test command: every unit, golden and end-to-end test of the workspace.
# (The e2e tests build and start the real `sluice` binary themselves.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p sluice --bin sluice
cargo test --workspace --all-targets
