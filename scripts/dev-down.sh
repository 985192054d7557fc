#!/usr/bin/env bash
# Stops the services and Prometheus that scripts/dev-up.sh started (SIGTERM, so each finishes its
# in-flight work). PostgreSQL and RabbitMQ keep running; their data stays.
set -euo pipefail
. "$(dirname "$0")/lib/local-platform.sh"

stop_spawned_services "$LOCAL_DIR/run"
[ "${1:-}" = "--quiet" ] || log "the services and Prometheus are stopped"
