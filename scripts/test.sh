#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL and a real RabbitMQ on this machine.
# On a fresh Debian 12 / Ubuntu machine with only the Rust toolchain, it installs what is missing.
set -euo pipefail
. "$(dirname "$0")/lib/local-platform.sh"
. "$(dirname "$0")/lib/rabbitmq-cluster.sh"
cd "$REPO_ROOT"

start_local_servers

log "preparing the test database role and broker vhost"
pg_ensure_role movie_test "$TEST_DB_PASSWORD" CREATEDB
# Databases left by an interrupted earlier run (each test makes its own from a template).
pg_psql -c "SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 'movie_test_%'" \
    | while read -r statement; do pg_psql -c "$statement"; done
rmq_recreate_vhost movie-test
rmq_ensure_user movie_test "$TEST_AMQP_PASSWORD" movie-test

log "starting the three-node test cluster of RabbitMQ (scripts/lib/rabbitmq-cluster.sh)"
empty_test_cluster

export TEST_DATABASE_URL="postgres://movie_test:${TEST_DB_PASSWORD}@127.0.0.1:5432/postgres"
export TEST_AMQP_URL="amqp://movie_test:${TEST_AMQP_PASSWORD}@127.0.0.1:5672/movie-test"
TEST_AMQP_CLUSTER_URL="$(test_cluster_urls)"
export TEST_AMQP_CLUSTER_URL
export RUST_BACKTRACE=1

log "building"
# The end-to-end tests start the real service binaries, so they are built first.
cargo build --workspace --bins --locked
log "running the tests (the fault suite in srcs/e2e-tests/tests/faults.rs restarts PostgreSQL and RabbitMQ)"
fault_report="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/fault-suite-report.txt"
rm -f "$fault_report"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$results" || status=$?

if [ -s "$fault_report" ]; then
    log "fault suite figures"
    cat "$fault_report"
fi

log "checking the API against openapi.yaml (schemathesis, Swagger UI in Chromium)"
if bash "$REPO_ROOT/scripts/conformance.sh"; then
    echo "test result: ok. 1 passed; 0 failed (API conformance)" >>"$results"
else
    echo "test result: FAILED. 0 passed; 1 failed (API conformance)" >>"$results"
    status=1
fi

log "checking asyncapi.yaml with the AsyncAPI parser (npm)"
if bash "$REPO_ROOT/scripts/check-asyncapi.sh"; then
    echo "test result: ok. 1 passed; 0 failed (asyncapi.yaml)" >>"$results"
else
    echo "test result: FAILED. 0 passed; 1 failed (asyncapi.yaml)" >>"$results"
    status=1
fi

log "checking the Prometheus configuration and the alert rules' unit tests (promtool)"
if bash "$REPO_ROOT/scripts/check-monitoring.sh"; then
    echo "test result: ok. 1 passed; 0 failed (monitoring configuration and alert rules)" >>"$results"
else
    echo "test result: FAILED. 0 passed; 1 failed (monitoring configuration and alert rules)" >>"$results"
    status=1
fi

log "the benchmark harness, briefly: every scenario runs and yields its figures (speed is not judged here)"
if BENCH_DURATION=2s BENCH_ROUNDS=1 BENCH_OUT="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/bench-smoke" \
    bash "$REPO_ROOT/scripts/bench.sh"; then
    echo "test result: ok. 1 passed; 0 failed (benchmark harness)" >>"$results"
else
    echo "test result: FAILED. 0 passed; 1 failed (benchmark harness)" >>"$results"
    status=1
fi

# system_test NAME SCRIPT: a test of whole machines; its closing "NAME: N passed, M failed" line
# counts like tests.
system_test() {
    local name="$1" script="$2" output
    output="$(mktemp)"
    if bash "$REPO_ROOT/$script" 2>&1 | tee "$output"; then :; else status=1; fi
    grep -E '^FAIL  ' "$output" | sed "s/^FAIL  /FAIL  $name: /" >>"$results" || true
    if ! sed -nE "s/^$name: ([0-9]+) passed, ([0-9]+) failed\$/test result: $name. \1 passed; \2 failed/p" "$output" |
        tee -a "$results" | grep -q .; then
        echo "test result: FAILED. 0 passed; 1 failed ($script stopped before its checks)" >>"$results"
    fi
    rm -f "$output"
}

log "the three-machine deployment on systemd (scripts/deploy-test.sh)"
system_test deploy scripts/deploy-test.sh

# One closing line for the whole suite, summed over every test binary and check.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$results"
# CI keeps only the end of the output: name what failed there.
if [ "$status" -ne 0 ]; then
    echo "failed:"
    grep -E '^test .* \.\.\. FAILED$|^test result: FAILED\. 0 passed; 1 failed \(|^FAIL ' "$results" | sed 's/^/    /' || true
fi
exit "$status"
