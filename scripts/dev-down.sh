#!/usr/bin/env bash
# Stops the services that scripts/dev-up.sh started (SIGTERM, so each finishes its in-flight
# work). PostgreSQL and RabbitMQ keep running; their data stays.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

quiet=false
[ "${1:-}" = "--quiet" ] && quiet=true
RUN_DIR="$LOCAL_DIR/run"

for name in api-gateway billing-app inventory-app; do
    pid_file="$RUN_DIR/$name.pid"
    [ -f "$pid_file" ] || continue
    pid="$(cat "$pid_file")"
    # Only signal the process if it still is the service we started.
    if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 30 s; killing it"; kill -KILL "$pid"; }
        $quiet || log "stopped $name"
    fi
    rm -f "$pid_file"
done
