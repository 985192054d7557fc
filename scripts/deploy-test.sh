#!/usr/bin/env bash
# The Vagrant deployment, tested for real on this machine: three Debian 12 containers booted with
# systemd as PID 1, named and addressed as in the Vagrantfile, with the repository at /vagrant
# (the machines, their network and their teardown: scripts/deploy/machines.sh). The same
# scripts/setup_*.sh a VM runs provision them (twice: idempotence); then named checks run against
# the system, from a namespace that plays the host. Prints "N passed, M failed" last and removes
# everything it created, even when it fails. Traffic stays inside the namespaces it creates.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/checks.sh"
. "$(dirname "$0")/deploy/machines.sh"
cd "$REPO_ROOT"

CACHE="${MOVIE_DEPLOY_CACHE:-/var/tmp/movie-platform-deploy}"
WORK="$(mktemp -d /var/tmp/movie-deploy.XXXXXX)"
MACHINES_WORK="$WORK"
MACHINES_TAG="mp$$"
MACHINES_ROOTFS="$CACHE/rootfs"
MACHINES=(billing inventory gateway)
declare -A MACHINE_IP=([gateway]=192.168.56.10 [inventory]=192.168.56.11 [billing]=192.168.56.12 [client]=192.168.56.1)
trap machines_teardown EXIT
# Interrupted or stopped: still clean up (the EXIT trap runs on exit, not on a fatal signal).
trap 'exit 130' INT TERM
CHECK_LOG="$WORK/check.log"

# --- set-up --------------------------------------------------------------------------------------

ensure_packages systemd-container debootstrap iproute2 procps curl vagrant openssl
log "building the release binaries into dist/"
bash scripts/build-dist.sh >/dev/null
bash scripts/deploy/rootfs.sh "$MACHINES_ROOTFS"
machines_network
for name in "${MACHINES[@]}"; do machine_boot "$name"; done

# The secrets a Vagrant host would generate, for this run only, and which machine gets which
# (as the Vagrantfile hands them out: each machine only those it uses).
declare -A SECRET
for name in INVENTORY_DB_PASSWORD BILLING_DB_PASSWORD AMQP_PASSWORD ADMIN_TOKEN RABBITMQ_ERLANG_COOKIE \
    RABBITMQ_ADMIN_PASSWORD CATALOGUE_AMQP_PASSWORD; do
    SECRET[$name]="$(openssl rand -hex 24)"
done
declare -A MACHINE_SECRETS=(
    [gateway]="AMQP_PASSWORD ADMIN_TOKEN RABBITMQ_ERLANG_COOKIE"
    [inventory]="INVENTORY_DB_PASSWORD ADMIN_TOKEN CATALOGUE_AMQP_PASSWORD RABBITMQ_ERLANG_COOKIE"
    [billing]="BILLING_DB_PASSWORD AMQP_PASSWORD RABBITMQ_ADMIN_PASSWORD RABBITMQ_ERLANG_COOKIE"
)
provision() { # provision MACHINE: the unchanged setup script, with Vagrant's environment
    local secret given=()
    for secret in ${MACHINE_SECRETS[$1]}; do given+=("$secret=${SECRET[$secret]}"); done
    inside "$1" env \
        MOVIE_GATEWAY_IP="${MACHINE_IP[gateway]}" MOVIE_INVENTORY_IP="${MACHINE_IP[inventory]}" MOVIE_BILLING_IP="${MACHINE_IP[billing]}" \
        MOVIE_BROKER_SHAPE=cluster "${given[@]}" \
        bash "/vagrant/scripts/setup_$1.sh"
}

main_pid() { inside "$1" systemctl show -p MainPID --value "$1"; }
# What else runs on each machine: Prometheus and the exporters.
declare -A MONITORING_UNITS=(
    [gateway]="prometheus prometheus-node-exporter"
    [inventory]="prometheus-node-exporter prometheus-postgres-exporter"
    [billing]="prometheus-node-exporter prometheus-postgres-exporter"
)
monitoring_pids() { # monitoring_pids MACHINE: "unit pid" for each of them
    local unit
    for unit in ${MONITORING_UNITS[$1]}; do echo "$unit $(inside "$1" systemctl show -p MainPID --value "$unit")"; done
}
broker_pid() { inside "$1" systemctl show -p MainPID --value rabbitmq-server; }

# As libvirt does it: the three machines provisioned at the same time. The gateway's and
# inventory's RabbitMQ nodes wait for billing's to join it; each service retries the others.
log "provisioning (as vagrant up would), the three machines at once"
declare -A PROVISIONING=()
for name in "${MACHINES[@]}"; do
    provision "$name" >"$WORK/provision-$name.log" 2>&1 &
    PROVISIONING[$name]=$!
done
provisioned=true
for name in "${MACHINES[@]}"; do
    wait "${PROVISIONING[$name]}" || { provisioned=false; log "provisioning $name failed"; }
    sed "s/^/    /" "$WORK/provision-$name.log"
done
$provisioned || die "provisioning failed"

# --- checks --------------------------------------------------------------------------------------

gateway_url="http://${MACHINE_IP[gateway]}:8080"
curl_host() { from_host curl -sS --max-time 10 "$@"; }

first_pids="$(for name in "${MACHINES[@]}"; do main_pid "$name"; broker_pid "$name"; monitoring_pids "$name"; done)"
log "provisioning again (idempotence)"
second_ok=true
for name in "${MACHINES[@]}"; do
    provision "$name" >"$WORK/provision2-$name.log" 2>&1 || second_ok=false
done
second_pids="$(for name in "${MACHINES[@]}"; do main_pid "$name"; broker_pid "$name"; monitoring_pids "$name"; done)"
check "second provisioning succeeds on all three machines" $second_ok
check "second provisioning restarts nothing (same main PIDs of the services, RabbitMQ, Prometheus and the exporters)" \
    test "$first_pids" = "$second_pids"

