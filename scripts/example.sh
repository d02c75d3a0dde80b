#!/usr/bin/env bash
# Builds Sluice, starts the example backend and Sluice on config/examples/basic, and
# sends one request through it. Sluice keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -p sluice --bin sluice
python3 -m http.server 8081 --bind 127.0.0.1 --directory config/examples/basic/www >/tmp/sluice-example-backend.log 2>&1 &
backend=$!
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null http://127.0.0.1:8081/ 2>/dev/null; then break; fi
  sleep 0.1
done
target/release/sluice run --manifests config/examples/basic --admin-addr 127.0.0.1:9901 &
sluice=$!
trap 'kill $sluice $backend 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:9901/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
echo "+ curl -sS http://127.0.1.1:8080/ -H 'Host: hello.example'"
curl -sS --retry 20 --retry-connrefused --retry-delay 0 http://127.0.1.1:8080/ -H 'Host: hello.example'
echo "Sluice is serving config/examples/basic (admin on 127.0.0.1:9901: /status /config /metrics). Ctrl-C stops it."
wait $sluice
