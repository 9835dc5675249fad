#!/usr/bin/env bash
# Installs what factoryOS's build and tests need on a fresh machine, and
# checks the toolchain. Idempotent; safe to run on every test run.
set -euo pipefail

# System packages the tests use: the DejaVu font for the run's PNG plots;
# iproute2 (ip netns, veth, bridges) and nftables for the partition
# harness's network-namespace hosts.
PACKAGES=(fonts-dejavu-core iproute2 nftables)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

for tool in cargo rustfmt cargo-clippy; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup: $tool is missing; install the Rust toolchain with rustfmt and clippy (rustup component add rustfmt clippy)" >&2
    exit 1
  fi
done
echo "setup: $(cargo --version), $(rustfmt --version)"