units_active_and_enabled() {
    local name
    for name in "${MACHINES[@]}"; do
        inside "$name" systemctl is-active "$name" && inside "$name" systemctl is-enabled "$name" || return 1
    done
}
services_ready() {
    curl_host -f -o /dev/null "$gateway_url/ready" &&
        inside billing curl -fsS -o /dev/null --max-time 2 "http://${MACHINE_IP[billing]}:8082/ready" &&
        inside inventory curl -fsS -o /dev/null --max-time 2 "http://${MACHINE_IP[inventory]}:8081/ready"
}
ready_all() {
    wait_until 60 "every service to be ready" services_ready || { curl_host "$gateway_url/ready"; return 1; }
}
check "all units active and enabled" units_active_and_enabled
# Each service may hold 65536 descriptors (systemd's default soft limit, 1024, would refuse
# clients at about a thousand connections). systemd grants no more than its own hard limit,
# which in these containers is the host's (20,000 on the lab machine); a VM's is far above.
open_files() { # open_files MACHINE PID: the soft limit on open files of PID in MACHINE
    inside "$1" awk '/^Max open files/ { print $4 }' "/proc/$2/limits"
}
descriptor_limits() {
    local name granted ceiling expected
    for name in "${MACHINES[@]}"; do
        granted="$(open_files "$name" "$(main_pid "$name")")"
        ceiling="$(inside "$name" awk '/^Max open files/ { print $5 }' /proc/1/limits)"
        expected=$((ceiling < 65536 ? ceiling : 65536))
        echo "      $name: $granted open files (systemd's own hard limit $ceiling)"
        [ "$granted" = "$expected" ] || return 1
    done
}
check "every service may open 65536 files (or as many as systemd itself may)" descriptor_limits
check "all services ready (gateway: broker and inventory up)" ready_all

broker_memory() { # broker_memory: each running machine's RabbitMQ resident memory, for the figures
    local name
    for name in "${MACHINES[@]}"; do
        [ -n "${NSPAWN_PID[$name]:-}" ] || continue
        printf '%s %s MiB; ' "$name" "$(inside "$name" ps -o rss= -C beam.smp | awk '{ s += $1 } END { printf "%d", s / 1024 }')"
    done
}
rabbitmq_cluster_whole() {
    local name queue members node
    for name in "${MACHINES[@]}"; do
        members="$(inside "$name" rabbitmqctl -q eval 'lists:sort(rabbit_mnesia:cluster_nodes(running)).')"
        [ "$members" = "[rabbit@billing,rabbit@gateway,rabbit@inventory]" ] ||
            { echo "$name sees the running nodes $members"; return 1; }
        inside "$name" rabbitmqctl -q eval 'application:get_env(rabbit, cluster_partition_handling).' |
            grep -qx '{ok,pause_minority}'
        # The cookie the host generated (a package-made one could not have joined), private.
        test "$(inside "$name" stat -c '%a %U' /var/lib/rabbitmq/.erlang.cookie)" = "400 rabbitmq"
        test "$(inside "$name" cat /var/lib/rabbitmq/.erlang.cookie)" = "${SECRET[RABBITMQ_ERLANG_COOKIE]}"
    done
    # Replicated three times: a member on each node, each a leader or a follower of its Raft group.
    for queue in billing_queue billing_queue.dead-letter; do
        members="$(inside billing rabbitmq-queues -q quorum_status "$queue" --vhost movie --formatter json |
            grep -oE '"Node Name":"[^"]+","Raft State":"(leader|follower)"' | sed -E 's/.*"(rabbit@[^"]+)".*"([a-z]+)"$/\1 \2/' | sort)"
        echo "figures: $queue: $(tr '\n' ' ' <<<"$members")"
        for node in billing gateway inventory; do
            grep -q "^rabbit@$node " <<<"$members" || { echo "$queue has no running member on $node"; return 1; }
        done
    done
    echo "figures: RabbitMQ resident memory, idle: $(broker_memory)"
}
check "RabbitMQ: three nodes clustered (the host's cookie, pause_minority); both queues replicated on all three" rabbitmq_cluster_whole

secrets_only_where_used() {
    local name secret found
    for name in "${MACHINES[@]}"; do
        # The host's secrets file (if the checkout has one) is not in the synced folder.
        inside "$name" test ! -s /vagrant/.vagrant-secrets.env
        for secret in "${!SECRET[@]}"; do
            [[ " ${MACHINE_SECRETS[$name]} " == *" $secret "* ]] && continue
            # Everything a machine has written is in its overlay's upper layer.
            found="$(grep -rlF -- "${SECRET[$secret]}" "$WORK/$name/upper" 2>/dev/null | head -n 3 || true)"
            [ -z "$found" ] || { echo "$name holds $secret, which it does not use: $found"; return 1; }
        done
    done
}
check "each machine holds only the secrets it uses" secrets_only_where_used

connects() { # connects MACHINE|host ADDRESS PORT
    local where=(inside "$1")
    [ "$1" != host ] || where=(from_host)
    "${where[@]}" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}
broker_ports_for_the_platform_only() {
    local port name
    for port in 4369 25672; do
        connects inventory "${MACHINE_IP[billing]}" "$port"
        connects billing "${MACHINE_IP[gateway]}" "$port"
        connects gateway "${MACHINE_IP[inventory]}" "$port"
        for name in "${MACHINES[@]}"; do refuse connects host "${MACHINE_IP[$name]}" "$port"; done
    done
    for name in "${MACHINES[@]}"; do refuse connects host "${MACHINE_IP[$name]}" 5672; done
    connects billing "${MACHINE_IP[inventory]}" 5672
    connects gateway "${MACHINE_IP[billing]}" 5672
    connects inventory "${MACHINE_IP[gateway]}" 5672
}
check "firewall: RabbitMQ's cluster ports and AMQP between the machines only" \
    broker_ports_for_the_platform_only

