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

# launch_cluster_node NODE: starts the node's Erlang VM (its data kept from earlier starts)
# without waiting: a clustered node restarted after all were down waits for its peers' tables,
# so nodes that are all down start together (start_test_cluster) and are awaited afterwards.
launch_cluster_node() {
    local node="$1" port dir
    port="$(cluster_node_port "$node")"
    dir="$CLUSTER_DIR/$node"
    as_root install -d -o rabbitmq -g rabbitmq "$dir" "$dir/log"
    printf '%s\n' "listeners.tcp.1 = 127.0.0.1:$port" \
        "cluster_partition_handling = pause_minority" "net_ticktime = 10" "loopback_users = none" |
        as_root tee "$dir/rabbitmq.conf" >/dev/null
    printf '[].\n' | as_root tee "$dir/enabled_plugins" >/dev/null
    as_rabbitmq_with_open_files \
        RABBITMQ_NODENAME="$node@localhost" RABBITMQ_DIST_PORT=$((port + 20000)) \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/pid" \
        /usr/lib/rabbitmq/bin/rabbitmq-server -detached
}

# await_cluster_node NODE: until the node runs RabbitMQ.
await_cluster_node() {
    wait_until --every 1 180 "cluster node $1 to start" cluster_ctl "$1" await_startup --timeout 60 ||
        die "cluster node $1 did not start (see $CLUSTER_DIR/$1/log)"
}

# start_cluster_node NODE: starts the node and waits until it runs.
start_cluster_node() { launch_cluster_node "$1"; await_cluster_node "$1"; }

# kill_cluster_node NODE: SIGKILL to the node's Erlang VM, as a crash or a power cut.
kill_cluster_node() {
    local pid
    pid="$(cluster_ctl "$1" eval 'os:getpid().' | tr -dc 0-9)"
    [ -n "$pid" ] || die "cluster node $1 does not tell its process id"
    as_root kill -KILL "$pid"
    wait_until 30 "cluster node $1 to die" process_gone "$pid"
}

# start_test_cluster: the three nodes up and clustered, and the test vhost and user on them
# (the same user and password as the single test broker).
start_test_cluster() {
    local node launched=()
    for node in "${CLUSTER_NODES[@]}"; do
        if ! cluster_ctl "$node" status >/dev/null 2>&1; then
            launch_cluster_node "$node"
            launched+=("$node")
        fi
    done
    for node in "${launched[@]}"; do await_cluster_node "$node"; done
    for node in "${CLUSTER_NODES[@]:1}"; do
        if ! cluster_ctl "$node" cluster_status 2>/dev/null | grep -q "${CLUSTER_NODES[0]}@localhost"; then
            log "joining $node to the test cluster"
            cluster_ctl "$node" stop_app
            cluster_ctl "$node" join_cluster "${CLUSTER_NODES[0]}@localhost"
            cluster_ctl "$node" start_app
        fi
    done
    cluster_ctl "${CLUSTER_NODES[0]}" add_vhost "$CLUSTER_VHOST" >/dev/null 2>&1 || true
    cluster_ctl "${CLUSTER_NODES[0]}" add_user movie_test "$TEST_AMQP_PASSWORD" >/dev/null 2>&1 ||
        cluster_ctl "${CLUSTER_NODES[0]}" change_password movie_test "$TEST_AMQP_PASSWORD" >/dev/null
    cluster_ctl "${CLUSTER_NODES[0]}" set_permissions -p "$CLUSTER_VHOST" movie_test '.*' '.*' '.*' >/dev/null
}

# empty_test_cluster: the test vhost deleted and made again, with nothing left from earlier runs
# (scripts/test.sh, before the tests; never while tests use the cluster).
empty_test_cluster() {
    cluster_ctl "${CLUSTER_NODES[0]}" delete_vhost "$CLUSTER_VHOST" >/dev/null 2>&1 || true
    start_test_cluster
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
