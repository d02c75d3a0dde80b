#!/usr/bin/env bash
# Installs what building and testing Sluice needs on Debian/Ubuntu, when missing:
# cmake and a C toolchain (Pingora's build), OpenSSL headers and pkg-config (TLS),
# python3 (the conformance runner) and its optional `h2` package (HTTP/2 cases).
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs), then run this again" >&2
  exit 1
fi
if ! python3 -c 'import h2' >/dev/null 2>&1; then
  python3 -m pip install -q h2 2>/dev/null || python3 -m pip install -q --break-system-packages h2 \
    || echo "warning: could not install python h2; HTTP/2 conformance cases will be skipped"
fi
echo "build dependencies present"
