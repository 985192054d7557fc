#!/usr/bin/env bash
# service-ctl.sh stop|start postgresql|rabbitmq: for the fault suite, which restarts the shared
# servers on purpose. Works with systemd as PID 1 and without, as scripts/test.sh starts them.
set -euo pipefail
. "$(dirname "$0")/local-platform.sh"
action="$1" service="$2"
case "$service:$action" in
    postgresql:stop)
        if have_systemd; then as_root systemctl stop postgresql; else
            read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
            as_root pg_ctlcluster "$version" "$cluster" stop -m fast
        fi ;;
    postgresql:start) start_postgres ;;
    rabbitmq:stop)
        # The broker application stops (connections drop, messages stay on disk); the Erlang
        # node keeps running, as after a crash of the broker alone.
        as_root rabbitmqctl -q stop_app ;;
    rabbitmq:start)
        as_root rabbitmqctl -q start_app
        as_root rabbitmqctl -q await_startup --timeout 60 >/dev/null ;;
    *) die "usage: service-ctl.sh stop|start postgresql|rabbitmq" ;;
esac