movie_crud() {
    local created id auth="Authorization: Bearer ${SECRET[ADMIN_TOKEN]}"
    test "$(curl_host -o /dev/null -w '%{http_code}' -X POST "$gateway_url/api/movies" \
        -H 'Content-Type: application/json' -d '{"title": "No token"}')" = 401
    created="$(curl_host -f -X POST "$gateway_url/api/movies" -H "$auth" -H 'Content-Type: application/json' \
        -d '{"title": "The Matrix", "description": "Sci-Fi Classic"}')"
    id="$(sed -E 's/.*"id":([0-9]+).*/\1/' <<<"$created")"
    curl_host -f "$gateway_url/api/movies/$id" | grep -q '"The Matrix"'
    curl_host -f -X PUT "$gateway_url/api/movies/$id" -H "$auth" -H 'Content-Type: application/json' \
        -d '{"title": "The Matrix", "release_year": 1999}' | grep -q '"release_year":1999'
    curl_host -f "$gateway_url/api/movies" | grep -q "\"id\":$id"
    test "$(curl_host -o /dev/null -w '%{http_code}' -X DELETE -H "$auth" "$gateway_url/api/movies/$id")" = 204
    test "$(curl_host -o /dev/null -w '%{http_code}' "$gateway_url/api/movies/$id")" = 404
}
check "movie CRUD through the gateway from the host (writes need the admin token)" movie_crud

