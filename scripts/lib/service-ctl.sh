#!/usr/bin/env bash
# service-ctl.sh stop|start postgresql|rabbitmq: for the fault suite, which restarts the shared
# servers on purpose. Works with systemd as PID 1 and without, as scripts/test.sh starts them.
# service-ctl.sh kill|stop|start|await-healthy|leader NODE [QUEUE]: the same for one node of the
# test cluster (scripts/lib/rabbitmq-cluster.sh); `leader NODE QUEUE` prints the node leading
# QUEUE.
set -euo pipefail
. "$(dirname "$0")/local-platform.sh"
. "$(dirname "$0")/rabbitmq-cluster.sh"
action="$1" service="$2"
case "$service:$action" in
    movie-?:kill) kill_cluster_node "$service" ;;
    movie-?:await-healthy)
        # Until losing this node would leave no quorum queue without its majority: the other
        # members have caught up (what a rolling upgrade waits for before each node).
        wait_until 60 "$service to be safe to lose" \
            as_root rabbitmq-queues -q -n "$service@localhost" check_if_node_is_quorum_critical ||
            die "losing $service would leave a quorum queue without its majority" ;;
    movie-?:stop)
        "$0" await-healthy "$service"
        cluster_ctl "$service" stop ;;
    movie-?:start) start_cluster_node "$service" ;;
    movie-?:leader)
        cluster_ctl "$service" list_queues -p "$CLUSTER_VHOST" name leader |
            awk -v q="$3" '$1 == q { sub(/@.*/, "", $2); print $2 }' ;;
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
    *) die "usage: service-ctl.sh stop|start postgresql|rabbitmq, or kill|stop|start|await-healthy|leader movie-a|movie-b|movie-c [QUEUE]" ;;
esac
