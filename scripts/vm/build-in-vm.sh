#!/usr/bin/env bash
# Builds one service binary inside a VM, for hosts that cannot provide Linux binaries (macOS,
# Windows). Uses a pinned Rust toolchain installed with rustup under /opt/movie-platform.
# Usage: build-in-vm.sh BINARY   (output: /opt/movie-platform/build/BINARY)
set -euo pipefail
# shellcheck source=scripts/vm/provision.sh
. "$(dirname "$0")/provision.sh"
binary="$1"
TOOLCHAIN=1.95.0
export RUSTUP_HOME=/opt/movie-platform/rustup CARGO_HOME=/opt/movie-platform/cargo
export PATH="$CARGO_HOME/bin:$PATH"
ensure_packages build-essential curl ca-certificates rsync
if ! command -v rustup >/dev/null; then
    curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain "$TOOLCHAIN" --no-modify-path
fi
rustup toolchain install "$TOOLCHAIN" --profile minimal >/dev/null
mkdir -p /opt/movie-platform/src /opt/movie-platform/build
rsync -a --delete --exclude target/ --exclude .git/ --exclude .local/ --exclude dist/ \
    --exclude .vagrant-secrets.env "$REPO_ROOT/" /opt/movie-platform/src/
cd /opt/movie-platform/src
# Whole-program LTO needs ~1.4 GB of memory to link the gateway, more than a VM has (1 GiB by
# default); per-crate optimisation fits, and costs ~12-13% more CPU per request in the gateway.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
cargo "+$TOOLCHAIN" build --release --locked --bin "$binary" --target-dir /opt/movie-platform/target
install -m 0755 "/opt/movie-platform/target/release/$binary" "/opt/movie-platform/build/$binary"
