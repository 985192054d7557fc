# shellcheck shell=bash
# A three-node RabbitMQ cluster on this machine for the fault suite (scripts/test.sh starts it
# beside the single test broker): nodes movie-a, movie-b and movie-c @localhost, each an Erlang
# VM of its own with its own data under /var/lib/rabbitmq/test-cluster, AMQP on loopback ports
# 5681-5683. Killing, stopping and restarting a node is what the cluster tests do
# (scripts/lib/service-ctl.sh). Source it after local-platform.sh; it defines functions only.

CLUSTER_NODES=(movie-a movie-b movie-c)
CLUSTER_DIR=/var/lib/rabbitmq/test-cluster
CLUSTER_VHOST=movie-test-cluster

# cluster_node_port NODE: the node's AMQP port.
cluster_node_port() {
    local i
    for i in "${!CLUSTER_NODES[@]}"; do
        [ "${CLUSTER_NODES[$i]}" = "$1" ] && { echo $((5681 + i)); return; }
    done
    die "no cluster node named $1"
}

cluster_ctl() { local node="$1"; shift; as_root rabbitmqctl -q -n "$node@localhost" "$@"; }

# start_cluster_node NODE: starts the node's Erlang VM (its data kept from earlier starts).
start_cluster_node() {
    local node="$1" port dir
    port="$(cluster_node_port "$node")"
    dir="$CLUSTER_DIR/$node"
    as_root install -d -o rabbitmq -g rabbitmq "$dir" "$dir/log"
    printf '%s\n' "listeners.tcp.1 = 127.0.0.1:$port" \
        "cluster_partition_handling = pause_minority" "loopback_users = none" |
        as_root tee "$dir/rabbitmq.conf" >/dev/null
    printf '[].\n' | as_root tee "$dir/enabled_plugins" >/dev/null
    as_root runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq \
        RABBITMQ_NODENAME="$node@localhost" RABBITMQ_DIST_PORT=$((port + 20000)) \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/pid" \
        /usr/lib/rabbitmq/bin/rabbitmq-server -detached
    wait_until --every 1 120 "cluster node $node to start" \
        cluster_ctl "$node" await_startup --timeout 60 || die "cluster node $node did not start (see $dir/log)"
}

# kill_cluster_node NODE: SIGKILL to the node's Erlang VM, as a crash or a power cut.
kill_cluster_node() {
    local pid
    pid="$(as_root cat "$CLUSTER_DIR/$1/pid")"
    as_root kill -KILL "$pid"
    wait_until 30 "cluster node $1 to die" process_gone "$pid"
}

# start_test_cluster: the three nodes up and clustered, and the test vhost and user on them
# (the same user and password as the single test broker).
start_test_cluster() {
    local node
    for node in "${CLUSTER_NODES[@]}"; do
        cluster_ctl "$node" status >/dev/null 2>&1 || start_cluster_node "$node"
    done
    for node in "${CLUSTER_NODES[@]:1}"; do
        if ! cluster_ctl "$node" cluster_status 2>/dev/null | grep -q "${CLUSTER_NODES[0]}@localhost"; then
            log "joining $node to the test cluster"
            cluster_ctl "$node" stop_app
            cluster_ctl "$node" join_cluster "${CLUSTER_NODES[0]}@localhost"
            cluster_ctl "$node" start_app
        fi
    done
    cluster_ctl "${CLUSTER_NODES[0]}" delete_vhost "$CLUSTER_VHOST" >/dev/null 2>&1 || true
    cluster_ctl "${CLUSTER_NODES[0]}" add_vhost "$CLUSTER_VHOST" >/dev/null
    cluster_ctl "${CLUSTER_NODES[0]}" add_user movie_test "$TEST_AMQP_PASSWORD" >/dev/null 2>&1 ||
        cluster_ctl "${CLUSTER_NODES[0]}" change_password movie_test "$TEST_AMQP_PASSWORD" >/dev/null
    cluster_ctl "${CLUSTER_NODES[0]}" set_permissions -p "$CLUSTER_VHOST" movie_test '.*' '.*' '.*' >/dev/null
}

# test_cluster_urls: AMQP_URL for the test cluster, every node, movie-a first.
test_cluster_urls() {
    local node urls=()
    for node in "${CLUSTER_NODES[@]}"; do
        urls+=("amqp://movie_test:${TEST_AMQP_PASSWORD}@127.0.0.1:$(cluster_node_port "$node")/$CLUSTER_VHOST")
    done
    local IFS=,
    echo "${urls[*]}"
}
