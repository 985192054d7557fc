#!/usr/bin/env bash
# Builds the three service binaries in release mode and puts them in dist/, where the Vagrant
# VMs take them from (the Vagrantfile runs this on Linux hosts before provisioning).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bins
target="${CARGO_TARGET_DIR:-target}/release"
mkdir -p dist
for binary in api-gateway inventory-app billing-app; do
    install -m 0755 "$target/$binary" "dist/$binary"
done
echo "built dist/{api-gateway,inventory-app,billing-app}"