metric_of() { # metric_of MACHINE URL SERIES: the series' value in that scrape (0 if absent)
    inside "$1" curl -fsS --max-time 5 "$2" | awk -v s="$3" '$1 == s { v = $2 } END { print v + 0 }'
}
events_seen() { # the CRUD check's three events published by inventory and received by the gateway
    [ "$(metric_of gateway "http://${MACHINE_IP[inventory]}:8081/metrics" inventory_events_published_total)" -ge 3 ] &&
        [ "$(metric_of gateway http://127.0.0.1:8080/metrics 'gateway_catalogue_events_received_total{type="movie.deleted"}')" -ge 1 ]
}
change_events_flow() {
    wait_until 30 "the change events through the broker" events_seen
    echo "figures: inventory published $(metric_of gateway "http://${MACHINE_IP[inventory]}:8081/metrics" inventory_events_published_total) change events"
    [ "$(metric_of gateway http://127.0.0.1:8080/metrics gateway_catalogue_events_subscribed)" = 1 ] &&
        [ "$(metric_of gateway "http://${MACHINE_IP[inventory]}:8081/metrics" inventory_event_relay_connected)" = 1 ]
}
check "the catalogue's change events: inventory's relay publishes them, the gateway's cache receives them" change_events_flow

post_order() { # prints the HTTP status
    curl_host -o /dev/null -w '%{http_code}' -X POST "$gateway_url/api/billing" \
        -H 'Content-Type: application/json' -d "{\"user_id\": \"$1\", \"number_of_items\": \"2\", \"total_amount\": \"45.00\"}"
}
billed_rows() {
    inside billing runuser -u postgres -- psql -X -qAt -d billing -c 'SELECT count(*) FROM orders'
}
rows_are() { [ "$(billed_rows)" = "$1" ]; }
wait_rows() { # wait_rows N SECONDS
    wait_until --every 0.25 "$2" "$1 billed orders" rows_are "$1" || { echo "expected $1 rows, found $(billed_rows)"; return 1; }
}
order_billed() {
    local before order_id
    before="$(billed_rows)"
    order_id="$(curl_host -f -X POST "$gateway_url/api/billing" -H 'Content-Type: application/json' \
        -d '{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}' | sed -E 's/.*"order_id":"([^"]+)".*/\1/')"
    wait_rows $((before + 1)) 20
    curl_host -f "$gateway_url/api/billing/$order_id" | grep -q '"status":"billed"'
}
check "an order through the gateway is billed" order_billed

billing_outage() {
    local before i status bad=0
    before="$(billed_rows)"
    inside billing systemctl stop billing
    for i in $(seq 1 200); do
        status="$(post_order "outage-$i")"
        [ "$status" = 202 ] || { echo "order $i answered $status"; bad=$((bad + 1)); }
        # Below the gateway's default rate limit (50 per second per address).
        sleep 0.03
    done
    [ "$bad" -eq 0 ] || return 1
    [ "$(billed_rows)" = "$before" ] || { echo "rows changed while billing was stopped"; return 1; }
    inside billing systemctl start billing
    wait_rows $((before + 200)) 60
    sleep 1
    [ "$(billed_rows)" = $((before + 200)) ]
}
check "billing stopped: 200 orders answered 202; started: exactly 200 new rows" billing_outage

restarted() { # restarted SERVICE OLD_PID: a new main process, and the unit active again
    local pid
    pid="$(main_pid "$1")"
    [ "$pid" != 0 ] && [ "$pid" != "$2" ] && inside "$1" systemctl is-active --quiet "$1"
}
kill9_restarts() {
    local name before
    for name in "${MACHINES[@]}"; do
        before="$(main_pid "$name")"
        inside "$name" kill -9 "$before"
        wait_until --every 0.25 15 "systemd to restart $name" restarted "$name" "$before" ||
            { echo "$name did not come back"; return 1; }
        echo "$name: killed $before, restarted as $(main_pid "$name")"
    done
    ready_all
}
check "kill -9 of each service: systemd brings it back within seconds" kill9_restarts

restart_under_load() { # restart_under_load SERVICE EXPECTED_STATUS CURL_ARGS...
    # Eight clients, a new connection per request (below the gateway's rate limit), while
    # `systemctl restart SERVICE` runs: every request must get EXPECTED_STATUS.
    local service="$1" expected="$2" dir="$WORK/load-$1" i before after
    shift 2
    rm -rf "$dir" && mkdir -p "$dir"
    for i in $(seq 1 8); do
        (
            while [ ! -e "$dir/stop" ]; do
                curl_host -o /dev/null -w '%{http_code}\n' --max-time 30 "$@" || echo "curl exit $?"
                sleep 0.2
            done >"$dir/client-$i"
        ) &
    done
    sleep 2
    before="$(main_pid "$service")"
    inside "$service" systemctl restart "$service"
    after="$(main_pid "$service")"
    sleep 2
    touch "$dir/stop"
    wait
    echo "figures: $service restarted (main PID $before -> $after) under load; answers:" \
        "$(cat "$dir"/client-* | sort | uniq -c | awk '{ count = $1; $1 = ""; printf "%s%s x%s", sep, count, $0; sep = ", " }')"
    [ "$after" != "$before" ]
    [ "$(inside "$service" systemctl show -p NFileDescriptorStore --value "$service")" = 1 ]
    [ "$(cat "$dir"/client-* | sort -u)" = "$expected" ]
}
restarts_lose_no_request() {
    restart_under_load gateway 202 -X POST "$gateway_url/api/billing" -H 'Content-Type: application/json' \
        -d '{"user_id": "restart", "number_of_items": 1, "total_amount": "1.00"}'
    restart_under_load inventory 200 "$gateway_url/api/movies?limit=20"
    # A stop really stops: the kept socket is closed, so connections are refused, not queued.
    inside inventory systemctl stop inventory
    [ "$(inside inventory systemctl show -p NFileDescriptorStore --value inventory)" = 0 ]
    local status=0
    inside gateway curl -sS --max-time 3 "http://${MACHINE_IP[inventory]}:8081/health" >/dev/null 2>&1 || status=$?
    [ "$status" = 7 ] || { echo "inventory stopped: curl exit $status, expected 7 (refused)"; return 1; }
    inside inventory systemctl start inventory
    ready_all
}
check "systemctl restart of the gateway and of inventory under load: every request answered" restarts_lose_no_request

firewall_isolates() {
    # The gateway reaches inventory; the billing machine and the host do not.
    inside gateway curl -fsS --max-time 3 "http://${MACHINE_IP[inventory]}:8081/health" >/dev/null
    refuse inside billing curl -sS --max-time 3 "http://${MACHINE_IP[inventory]}:8081/health" >/dev/null 2>&1
    refuse curl_host --max-time 3 "http://${MACHINE_IP[inventory]}:8081/health" >/dev/null 2>&1
    refuse curl_host --max-time 3 "http://${MACHINE_IP[billing]}:8082/health" >/dev/null 2>&1
    refuse inside inventory curl -sS --max-time 3 "http://${MACHINE_IP[billing]}:8082/health" >/dev/null 2>&1
    # RabbitMQ: every machine has a service that uses it (inventory publishes its change events).
    inside inventory timeout 3 bash -c "exec 3<>/dev/tcp/${MACHINE_IP[billing]}/5672"
    inside gateway timeout 3 bash -c "exec 3<>/dev/tcp/${MACHINE_IP[billing]}/5672"
    refuse from_host timeout 3 bash -c "exec 3<>/dev/tcp/${MACHINE_IP[billing]}/5672" 2>/dev/null
}
check "firewall: inventory's and billing's HTTP reachable from the gateway only, RabbitMQ from the machines only" firewall_isolates

databases_local_only() {
    refuse inside gateway timeout 3 bash -c "exec 3<>/dev/tcp/${MACHINE_IP[inventory]}/5432" 2>/dev/null
    refuse inside gateway timeout 3 bash -c "exec 3<>/dev/tcp/${MACHINE_IP[billing]}/5432" 2>/dev/null
    inside inventory runuser -u postgres -- psql -X -qAt -c 'SHOW listen_addresses' | grep -qx localhost
}
check "PostgreSQL listens locally only" databases_local_only

broker_users() {
    local users
    users="$(inside billing rabbitmqctl -q list_users)"
    grep -q '^movie_platform' <<<"$users"
    grep -q '^movie_admin.*administrator' <<<"$users"
    ! grep -q '^guest' <<<"$users" || { echo "the guest user exists"; return 1; }
    # The management UI (billing's node; the Vagrantfile forwards it to the host) with the
    # generated administrator; reachable neither from the other machines nor the host's network.
    inside billing curl -fsS --max-time 5 -u "movie_admin:${SECRET[RABBITMQ_ADMIN_PASSWORD]}" \
        http://127.0.0.1:15672/api/overview | grep -q '"cluster_name"'
    test "$(inside billing curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -u guest:guest \
        http://127.0.0.1:15672/api/overview)" = 401
    refuse connects gateway "${MACHINE_IP[billing]}" 15672
    refuse connects host "${MACHINE_IP[billing]}" 15672
}
check "RabbitMQ: a dedicated user and a generated administrator, no guest; the management UI answers it only" broker_users

# --- monitoring and backups ----------------------------------------------------------------------

prometheus_api() { inside gateway curl -fsS --max-time 5 "http://127.0.0.1:9090/api/v1/$1" "${@:2}"; }
prometheus_value() { # prometheus_value QUERY: the first sample's value, or "none"
    prometheus_api query --data-urlencode "query=$1" | grep -oE '"value":\[[0-9.]+,"[^"]+"' | head -n 1 |
        sed -E 's/.*,"([^"]+)"$/\1/' | grep . || echo none
}
targets_up() {
    local targets
    targets="$(prometheus_api targets)"
    test "$(grep -o '"health":"up"' <<<"$targets" | wc -l)" = 15
}
prometheus_sees_everything() {
    # 3 services, 3 broker nodes (twice: the node and its queues), 2 PostgreSQL, 3 machines, itself.
    wait_until 90 "Prometheus to scrape its 15 targets" targets_up || {
        prometheus_api targets | grep -oE '"scrapeUrl":"[^"]+"|"health":"[a-z]+"|"lastError":"[^"]*"' | paste - - - | grep -v '"up"'
        return 1
    }
    test "$(prometheus_api rules | grep -o '"type":"alerting"' | wc -l)" = \
        "$(grep -c '^ *- alert:' config/alerts.yml)"
    # What the alert rules read is really there, with the labels they expect, and quiet.
    local query expected
    while IFS='|' read -r query expected; do
        [ "$(prometheus_value "$query")" = "$expected" ] ||
            { echo "$query = $(prometheus_value "$query"), expected $expected"; return 1; }
    done <<'QUERIES'
count(rabbitmq_detailed_raft_term_total{queue="billing_queue"})|3
count(rabbitmq_detailed_raft_term_total{queue="billing_queue.dead-letter"})|3
count(max by (queue) (rabbitmq_detailed_queue_messages_ready{queue="billing_queue"}))|1
count(max by (queue) (rabbitmq_detailed_queue_messages{queue="billing_queue.dead-letter"}))|1
count(erlang_vm_dist_node_state{job="rabbitmq", peer=~"rabbit@.*"} == 3)|6
sum(rabbitmq_alarms_memory_used_watermark + rabbitmq_alarms_free_disk_space_watermark)|0
sum(pg_up)|2
count(billing_messages_acked_total)|1
count(gateway_circuit_breaker_state)|2
count(node_memory_MemAvailable_bytes)|3
count(ALERTS{alertstate="firing"})|none
QUERIES
    echo "figures: Prometheus on the gateway: 15 targets up, $(grep -c '^ *- alert:' config/alerts.yml) alert rules loaded, none firing"
}
check "Prometheus on the gateway scrapes every service, broker node, database and machine; alert rules loaded, none firing" \
    prometheus_sees_everything

exporters_for_the_gateway_only() {
    local name port
    for name in inventory billing; do
        for port in 9100 9187 15692; do
            connects gateway "${MACHINE_IP[$name]}" "$port" || { echo "gateway cannot reach $name:$port"; return 1; }
            refuse connects host "${MACHINE_IP[$name]}" "$port" || { echo "the host reaches $name:$port"; return 1; }
        done
    done
    refuse connects inventory "${MACHINE_IP[billing]}" 9187
    refuse connects billing "${MACHINE_IP[gateway]}" 9100
    refuse connects billing "${MACHINE_IP[gateway]}" 15692
    # Prometheus' UI: only through the Vagrant host's forwarded port, not from the networks.
    refuse connects host "${MACHINE_IP[gateway]}" 9090
    refuse connects inventory "${MACHINE_IP[gateway]}" 9090
}
check "firewall: the exporters answer the gateway's Prometheus only; Prometheus' UI no machine's network" \
    exporters_for_the_gateway_only

orders_fingerprint() { # every order, in order: equal fingerprints, equal rows
    inside billing runuser -u postgres -- psql -X -qAt -d billing \
        -c 'SELECT count(*) || md5(string_agg(o::text, chr(10) ORDER BY order_id)) FROM orders o'
}
backup_and_restore() {
    local name dump before
    for name in inventory billing; do
        inside "$name" systemctl is-active --quiet "movie-db-backup@$name.timer" ||
            { echo "$name: movie-db-backup@$name.timer is not active"; return 1; }
        inside "$name" systemctl start "movie-db-backup@$name.service"
        dump="$(inside "$name" sh -c "ls -t /var/backups/movie-platform/$name-*.dump | head -n 1")"
        test "$(inside "$name" stat -c '%a %U' "$dump")" = "600 postgres"
    done
    before="$(orders_fingerprint)"
    # Disaster: the orders database is gone (billing keeps running meanwhile, and must recover).
    inside billing runuser -u postgres -- psql -X -q -c 'DROP DATABASE billing WITH (FORCE)'
    inside billing movie-db-restore billing "$dump" | sed 's/^/figures: /'
    [ "$(orders_fingerprint)" = "$before" ] || { echo "restored $(orders_fingerprint), dumped $before"; return 1; }
    ready_all
    order_billed
    echo "figures: billing's database dropped and restored from $dump: $(orders_fingerprint | cut -c1-12)... rows identical; billing billing again"
}
check "daily backups on both database machines; billing's database dropped, restored, identical rows, billing again" \
    backup_and_restore

dead_letter_command_on_the_machine() {
    inside billing billing-app dlq --env-file /etc/movie-platform/billing.env list | tail -n 1 |
        grep -qx '0 message(s) in billing_queue.dead-letter'
}
check "billing-app dlq list runs on the billing machine with the service's env file" dead_letter_command_on_the_machine

watchdog_restarts_a_hung_service() {
    local before
    before="$(main_pid inventory)"
    inside inventory kill -STOP "$before"
    # WatchdogSec=30: systemd kills the silent process and starts a new one.
    wait_until --every 0.25 50 "the watchdog to restart inventory" restarted inventory "$before" ||
        { echo "inventory was not restarted"; return 1; }
    local journal
    journal="$(inside inventory journalctl -u inventory --no-pager -n 40 2>&1)"
    grep -qi 'watchdog timeout' <<<"$journal" || { echo "no watchdog timeout in the journal:"; echo "$journal"; return 1; }
    echo "inventory: frozen as $before, restarted by the watchdog as $(main_pid inventory)"
}
check "a hung service (SIGSTOP) is restarted by the systemd watchdog" watchdog_restarts_a_hung_service

database_roles_least_privilege() {
    local app_url
    app_url="$(inside billing sed -n 's/^DATABASE_URL=//p' /etc/movie-platform/billing.env)"
    # billing's own role may add orders (the service works) but never change or delete one.
    refuse inside billing psql -X -q "$app_url" -c 'DELETE FROM orders'
    refuse inside billing psql -X -q "$app_url" -c 'UPDATE orders SET total_amount = 0'
    refuse inside billing psql -X -q "$app_url" -c 'DROP TABLE orders'
    refuse inside billing psql -X -q "$app_url" -c 'CREATE TABLE sneaky (x int)'
    inside billing psql -X -q "$app_url" -c 'SELECT count(*) FROM orders' >/dev/null
    app_url="$(inside inventory sed -n 's/^DATABASE_URL=//p' /etc/movie-platform/inventory.env)"
    refuse inside inventory psql -X -q "$app_url" -c 'DROP TABLE movies'
    refuse inside inventory psql -X -q "$app_url" -c 'ALTER TABLE movies ADD COLUMN x int'
    refuse inside inventory psql -X -q "$app_url" -c 'SELECT * FROM pg_authid'
    # The owners' passwords are generated on the machine and never leave its env file.
    inside billing grep -q '^DATABASE_MIGRATION_URL=postgres://billing_owner:' /etc/movie-platform/billing.env
}
check "each service's database role can do only what the service needs" database_roles_least_privilege

env_files_protected() {
    local name
    for name in "${MACHINES[@]}"; do
        test "$(inside "$name" stat -c '%a %U:%G' "/etc/movie-platform/$name.env")" = "640 root:$name"
    done
}
check "env files are 0640 root:<service>" env_files_protected

# --- a machine lost, a machine cut off, under order load -------------------------------------------

# order_load_start DIR USER: four clients on the host posting orders (each a new one) until
# DIR/stop exists, below the gateway's rate limit; each answer is a line of DIR/client-N:
# "<epoch seconds> <HTTP status or 'failed'> <order id or ->".
LOAD_PIDS=()
order_load_start() {
    local dir="$1" user="$2" i
    rm -rf "$dir" && mkdir -p "$dir"
    LOAD_PIDS=()
    for i in 1 2 3 4; do
        (
            while [ ! -e "$dir/stop" ]; do
                answer="$(from_host curl -sS --max-time 15 -w ' %{http_code}' -X POST "$gateway_url/api/billing" \
                    -H 'Content-Type: application/json' \
                    -d "{\"user_id\": \"$user\", \"number_of_items\": 1, \"total_amount\": \"1.00\"}" 2>/dev/null)" ||
                    answer=" failed"
                order_id="$(sed -nE 's/.*"order_id":"([^"]+)".*/\1/p' <<<"$answer")"
                echo "$(date +%s.%N) ${answer##* } ${order_id:--}"
                sleep 0.15
            done >"$dir/client-$i"
        ) &
        LOAD_PIDS+=($!)
    done
}
order_load_stop() { touch "$1/stop" && wait "${LOAD_PIDS[@]}"; }

billed_ids() { # billed_ids USER: the ids of USER's orders in billing's database, sorted
    inside billing runuser -u postgres -- psql -X -qAt -d billing -c "SELECT order_id FROM orders WHERE user_id = '$1'" | sort
}
acknowledged_billed() { billed_ids "$2" >"$1/billed" && [ -z "$(comm -23 "$1/acked" "$1/billed")" ]; }

# orders_outcome DIR USER FAULT_AT BACK_AT: the load's figures (acknowledged, landed, missing,
# duplicates; how long orders were refused after the fault); fails unless every answer was 202
# or 503, orders were accepted while the fault lasted (FAULT_AT to BACK_AT) with no refusal
# later than 30 s after it, and every 202 order is billed exactly once (waiting up to three
# minutes for billing to catch up).
orders_outcome() {
    local dir="$1" user="$2" fault_at="$3" back_at="$4" answers during refused_for missing duplicates
    cat "$dir"/client-* | sort -n >"$dir/all"
    answers="$(awk '{ print $2 }' "$dir/all" | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $1, $2; sep = ", " }')"
    awk '$2 == 202 { print $3 }' "$dir/all" | sort >"$dir/acked"
    during="$(awk -v a="$fault_at" -v b="$back_at" '$1 > a && $1 < b && $2 == 202' "$dir/all" | wc -l)"
    refused_for="$(awk -v t="$fault_at" '$1 > t && $2 != 202 { last = $1 } END { printf "%.1f", last ? last - t : 0 }' "$dir/all")"
    wait_until --every 1 180 "every acknowledged order to be billed" acknowledged_billed "$dir" "$user" || true
    missing="$(comm -23 "$dir/acked" "$dir/billed" | wc -l)"
    duplicates="$(uniq -d "$dir/billed" | wc -l)"
    echo "figures: answers $answers; acknowledged=$(wc -l <"$dir/acked") landed=$(comm -12 "$dir/acked" "$dir/billed" | wc -l)" \
        "missing=$missing duplicates=$duplicates; $during accepted during the fault; last refusal ${refused_for}s after it"
    [ -z "$(awk '$2 != 202 && $2 != 503' "$dir/all")" ] || { echo "answers other than 202 and 503:"; awk '$2 != 202 && $2 != 503' "$dir/all" | head -n 5; return 1; }
    [ "$during" -gt 0 ] && [ "$missing" = 0 ] && [ "$duplicates" = 0 ] || return 1
    # Refused (503) for seconds at most: a silent node counts as down after 7.5-12.5 s
    # (net_ticktime 10 s), then the queue has a new leader.
    awk -v s="$refused_for" 'BEGIN { exit !(s <= 30) }' || { echo "orders refused for ${refused_for}s after the fault"; return 1; }
}

# Proof: the whole billing machine loses power for a minute under order load. Its RabbitMQ node
# and the queue members on it go with it; the other two nodes hold the queue. Here, not in a
# check: the machine's processes must stay known to this shell.
orders_leader() { # the node leading the order queue, as billing's node sees it
    inside billing rabbitmq-queues -q quorum_status billing_queue --vhost movie --formatter json |
        grep -oE '"Node Name":"[^"]+","Raft State":"leader"' | cut -d'"' -f4
}
lead_from_billing() { # the harder case: the queue's leader goes with the machine
    local leader
    leader="$(orders_leader)"
    [ "$leader" != rabbit@billing ] || return 0
    inside billing rabbitmqctl -q eval \
        "ra:transfer_leadership({movie_billing_queue, '$leader'}, {movie_billing_queue, 'rabbit@billing'})." >/dev/null
    sleep 1
    [ "$(orders_leader)" = rabbit@billing ]
}
log "cutting the billing machine's power for a minute under order load, billing's node leading the queue"
wait_until 30 "billing's node to lead the order queue" lead_from_billing || true
order_load_start "$WORK/power-cut" power-cut
sleep 5
leader_before_power_cut="$(orders_leader || true)"
power_cut_at="$(date +%s.%N)"
machine_power_cut billing
sleep 55
memory_during_outage="$(broker_memory)"
sleep 5
power_back_at="$(date +%s.%N)"
machine_boot billing
sleep 5
order_load_stop "$WORK/power-cut"
billing_machine_lost() {
    echo "figures: the order queue's leader before the cut: ${leader_before_power_cut:-unknown}"
    echo "figures: RabbitMQ resident memory with billing down and its backlog queued: $memory_during_outage"
    orders_outcome "$WORK/power-cut" power-cut "$power_cut_at" "$power_back_at"
}
check "billing machine without power for a minute under order load: orders accepted meanwhile, every one billed once" \
    billing_machine_lost

# Proof: billing cut off from the other two by its own firewall, then healed. The minority node
# must stop serving (pause_minority) rather than confirm anything; the majority keeps accepting.
amqp_refused_on_billing() { refuse connects billing 127.0.0.1 5672; }
broker_running_on_billing() { inside billing rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; }
# guard_journal SINCE: what the RabbitMQ guard on billing said since SINCE (epoch seconds).
guard_journal() { inside billing journalctl -q -u movie-rabbitmq-resume --since="@${1%.*}"; }
billing_partitioned() {
    local cut_at healed_at
    order_load_start "$WORK/partition" partition
    sleep 5
    cut_at="$(date +%s.%N)"
    inside billing nft -f - <<NFT
table inet movie_partition {
    chain input { type filter hook input priority -10; ip saddr { ${MACHINE_IP[gateway]}, ${MACHINE_IP[inventory]} } drop; }
    chain output { type filter hook output priority -10; ip daddr { ${MACHINE_IP[gateway]}, ${MACHINE_IP[inventory]} } drop; }
}
NFT
    # Erlang notices a silent peer within 60-75 s (net_ticktime); then the node pauses.
    wait_until --every 1 150 "billing's node, in the minority, to stop serving" amqp_refused_on_billing ||
        { order_load_stop "$WORK/partition"; inside billing nft delete table inet movie_partition; return 1; }
    echo "figures: billing's node stopped serving $(($(date +%s) - ${cut_at%.*})) s after the cut"
    sleep 5
    inside billing nft delete table inet movie_partition
    healed_at="$(date +%s.%N)"
    # Debian's RabbitMQ can stay paused for good here; the guard restarts it after three
    # minutes (scripts/vm/rabbitmq-resume.sh).
    wait_until --every 1 360 "billing's node to serve again" broker_running_on_billing || {
        # What RabbitMQ and the guard say, for whoever reads the failure.
        inside billing sh -c 'grep -iE "partition|pause|minority|majority|global" /var/log/rabbitmq/rabbit@billing.log | tail -n 12'
        guard_journal "$healed_at" | tail -n 5
        order_load_stop "$WORK/partition"
        return 1
    }
    echo "figures: billing's node served again $(($(date +%s) - ${healed_at%.*})) s after the heal;" \
        "restarted by the guard: $(guard_journal "$healed_at" | grep -c ': restarting it$' || true) time(s)"
    sleep 5
    order_load_stop "$WORK/partition"
    orders_outcome "$WORK/partition" partition "$cut_at" "$healed_at"
}
check "billing cut off from the other two (a partition): its node stops serving, orders still accepted; healed: every order billed once" \
    billing_partitioned

# Proof: the guard itself, whether or not the partition above left the node stuck. Billing's node
# is put in the state Debian's RabbitMQ can be left in after a heal: application stopped, the
# process meant to start it again registered, the whole cluster connected. The guard must restart
# it (scripts/vm/rabbitmq-resume.sh: after three minutes, checked every 20 s).
billing_left_paused() {
    local paused_at
    inside billing rabbitmqctl -q stop_app
    inside billing rabbitmqctl -q eval \
        'spawn(fun() -> register(rabbit_outside_app_process, self()), receive after infinity -> ok end end), ok.' >/dev/null
    paused_at="$(date +%s.%N)"
    wait_until --every 1 300 "the guard to restart billing's paused node" broker_running_on_billing ||
        { guard_journal "$paused_at" | tail -n 5; return 1; }
    echo "figures: billing's node served again $(($(date +%s) - ${paused_at%.*})) s after it was left paused"
    guard_journal "$paused_at" | grep -q ': restarting it$' ||
        { echo "the node served again, but not through the guard:"; guard_journal "$paused_at"; return 1; }
}
check "a RabbitMQ node left paused with its cluster whole is restarted by the guard" billing_left_paused

# Proof: the billing machine rebuilt from nothing (its disk lost) while orders wait on the other
# two nodes: its new node must join them, not start a cluster of its own. Its database is new:
# what it had billed is gone with the disk (README: the billing database is not replicated).
log "rebuilding the billing machine from nothing while orders wait on the other two nodes"
machine_power_cut billing
mkdir -p "$WORK/rebuilt"
for i in $(seq 1 40); do
    answer="$(from_host curl -sS --max-time 15 -w ' %{http_code}' -X POST "$gateway_url/api/billing" \
        -H 'Content-Type: application/json' \
        -d '{"user_id": "rebuilt", "number_of_items": 1, "total_amount": "1.00"}' 2>/dev/null)" || answer=" failed"
    echo "$(date +%s.%N) ${answer##* } $(sed -nE 's/.*"order_id":"([^"]+)".*/\1/p' <<<"$answer")"
    sleep 0.2
done >"$WORK/rebuilt/client-1"
machine_wipe billing
machine_boot billing
rebuilt_provisioned=true
provision billing >"$WORK/provision-rebuilt-billing.log" 2>&1 || rebuilt_provisioned=false
billing_rebuilt() {
    $rebuilt_provisioned || { tail -n 20 "$WORK/provision-rebuilt-billing.log"; return 1; }
    grep 'forgetting\|joining' "$WORK/provision-rebuilt-billing.log" | sed 's/^/figures: /'
    rabbitmq_cluster_whole
    cat "$WORK/rebuilt/client-1" >"$WORK/rebuilt/all"
    awk '$2 == 202 { print $3 }' "$WORK/rebuilt/all" | sort >"$WORK/rebuilt/acked"
    [ -s "$WORK/rebuilt/acked" ] || { echo "no order was accepted while billing was gone"; return 1; }
    wait_until --every 1 120 "the orders queued meanwhile to be billed" acknowledged_billed "$WORK/rebuilt" rebuilt ||
        { echo "missing: $(comm -23 "$WORK/rebuilt/acked" "$WORK/rebuilt/billed" | wc -l)"; return 1; }
    echo "figures: $(wc -l <"$WORK/rebuilt/acked") orders accepted while billing was gone, all billed once by the rebuilt machine"
    [ -z "$(uniq -d "$WORK/rebuilt/billed")" ]
    ready_all
}
check "billing machine rebuilt from nothing: its node rejoins the cluster, the orders queued meanwhile are billed once" \
    billing_rebuilt

# The reboot itself runs here, not inside a check: checks run in subshells, and the machines'
# process ids must stay known to this shell (to reach them, and to clean them up).
log "rebooting all three machines"
for name in "${MACHINES[@]}"; do machine_poweroff "$name"; done
# Together, as a host's hypervisor starts them: a RabbitMQ node that was not the last of its
# cluster to stop waits for the others before it starts.
for name in "${MACHINES[@]}"; do machine_start "$name"; done
for name in "${MACHINES[@]}"; do machine_started "$name"; done
after_reboot() {
    units_active_and_enabled
    ready_all
    movie_crud
    order_billed
}
check "all three machines rebooted: everything comes back on its own" after_reboot

# RabbitMQ 3.10 was seen (on the loopback test cluster, after its three nodes started together)
# with a node whose supervisor of at-least-once dead-letter workers had died: such a node
# cannot lead a queue with this dead-letter strategy, which the order queue uses.
dead_letter_workers_supervised() {
    local name
    for name in "${MACHINES[@]}"; do
        inside "$name" rabbitmqctl -q eval 'is_pid(whereis(rabbit_fifo_dlx_sup)).' | grep -qx true ||
            { echo "$name: no rabbit_fifo_dlx_sup"; return 1; }
    done
}
check "after the reboot every RabbitMQ node can lead the order queue (its dead-letter worker supervisor runs)" \
    dead_letter_workers_supervised

units_verify() { # the service's unit and its drop-in, and the RabbitMQ guard's units
    local name output
    for name in "${MACHINES[@]}"; do
        output="$(inside "$name" systemd-analyze verify "/etc/systemd/system/$name.service" \
            /etc/systemd/system/movie-rabbitmq-resume.service /etc/systemd/system/movie-rabbitmq-resume.timer 2>&1)" ||
            { echo "$name: systemd-analyze verify failed: $output"; return 1; }
        [ -z "$output" ] || { echo "$name: $output"; return 1; }
        inside "$name" systemctl is-active --quiet movie-rabbitmq-resume.timer ||
            { echo "$name: movie-rabbitmq-resume.timer is not active"; return 1; }
    done
}
check "systemd-analyze verify prints nothing for each unit; the RabbitMQ guard's timer runs" units_verify

# The units hold only what differs between the services; what they share (readiness, restarts,
# the kept socket, the watchdog, the hardening) is one drop-in. systemd must report its
# settings for each running service.
property_is() { # property_is SERVICE PROPERTY EXPECTED
    local actual
    actual="$(inside "$1" systemctl show -p "$2" --value "$1")"
    [ "$actual" = "$3" ] || { echo "$1: $2=$actual, expected $3"; return 1; }
}
units_share_the_drop_in() {
    local name setting
    for name in "${MACHINES[@]}"; do
        property_is "$name" DropInPaths "/etc/systemd/system/$name.service.d/movie-platform.conf"
        property_is "$name" User "$name"
        for setting in Type=notify NotifyAccess=main Restart=on-failure RestartPreventExitStatus=78 \
            FileDescriptorStoreMax=1 WatchdogUSec=30s TimeoutStartUSec=2min StartLimitBurst=20 \
            NoNewPrivileges=yes CapabilityBoundingSet= PrivateTmp=yes PrivateDevices=yes \
            PrivateUsers=yes ProtectSystem=strict ProtectHome=yes ProtectProc=invisible \
            RestrictNamespaces=yes MemoryDenyWriteExecute=yes UMask=0077; do
            property_is "$name" "${setting%%=*}" "${setting#*=}"
        done
    done
}
check "each service runs with the shared drop-in's settings (readiness, restarts, hardening)" units_share_the_drop_in

units_security() {
    local name score
    for name in "${MACHINES[@]}"; do
        # The unit file as installed, with its drop-in (systemd-analyze reads both).
        score="$(inside "$name" systemd-analyze security --offline=yes "/etc/systemd/system/$name.service" 2>/dev/null |
            sed -nE 's/.*Overall exposure level for .*: ([0-9.]+).*/\1/p')"
        echo "figures: $name.service exposure: ${score:-none}"
        awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }' || return 1
    done
    for name in inventory billing; do
        score="$(inside "$name" systemd-analyze security "movie-db-backup@$name.service" 2>/dev/null |
            sed -nE 's/.*Overall exposure level for .*: ([0-9.]+).*/\1/p')"
        echo "figures: movie-db-backup@$name.service exposure: ${score:-none}"
        awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }' || return 1
    done
}
check "systemd-analyze security rates each unit 2.5 or lower (the services and the backups)" units_security

vagrant_validate() {
    VAGRANT_CHECKPOINT_DISABLE=1 unshare --net vagrant validate --ignore-provider
}
check "vagrant validate (no network)" vagrant_validate

# The broker shape chosen at `vagrant up` is kept: the Vagrantfile's shape logic alone, run as
# `vagrant provision` would run it, with and without VMs (Vagrant leaves an id file per machine).
broker_shape_kept() {
    local dir="$WORK/vagrant-shape" output
    mkdir -p "$dir/.vagrant/machines/billing/libvirt"
    sed -n '/^SHAPES = /,/^BROKER_SHAPE = broker_shape$/p' Vagrantfile >"$dir/shape.rb"
    echo 'puts BROKER_SHAPE' >>"$dir/shape.rb"
    shape() { (cd "$dir" && env "$@" ruby shape.rb provision 2>&1); }
    # No VMs yet: the variable's shape, then kept once they exist.
    [ "$(shape MOVIE_BROKER_SHAPE=single)" = single ] || return 1
    echo 0f1e2d >"$dir/.vagrant/machines/billing/libvirt/id"
    output="$(shape)" && [ "$output" = single ] || { echo "unset: $output"; return 1; }
    output="$(shape MOVIE_BROKER_SHAPE=cluster)" && { echo "the other shape was accepted: $output"; return 1; }
    grep -q "made with MOVIE_BROKER_SHAPE=single" <<<"$output" || { echo "$output"; return 1; }
    # VMs made before the shape was kept: asked for once, not guessed.
    rm "$dir/.vagrant/movie-broker-shape"
    output="$(shape)" && { echo "a shape was guessed: $output"; return 1; }
    [ "$(shape MOVIE_BROKER_SHAPE=single)" = single ] && [ "$(shape)" = single ]
}
check "the broker shape chosen at vagrant up is kept; another is refused while the VMs exist; unknown, it is asked for" broker_shape_kept

checks_summary deploy
