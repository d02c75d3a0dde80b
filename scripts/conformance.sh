#!/usr/bin/env bash
# Runs the shared Gateway API conformance runner against the release binary.
#   scripts/conformance.sh               the whole suite (prints PASS/FAIL per case)
#   scripts/conformance.sh --must-pass   only the cases in e2e/conformance/must-pass.txt;
#                                        fails if any of them fails
# Extra arguments go to run.py (e.g. --case 'HTTPRouteWeight' -v).
set -euo pipefail
cd "$(dirname "$0")/.."
suite_dir="${CONFORMANCE_DIR:-../shared/conformance}"
if [ ! -f "$suite_dir/run.py" ]; then
  echo "conformance runner not found at $suite_dir; skipping"
  exit 0
fi
# SLUICE_PROFILE=debug reuses the test build (CI does, to save a release build).
profile="${SLUICE_PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release -p sluice --bin sluice
else
  cargo build -p sluice --bin sluice
fi
bin="${CARGO_TARGET_DIR:-$(pwd)/target}/$profile/sluice"
args=(--suite "$suite_dir/gateway-api" --controller-name sluice.dev/gateway-controller
      --cmd "$bin run --manifests {manifests} --admin-addr {admin}")
if [ "${1:-}" = "--must-pass" ]; then
  shift
  cases=$(grep -v '^\s*#' e2e/conformance/must-pass.txt | grep -v '^\s*$' | paste -sd'|')
  if [ -z "$cases" ]; then
    echo "must-pass list is empty"
    exit 1
  fi
  out=$(mktemp)
  set +e
  python3 "$suite_dir/run.py" "${args[@]}" --case "^($cases)\$" --json "$out" "$@"
  set -e
  # Every listed case must have run and passed (a skip counts as a failure here).
  python3 - "$out" e2e/conformance/must-pass.txt <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
want = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith('#')]
got = {c["name"]: c["result"] for c in res["cases"]}
bad = [f"{n}: {got.get(n, 'not run')}" for n in want if got.get(n) != "PASS"]
if bad:
    print("must-pass conformance cases that did not pass:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"{len(want)} must-pass conformance cases passed")
PY
else
  python3 "$suite_dir/run.py" "${args[@]}" "$@"
fi
