#!/usr/bin/env bash
# Builds the three service binaries in release mode and puts them in dist/, where the Vagrant
# VMs take them from (the Vagrantfile runs this on Linux hosts before provisioning). A
# MOVIE_BUILD_ID in the environment names the build (the services' build_info metric).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bins
target="${CARGO_TARGET_DIR:-target}/release"
mkdir -p dist
# Without debug info (function names stay, for backtraces): a quarter of the size to send to
# each VM. -C: an unchanged binary keeps its timestamp, so rsync does not send it again.
stripped="$(mktemp -d)"
trap 'rm -rf "$stripped"' EXIT
for binary in api-gateway inventory-app billing-app; do
    objcopy --strip-debug "$target/$binary" "$stripped/$binary"
    install -C -m 0755 "$stripped/$binary" "dist/$binary"
done
echo "built dist/{api-gateway,inventory-app,billing-app}"
