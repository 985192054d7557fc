#!/usr/bin/env bash
# Benchmarks: builds in release mode, starts the platform on loopback (ports 28080-28082) against
# the local PostgreSQL and RabbitMQ, and measures each scenario next to its limit in the same run:
#   1. GET /api/movies (20 movies) through the gateway vs straight to inventory (wrk, 64 conn.),
#      through a bare actix-web + reqwest proxy (the cost of the hop alone), and with the
#      gateway on a core of its own (as the three-VM deployment gives it a machine); the
#      gateway's catalogue cache (hits) vs inventory, and the gateway without it vs nginx;
#   2. POST /api/billing (broker-confirmed) vs a raw confirmed lapin publisher into the same
#      queue (billing draining it during both), 64 in flight;
#   3. billing draining a 10,000-order backlog vs raw inserts in the same batches, and one row
#      per commit, and a 10,000 and a 100,000 backlog (BENCH_LARGE_BACKLOG) vs the raw consumer;
#   4. confirmed publishes into a quorum queue on the three-node test cluster vs the single
#      test broker (the price of replication), 64 in flight, no consumer;
#   5. memory (RSS) of each service idle and after the load, and time from start to ready;
#   6. memory per client connection: the gateway (without and with its cache) vs nginx in front
#      of the same inventory, at 1,024 and 10,000 keep-alive connections, busy and idle
#      (scripts/bench/connection-memory.sh).
# Prints a table and writes it to target/bench/results.md. Load goes to loopback only.
set -euo pipefail
. "$(dirname "$0")/lib/local-platform.sh"
. "$(dirname "$0")/lib/rabbitmq-cluster.sh"
. "$(dirname "$0")/bench/cpu-accounting.sh"
cd "$REPO_ROOT"
MANY_CONNECTIONS="${BENCH_MANY_CONNECTIONS:-10000}"
LARGE_BACKLOG="${BENCH_LARGE_BACKLOG:-100000}"

# Short runs, many rounds: pairs run close together in time drift less apart.
DURATION="${BENCH_DURATION:-5s}"
ROUNDS="${BENCH_ROUNDS:-7}"
CONNECTIONS=64
TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
BIN="$TARGET/release"
OUT="${BENCH_OUT:-$TARGET/bench}"
RUN="$OUT/run"

ensure_packages wrk procps iproute2
# nginx is only the reference proxy of scenario 6: its package's own service is neither started
# nor, where this script installed it, started at the next boot.
if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'install ok installed'; then
    without_service_starts ensure_packages nginx
    if [ -d /run/systemd/system ]; then as_root systemctl disable --quiet nginx; fi
fi
# Scenario 6's 10,000 connections: a file descriptor each in wrk and in the proxy.
ulimit -n "$(ulimit -Hn)"
((${BENCH_MANY_CONNECTIONS:-10000} + 1024 <= $(ulimit -n))) ||
    die "scenario 6 needs $((${BENCH_MANY_CONNECTIONS:-10000} + 1024)) open files; the hard limit is $(ulimit -Hn)"
start_local_servers
pg_ensure_role movie_test "$TEST_DB_PASSWORD" CREATEDB
rmq_ensure_user movie_test "$TEST_AMQP_PASSWORD" movie-test
# Scenario 4's cluster: started if down (scripts/lib/rabbitmq-cluster.sh); each round deletes
# the queue it made.
log "starting the three-node test cluster of RabbitMQ"
start_test_cluster

log "building (release)"
cargo build --release --locked --bins >/dev/null 2>&1 || cargo build --release --locked --bins

rm -rf "$OUT"
mkdir -p "$OUT"
for db in movie_test_bench_inventory movie_test_bench_billing movie_test_bench_insert; do
    pg_psql -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    pg_psql -c "CREATE DATABASE $db OWNER movie_test"
done
DB="postgres://movie_test:${TEST_DB_PASSWORD}@127.0.0.1:5432"
AMQP="amqp://movie_test:${TEST_AMQP_PASSWORD}@127.0.0.1:5672/movie-test"
# Every node, movie-a first: the publisher connects to movie-a.
CLUSTER_AMQP="$(test_cluster_urls)"
QUEUE="bench-$$"
GATEWAY=127.0.0.1:28080
INVENTORY=127.0.0.1:28081
BILLING=127.0.0.1:28082
BARE_PROXY=127.0.0.1:28083
# (It may have exited already: the trap must still go on to stop the services.)
stop_bare_proxy() { [ ! -f "$RUN/bare-proxy.pid" ] || { kill "$(cat "$RUN/bare-proxy.pid")" 2>/dev/null || true; rm -f "$RUN/bare-proxy.pid"; }; }
# pin CPUS PID...: every thread of each process may run on CPUS only (taskset, util-linux).
pin() {
    local cpus="$1" pid
    shift
    for pid in "$@"; do taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1 || true; done
}
# Back to every CPU: the services, and PostgreSQL (its backends too), which is not ours to keep
# pinned.
unpin() {
    # shellcheck disable=SC2046 # one pid per word
    pin "0-$(($(nproc) - 1))" $(cat "$RUN"/*.pid 2>/dev/null) $(pgrep -u postgres)
}
. "$REPO_ROOT/scripts/bench/connection-memory.sh"
trap 'unpin; stop_bare_proxy; connection_memory_cleanup; stop_spawned_services "$RUN/cached"; stop_spawned_services "$RUN"' EXIT

now_ms() { date +%s%3N; }
# Every wait is bounded (wait_until), so that a broken run ends instead of hanging.
LOGS_HINT="see the logs in $OUT/logs/"
# A leftover process on one of the ports would answer in place of the one just started.
assert_running() { kill -0 "$(cat "$1")" 2>/dev/null || die "$2 exited (port taken?): $LOGS_HINT"; }
# start_timed NAME READY_URL VAR=VALUE...: starts a service; prints milliseconds to ready.
start_timed() {
    local name="$1" url="$2" started
    shift 2
    started="$(now_ms)"
    spawn_service "$BIN" "$name" "$OUT/logs" "$RUN" RUST_LOG=warn "$@"
    wait_until --every 0.01 60 "$name to answer $url" http_ok "$url" || die "$LOGS_HINT"
    assert_running "$RUN/$name.pid" "$name"
    echo $(($(now_ms) - started))
}
rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$(cat "$RUN/$1.pid")/status"; }
peak_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$(cat "$RUN/$1.pid")/status"; }

inventory_env=(INVENTORY_BIND_ADDR="$INVENTORY" DATABASE_URL="$DB/movie_test_bench_inventory" AMQP_URL="$AMQP"
    ADMIN_TOKEN="$ADMIN_TOKEN")
billing_env=(BILLING_HTTP_ADDR="$BILLING" DATABASE_URL="$DB/movie_test_bench_billing" AMQP_URL="$AMQP" BILLING_QUEUE="$QUEUE")
log "starting the platform"
ready_inventory="$(start_timed inventory-app "http://$INVENTORY/ready" "${inventory_env[@]}")"
ready_billing="$(start_timed billing-app "http://$BILLING/ready" "${billing_env[@]}")"
# Without the catalogue cache: every read makes the hop (scenario 1c measures the cache).
ready_gateway="$(start_timed api-gateway "http://$GATEWAY/ready" GATEWAY_BIND_ADDR="$GATEWAY" \
    INVENTORY_URL="http://$INVENTORY" BILLING_URL="http://$BILLING" AMQP_URL="$AMQP" BILLING_QUEUE="$QUEUE" \
    ADMIN_TOKEN="$ADMIN_TOKEN" RATE_LIMIT_PER_SECOND=0 CATALOGUE_CACHE_MB=0)"
sleep 1
declare -A IDLE
for name in api-gateway inventory-app billing-app; do IDLE[$name]="$(rss_mb "$name")"; done

for i in $(seq 1 20); do
    curl -fsS -o /dev/null -X POST "http://$GATEWAY/api/movies" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' \
        -d "{\"title\": \"Movie $i\", \"description\": \"A benchmark movie\", \"release_year\": 1999, \"genres\": [\"Drama\"]}"
done

# CPU accounting (scripts/bench/cpu-accounting.sh): the groups of processes it measures.
CPU_ACCOUNTING_DIR="$OUT"
cpu_groups() {
    echo "gateway $(cat "$RUN/api-gateway.pid")"
    echo "bare_proxy $(cat "$RUN/bare-proxy.pid" 2>/dev/null || true)"
    echo "inventory $(cat "$RUN/inventory-app.pid")"
    echo "billing $(cat "$RUN/billing-app.pid")"
    echo "postgresql $(pgrep -u postgres | tr '\n' ' ')"
    echo "rabbitmq $(pgrep -u rabbitmq | tr '\n' ' ')"
    local nginx
    nginx="$(cat "$FRESH_RUN/nginx.pid" 2>/dev/null || true)"
    echo "nginx ${nginx:+$nginx $(pgrep -P "$nginx" | tr '\n' ' ')}"
}

# wrk_run NAME ARGS...: runs wrk, keeps its report and its CPU accounting (cpu.txt, labelled
# NAME without the round number), prints "requests/s p50_ms p99_ms failures" (non-2xx answers
# and socket errors, timeouts included).
wrk_run() {
    local name="$1"
    shift
    local load=(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
    # WRK_CPUS: the CPUs wrk may run on (all when unset).
    [ -z "${WRK_CPUS:-}" ] || load=(taskset -c "$WRK_CPUS" "${load[@]}")
    measured_run "$OUT/$name.wrk" "${load[@]}"
    cpu_record_run "${name%-*}" "$OUT/$name.wrk" "$(awk '/requests in/ { print $1 }' "$OUT/$name.wrk")"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx/ { bad += $NF }
        # "Socket errors: connect 0, read 0, write 0, timeout 12": failures too.
        /Socket errors/ { for (i = 3; i <= NF; i += 2) bad += $(i + 1) }
        END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad }' "$OUT/$name.wrk"
}

seconds() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }'; }

# Each pair of runs is repeated ROUNDS times, alternating ours and the limit: this machine's
# speed drifts by tens of percent from one run to the next. Rates are reported as medians, and
# each ratio as the median of the rounds' ratios (ours over the limit run right after it).
log "1. GET /api/movies: gateway vs inventory ($CONNECTIONS connections, $DURATION each, $ROUNDS rounds)"
# A bare actix-web + reqwest forwarder to inventory (srcs/bench): what one HTTP hop built from
# the gateway's components costs on this machine, without the gateway's own work.
"$BIN/bench-baselines" proxy "$BARE_PROXY" "http://$INVENTORY" >"$OUT/logs/bare-proxy.log" 2>&1 &
echo $! >"$RUN/bare-proxy.pid"
wait_until --every 0.01 60 "the bare proxy" http_ok "http://$BARE_PROXY/api/movies" || die "$LOGS_HINT"
assert_running "$RUN/bare-proxy.pid" "the bare proxy"
declare -a gw_rps_runs gw_p50_runs gw_p99_runs inv_rps_runs inv_p50_runs inv_p99_runs
declare -a bare_rps_runs bare_p50_runs bare_p99_runs
gw_bad=0 inv_bad=0 bare_bad=0
for round in $(seq 1 "$ROUNDS"); do
    read -r rps p50 p99 bad < <(wrk_run "gateway-get-$round" "http://$GATEWAY/api/movies")
    gw_rps_runs+=("$rps") gw_p50_runs+=("$p50") gw_p99_runs+=("$p99") gw_bad=$((gw_bad + bad))
    read -r rps p50 p99 bad < <(wrk_run "bare-proxy-get-$round" "http://$BARE_PROXY/api/movies")
    bare_rps_runs+=("$rps") bare_p50_runs+=("$p50") bare_p99_runs+=("$p99") bare_bad=$((bare_bad + bad))
    read -r rps p50 p99 bad < <(wrk_run "inventory-get-$round" "http://$INVENTORY/api/movies")
    inv_rps_runs+=("$rps") inv_p50_runs+=("$p50") inv_p99_runs+=("$p99") inv_bad=$((inv_bad + bad))
done
stop_bare_proxy

# 1c. The catalogue cache: a gateway with it (the default) answering from memory, against
# inventory itself; and the gateway without it (the one above) against nginx proxying the same
# hop (scripts/bench/connection-memory.sh's configuration: upstream keep-alive).
log "1c. GET /api/movies: the gateway's cache vs inventory; the gateway without it vs nginx ($ROUNDS rounds)"
CACHED_GATEWAY=127.0.0.1:28086
CACHED_RUN="$RUN/cached"
spawn_service "$BIN" api-gateway "$OUT/logs/cached" "$CACHED_RUN" RUST_LOG=warn GATEWAY_BIND_ADDR="$CACHED_GATEWAY" \
    INVENTORY_URL="http://$INVENTORY" BILLING_URL="http://$BILLING" AMQP_URL="$AMQP" BILLING_QUEUE="$QUEUE" \
    ADMIN_TOKEN="$ADMIN_TOKEN" RATE_LIMIT_PER_SECOND=0
wait_until --every 0.01 60 "the caching gateway" http_ok "http://$CACHED_GATEWAY/api/movies" || die "$LOGS_HINT"
mkdir -p "$FRESH_RUN"
nginx_start "$CONNECTIONS"
declare -a hit_rps_runs hit_p99_runs hit_inv_rps_runs hit_inv_p99_runs miss_rps_runs miss_p99_runs nginx_rps_runs nginx_p99_runs
cache_bad=0
for round in $(seq 1 "$ROUNDS"); do
    read -r rps _ p99 bad < <(wrk_run "cached-gateway-get-$round" "http://$CACHED_GATEWAY/api/movies")
    hit_rps_runs+=("$rps") hit_p99_runs+=("$p99") cache_bad=$((cache_bad + bad))
    read -r rps _ p99 bad < <(wrk_run "inventory-again-get-$round" "http://$INVENTORY/api/movies")
    hit_inv_rps_runs+=("$rps") hit_inv_p99_runs+=("$p99") cache_bad=$((cache_bad + bad))
    read -r rps _ p99 bad < <(wrk_run "uncached-gateway-get-$round" "http://$GATEWAY/api/movies")
    miss_rps_runs+=("$rps") miss_p99_runs+=("$p99") cache_bad=$((cache_bad + bad))
    read -r rps _ p99 bad < <(wrk_run "nginx-get-$round" "http://$NGINX_PROXY/api/movies")
    nginx_rps_runs+=("$rps") nginx_p99_runs+=("$p99") cache_bad=$((cache_bad + bad))
done
hits="$(curl -fsS "http://$CACHED_GATEWAY/metrics" | awk '$1 == "gateway_catalogue_cache_lookups_total{result=\"hit\"}" { print $2 }')"
nginx_stop
stop_spawned_services "$CACHED_RUN"

# 1b. The three-VM deployment gives the gateway a machine of its own, so its CPU does not come
# out of inventory's. The nearest this one box gets: inventory and PostgreSQL on one core, the
# gateway and wrk on the other (wrk runs on that core for the direct runs too).
declare -a own_gw_rps_runs own_gw_p99_runs own_inv_rps_runs own_inv_p99_runs
own_bad=0
if (($(nproc) >= 2)); then
    log "1b. the same with the gateway on a core of its own (inventory and PostgreSQL on the other)"
    pin 1 "$(cat "$RUN/inventory-app.pid")" $(pgrep -u postgres)
    pin 0 "$(cat "$RUN/api-gateway.pid")"
    for round in $(seq 1 "$ROUNDS"); do
        read -r rps _ p99 bad < <(WRK_CPUS=0 wrk_run "gateway-own-core-get-$round" "http://$GATEWAY/api/movies")
        own_gw_rps_runs+=("$rps") own_gw_p99_runs+=("$p99") own_bad=$((own_bad + bad))
        read -r rps _ p99 bad < <(WRK_CPUS=0 wrk_run "inventory-own-core-get-$round" "http://$INVENTORY/api/movies")
        own_inv_rps_runs+=("$rps") own_inv_p99_runs+=("$p99") own_bad=$((own_bad + bad))
    done
    unpin
fi

log "2. POST /api/billing vs a raw confirmed publisher into the same queue ($CONNECTIONS in flight, $ROUNDS rounds)"
cat >"$OUT/order.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}'
wrk.headers["Content-Type"] = "application/json"
LUA
# Billing runs and drains that queue during both, so both pay for the same consumer.
declare -a post_rps_runs post_p50_runs post_p99_runs raw_pub_rps_runs raw_pub_p50_runs raw_pub_p99_runs
post_bad=0
for round in $(seq 1 "$ROUNDS"); do
    read -r rps p50 p99 bad < <(wrk_run "gateway-post-$round" -s "$OUT/order.lua" "http://$GATEWAY/api/billing")
    post_rps_runs+=("$rps") post_p50_runs+=("$p50") post_p99_runs+=("$p99") post_bad=$((post_bad + bad))
    # About as many messages as the gateway took in, so both runs last about as long.
    messages="$(awk -v r="$rps" -v s="$(seconds "$DURATION")" 'BEGIN { printf "%d", r * s }')"
    measured_run "$OUT/raw-publisher-$round.out" "$BIN/bench-baselines" publish "$AMQP" "$QUEUE" \
        "$messages" "$CONNECTIONS"
    cpu_record_run raw-publisher "$OUT/raw-publisher-$round.out" "$messages"
    raw_publish="$(cat "$OUT/raw-publisher-$round.out")"
    raw_pub_rps_runs+=("$(sed -nE 's/.*per_second=([0-9]+).*/\1/p' <<<"$raw_publish")")
    raw_pub_p50_runs+=("$(sed -nE 's/.*p50_ms=([0-9.]+).*/\1/p' <<<"$raw_publish")")
    raw_pub_p99_runs+=("$(sed -nE 's/.*p99_ms=([0-9.]+).*/\1/p' <<<"$raw_publish")")
done
# Medians, and every round for the record.
rounds_of() { local IFS=' '; echo "$*"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# ratios_by_round OURS_ARRAY LIMIT_ARRAY: each round's ratio.
ratios_by_round() {
    local -n ours="$1" limit="$2"
    local i
    for i in "${!ours[@]}"; do printf '%s ' "$(ratio "${ours[$i]}" "${limit[$i]}")"; done
}
get_ratios="$(ratios_by_round gw_rps_runs inv_rps_runs)"
own_core_ratios="$(ratios_by_round own_gw_rps_runs own_inv_rps_runs)"
bare_ratios="$(ratios_by_round gw_rps_runs bare_rps_runs)"
post_ratios="$(ratios_by_round post_rps_runs raw_pub_rps_runs)"
hit_ratios="$(ratios_by_round hit_rps_runs hit_inv_rps_runs)"
miss_ratios="$(ratios_by_round miss_rps_runs nginx_rps_runs)"
miss_p99_ratios="$(ratios_by_round miss_p99_runs nginx_p99_runs)"
hit_rps="$(median "${hit_rps_runs[@]}")" hit_p99="$(median "${hit_p99_runs[@]}")"
hit_inv_rps="$(median "${hit_inv_rps_runs[@]}")" hit_inv_p99="$(median "${hit_inv_p99_runs[@]}")"
miss_rps="$(median "${miss_rps_runs[@]}")" miss_p99="$(median "${miss_p99_runs[@]}")"
nginx_rps="$(median "${nginx_rps_runs[@]}")" nginx_p99="$(median "${nginx_p99_runs[@]}")"
{
    echo "GET gateway requests/s by round: $(rounds_of "${gw_rps_runs[@]}")"
    echo "GET bare proxy requests/s by round: $(rounds_of "${bare_rps_runs[@]}")"
    echo "GET inventory requests/s by round: $(rounds_of "${inv_rps_runs[@]}")"
    echo "GET gateway / inventory by round: $get_ratios"
    echo "GET gateway / bare proxy by round: $bare_ratios"
    echo "GET, gateway on its own core, requests/s by round: $(rounds_of "${own_gw_rps_runs[@]}")"
    echo "GET, inventory direct with the same cores, requests/s by round: $(rounds_of "${own_inv_rps_runs[@]}")"
    echo "GET, gateway on its own core / inventory by round: $own_core_ratios"
    echo "GET cache hits requests/s by round: $(rounds_of "${hit_rps_runs[@]}"); hits counted: ${hits:-none}"
    echo "GET inventory (beside the cache) requests/s by round: $(rounds_of "${hit_inv_rps_runs[@]}")"
    echo "GET cache hits / inventory by round: $hit_ratios"
    echo "GET gateway without cache requests/s by round: $(rounds_of "${miss_rps_runs[@]}")"
    echo "GET nginx requests/s by round: $(rounds_of "${nginx_rps_runs[@]}")"
    echo "GET gateway without cache / nginx by round: $miss_ratios (p99: $miss_p99_ratios)"
    echo "POST gateway orders/s by round: $(rounds_of "${post_rps_runs[@]}")"
    echo "raw publisher messages/s by round: $(rounds_of "${raw_pub_rps_runs[@]}")"
    echo "POST gateway / raw publisher by round: $post_ratios"
} >"$OUT/rounds.txt"
gw_rps="$(median "${gw_rps_runs[@]}")" gw_p50="$(median "${gw_p50_runs[@]}")" gw_p99="$(median "${gw_p99_runs[@]}")"
bare_rps="$(median "${bare_rps_runs[@]}")" bare_p50="$(median "${bare_p50_runs[@]}")" bare_p99="$(median "${bare_p99_runs[@]}")"
own_gw_rps="$(median "${own_gw_rps_runs[@]}")" own_gw_p99="$(median "${own_gw_p99_runs[@]}")"
own_inv_rps="$(median "${own_inv_rps_runs[@]}")" own_inv_p99="$(median "${own_inv_p99_runs[@]}")"
inv_rps="$(median "${inv_rps_runs[@]}")" inv_p50="$(median "${inv_p50_runs[@]}")" inv_p99="$(median "${inv_p99_runs[@]}")"
post_rps="$(median "${post_rps_runs[@]}")" post_p50="$(median "${post_p50_runs[@]}")" post_p99="$(median "${post_p99_runs[@]}")"
raw_pub_rps="$(median "${raw_pub_rps_runs[@]}")" raw_pub_p50="$(median "${raw_pub_p50_runs[@]}")" raw_pub_p99="$(median "${raw_pub_p99_runs[@]}")"

declare -A LOADED
for name in api-gateway inventory-app billing-app; do LOADED[$name]="$(peak_mb "$name")"; done

log "3. draining a backlog of 10,000 and of $LARGE_BACKLOG orders vs raw inserts and the raw consumer"
# Let billing finish what scenario 2 queued, then stop it and build a fresh backlog.
rows() { pg_psql -d movie_test_bench_billing -c 'SELECT count(*) FROM orders'; }
backlog() { rabbitmqctl -q list_queues -p movie-test name messages | awk -v q="$QUEUE" '$1 == q { print $2 }'; }
backlog_empty() { [ "$(backlog)" = 0 ]; }
wait_until 300 "billing to take scenario 2's orders off the queue" backlog_empty || die "$LOGS_HINT"
# drain ORDERS: billing stopped, a backlog of ORDERS built, billing started; prints the steady
# rate (first commit to last: processed_at is each transaction's start) and the milliseconds
# from the process start to the last row (which include the start and this loop's polling).
# Its CPU accounting (labelled drain-ORDERS) runs from billing's start to the last row.
drain() {
    local orders="$1" before started
    kill -TERM "$(cat "$RUN/billing-app.pid")"
    wait_until --every 0.1 60 "billing to stop" process_gone "$(cat "$RUN/billing-app.pid")" || die "$LOGS_HINT"
    "$BIN/bench-baselines" publish "$AMQP" "$QUEUE" "$orders" "$CONNECTIONS" >/dev/null
    before="$(rows)"
    cpu_snapshot "$CPU_ACCOUNTING_DIR/cpu.before"
    started="$(now_ms)"
    spawn_service "$BIN" billing-app "$OUT/logs" "$RUN" RUST_LOG=warn "${billing_env[@]}"
    drained() { [ "$(rows)" -ge $((before + orders)) ]; }
    wait_until --every 0.05 600 "billing to drain the $orders orders" drained || die "$LOGS_HINT"
    cpu_snapshot "$CPU_ACCOUNTING_DIR/cpu.after"
    cpu_record "drain-$orders" "$CPU_ACCOUNTING_DIR/cpu.before" "$CPU_ACCOUNTING_DIR/cpu.after" "$orders" "0m0s 0m0s"
    echo "$(pg_psql -d movie_test_bench_billing -c "
        WITH drain AS (SELECT processed_at FROM orders ORDER BY processed_at DESC LIMIT $orders),
             span AS (SELECT min(processed_at) AS first, max(processed_at) AS last FROM drain)
        SELECT round((SELECT count(*) FROM drain WHERE processed_at > span.first)
                     / greatest(extract(epoch FROM span.last - span.first), 0.001))
        FROM span") $(($(now_ms) - started))"
}
# raw_consume ORDERS: the broker's side of a drain alone (the same prefetch and acknowledgements,
# no decoding and no database): messages/s. Its CPU accounting is labelled raw-consume-ORDERS.
raw_consume() {
    local orders="$1" output="$OUT/raw-consume-$1.out"
    "$BIN/bench-baselines" publish "$AMQP" "$QUEUE-consume" "$orders" "$CONNECTIONS" >/dev/null
    measured_run "$output" "$BIN/bench-baselines" consume "$AMQP" "$QUEUE-consume" "$orders" 500 200
    cpu_record_run "raw-consume-$orders" "$output" "$orders"
    sed -nE 's/.*per_second=([0-9]+).*/\1/p' "$output"
}
read -r drain_rps drain_ms < <(drain 10000)
drain_wall_rps=$((10000 * 1000 / drain_ms))
read -r large_drain_rps large_drain_ms < <(drain "$LARGE_BACKLOG")
raw_consume_rps="$(raw_consume 10000)"
large_raw_consume_rps="$(raw_consume "$LARGE_BACKLOG")"
raw_batch="$("$BIN/bench-baselines" insert "$DB/movie_test_bench_insert" 10000 200)"
raw_batch_rps="$(sed -nE 's/.*per_second=([0-9]+).*/\1/p' <<<"$raw_batch")"
raw_single="$("$BIN/bench-baselines" insert "$DB/movie_test_bench_insert" 2000 1)"
raw_single_rps="$(sed -nE 's/.*per_second=([0-9]+).*/\1/p' <<<"$raw_single")"

log "4. confirmed publishes: the three-node test cluster vs the single broker ($CONNECTIONS in flight, $ROUNDS rounds)"
# The raw publisher of scenario 2 into a fresh queue per run that nobody consumes, deleted after
# it: on the cluster (declared on movie-a, so its leader is there and its followers on movie-b
# and movie-c) against the single test broker. About a run's worth of messages at scenario 2's
# raw rate, the same number on both sides. The three nodes share this machine's cores and disk.
replication_messages="$(awk -v r="${raw_pub_rps:-0}" -v s="$(seconds "$DURATION")" \
    'BEGIN { n = r * s; printf "%d", (n < 1000 ? 1000 : n) }')"
# publish_run NAME URL QUEUE: one measured run into QUEUE; the publisher's line in
# $OUT/NAME.out, its CPU accounting labelled NAME without the round number.
publish_run() {
    local name="$1" url="$2" queue="$3"
    measured_run "$OUT/$name.out" "$BIN/bench-baselines" publish "$url" "$queue" \
        "$replication_messages" "$CONNECTIONS"
    cpu_record_run "${name%-*}" "$OUT/$name.out" "$replication_messages"
}
# publish_figure KEY NAME: one figure of publish_run NAME's line.
publish_figure() { sed -nE "s/.* $1=([0-9.]+).*/\1/p" "$OUT/$2.out"; }
declare -a cluster_pub_rps_runs cluster_pub_p50_runs cluster_pub_p99_runs
declare -a single_pub_rps_runs single_pub_p50_runs single_pub_p99_runs
cluster_queue=""
for round in $(seq 1 "$ROUNDS"); do
    queue="$QUEUE-replication-$round"
    publish_run "publish-3-nodes-$round" "$CLUSTER_AMQP" "$queue"
    if ((round == 1)); then
        # Where the queue's replicas were, asked once (and checked after the table): a queue on
        # fewer than the three nodes would not measure replication.
        cluster_queue="$(cluster_ctl "${CLUSTER_NODES[0]}" list_queues -p "$CLUSTER_VHOST" name leader members |
            awk -v q="$queue" -F '\t' '$1 == q { print "leader " $2 ", members " $3 }' || true)"
    fi
    "$BIN/bench-baselines" delete "$CLUSTER_AMQP" "$queue"
    cluster_pub_rps_runs+=("$(publish_figure per_second "publish-3-nodes-$round")")
    cluster_pub_p50_runs+=("$(publish_figure p50_ms "publish-3-nodes-$round")")
    cluster_pub_p99_runs+=("$(publish_figure p99_ms "publish-3-nodes-$round")")
    publish_run "publish-1-node-$round" "$AMQP" "$queue"
    "$BIN/bench-baselines" delete "$AMQP" "$queue"
    single_pub_rps_runs+=("$(publish_figure per_second "publish-1-node-$round")")
    single_pub_p50_runs+=("$(publish_figure p50_ms "publish-1-node-$round")")
    single_pub_p99_runs+=("$(publish_figure p99_ms "publish-1-node-$round")")
done
replication_ratios="$(ratios_by_round cluster_pub_rps_runs single_pub_rps_runs)"
{
    echo "confirmed publishes/s, 3 nodes, by round: $(rounds_of "${cluster_pub_rps_runs[@]}")"
    echo "confirmed publishes/s, 1 node, by round: $(rounds_of "${single_pub_rps_runs[@]}")"
    echo "confirmed publishes, 3 nodes / 1 node by round: $replication_ratios"
    echo "the cluster's queue: $cluster_queue; publisher on $(sed -nE 's/.* node=([^ ]+).*/\1/p' "$OUT/publish-3-nodes-1.out")"
} >>"$OUT/rounds.txt"
cluster_pub_rps="$(median "${cluster_pub_rps_runs[@]}")" single_pub_rps="$(median "${single_pub_rps_runs[@]}")"
cluster_pub_p50="$(median "${cluster_pub_p50_runs[@]}")" cluster_pub_p99="$(median "${cluster_pub_p99_runs[@]}")"
single_pub_p50="$(median "${single_pub_p50_runs[@]}")" single_pub_p99="$(median "${single_pub_p99_runs[@]}")"

log "6. memory per client connection: the gateway vs nginx at 1,024 and $MANY_CONNECTIONS connections"
declare -A CONN_FIGURES
declare -A IDLE_FIGURES
for connections in 1024 "$MANY_CONNECTIONS"; do
    for proxy in gateway cached-gateway nginx; do
        CONN_FIGURES[$proxy-$connections]="$(connection_memory "$proxy" "$connections")"
    done
    for proxy in gateway nginx; do
        IDLE_FIGURES[$proxy-$connections]="$(idle_connection_memory "$proxy" "$connections")"
    done
done
# conn_figure PROXY CONNECTIONS N: the Nth figure of connection_memory's line.
conn_figure() { awk -v n="$3" '{ print $n }' <<<"${CONN_FIGURES[$1-$2]}"; }
conn_mb() { awk -v k="$(conn_figure "$1" "$2" 5)" 'BEGIN { printf "%.1f", k / 1024 }'; }
inventory_mb() { awk -v k="$(conn_figure "$1" "$2" 8)" 'BEGIN { printf "%.1f", k / 1024 }'; }
conn_row() { # conn_row CONNECTIONS: the table rows of one connection count
    local c="$1"
    echo "| memory per client connection at $c connections, KiB (peak − idle RSS; requests/s, p99 ms; inventory's connections at most, its RSS after) | gateway $(conn_figure gateway "$c" 6) ($(conn_figure gateway "$c" 1)/s, p99 $(conn_figure gateway "$c" 2), inventory $(conn_figure gateway "$c" 7), $(inventory_mb gateway "$c") MB) | nginx $(conn_figure nginx "$c" 6) ($(conn_figure nginx "$c" 1)/s, p99 $(conn_figure nginx "$c" 2), inventory $(conn_figure nginx "$c" 7), $(inventory_mb nginx "$c") MB) | $(ratio "$(conn_figure gateway "$c" 6)" "$(conn_figure nginx "$c" 6)") |"
    echo "| (the same, the gateway as deployed: its 16 MB catalogue cache answers the reads) | gateway $(conn_figure cached-gateway "$c" 6) ($(conn_figure cached-gateway "$c" 1)/s, p99 $(conn_figure cached-gateway "$c" 2), inventory $(conn_figure cached-gateway "$c" 7)) | nginx $(conn_figure nginx "$c" 6) | $(ratio "$(conn_figure cached-gateway "$c" 6)" "$(conn_figure nginx "$c" 6)") |"
    echo "| memory per idle keep-alive connection at $c connections, KiB (RSS holding them − idle RSS; connections held) | gateway $(idle_figure gateway "$c" 1) ($(idle_figure gateway "$c" 2)) | nginx $(idle_figure nginx "$c" 1) ($(idle_figure nginx "$c" 2)) | $(ratio "$(idle_figure gateway "$c" 1)" "$(idle_figure nginx "$c" 1)") |"
}
idle_figure() { awk -v n="$3" '{ print $n }' <<<"${IDLE_FIGURES[$1-$2]}"; }

# cpu_row LABEL TITLE: a table row of the median CPU per request of each group over the rounds.
cpu_row() {
    local label="$1" group row="| $2 |"
    for group in gateway bare_proxy nginx inventory postgresql rabbitmq billing load_generator machine; do
        row+=" $(cpu_median "$label" "$group") |"
    done
    echo "$row"
}
# shellcheck disable=SC2086 # *_ratios hold one ratio per word
{
    echo "# Benchmark results"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB;" \
        "release build; wrk -t2 -c$CONNECTIONS -d$DURATION on loopback; rate limit off;" \
        "scenarios 1, 2 and 4: $ROUNDS alternating rounds, medians of the rates and of the rounds' ratios."
    echo
    echo "| scenario | ours | limit | ratio |"
    echo "|---|---|---|---|"
    echo "| GET /api/movies (20 movies), requests/s | gateway $gw_rps | inventory direct $inv_rps | $(median $get_ratios) |"
    echo "| GET /api/movies p50 / p99 latency, ms | $gw_p50 / $gw_p99 | $inv_p50 / $inv_p99 | |"
    echo "| (the same through a bare actix-web + reqwest proxy: one hop, no gateway logic) | gateway $gw_rps | bare proxy $bare_rps ($bare_p50 / $bare_p99 ms) | $(median $bare_ratios) |"
    echo "| (the same with the gateway on a core of its own, inventory and PostgreSQL on the other; p99 in ms) | gateway ${own_gw_rps:--} (p99 ${own_gw_p99:--}) | inventory direct ${own_inv_rps:--} (p99 ${own_inv_p99:--}) | $(median $own_core_ratios) |"
    echo "| GET /api/movies from the gateway's cache (hits), requests/s; p99 ms | gateway $hit_rps (p99 $hit_p99) | inventory direct $hit_inv_rps (p99 $hit_inv_p99) | $(median $hit_ratios) |"
    echo "| GET /api/movies through the gateway without its cache vs nginx (proxy_pass, upstream keep-alive), requests/s; p99 ms | gateway $miss_rps (p99 $miss_p99) | nginx $nginx_rps (p99 $nginx_p99) | $(median $miss_ratios) (p99 $(median $miss_p99_ratios)) |"
    echo "| POST /api/billing (confirmed), orders/s | $post_rps | raw lapin publisher $raw_pub_rps | $(median $post_ratios) |"
    echo "| POST /api/billing p50 / p99 latency, ms | $post_p50 / $post_p99 | $raw_pub_p50 / $raw_pub_p99 | |"
    echo "| drain of 10,000 orders, orders/s (first commit to last) | billing $drain_rps | raw inserts, 200/commit $raw_batch_rps | $(ratio "$drain_rps" "$raw_batch_rps") |"
    echo "| (the same drain from process start to last row, $drain_ms ms) | billing $drain_wall_rps | | |"
    echo "| (the broker alone: consume, prefetch 500, ack per 200) | | raw consumer $raw_consume_rps | $(ratio "$drain_rps" "$raw_consume_rps") |"
    echo "| drain of $LARGE_BACKLOG orders, orders/s (first commit to last; $large_drain_ms ms from process start) | billing $large_drain_rps | raw consumer $large_raw_consume_rps | $(ratio "$large_drain_rps" "$large_raw_consume_rps") |"
    echo "| (one row per commit, for scale) | | raw inserts, 1/commit $raw_single_rps | |"
    echo "| confirmed publishes/s into a quorum queue, no consumer (the price of replication; the three nodes share this machine) | 3 nodes $cluster_pub_rps | 1 node $single_pub_rps | $(median $replication_ratios) |"
    echo "| confirmed publish p50 / p99 latency, ms | 3 nodes $cluster_pub_p50 / $cluster_pub_p99 | 1 node $single_pub_p50 / $single_pub_p99 | |"
    conn_row 1024
    conn_row "$MANY_CONNECTIONS"
    echo "| non-2xx answers during the runs | GET $gw_bad, POST $post_bad, at many connections $(conn_figure gateway 1024 3) + $(conn_figure gateway "$MANY_CONNECTIONS" 3) | inventory $inv_bad, bare proxy $bare_bad, own-core runs $own_bad, nginx $(conn_figure nginx 1024 3) + $(conn_figure nginx "$MANY_CONNECTIONS" 3) | |"
    echo "| (peak RSS at 1,024 / $MANY_CONNECTIONS connections, MB) | gateway $(conn_mb gateway 1024) / $(conn_mb gateway "$MANY_CONNECTIONS"), with its cache $(conn_mb cached-gateway 1024) / $(conn_mb cached-gateway "$MANY_CONNECTIONS") | nginx $(conn_mb nginx 1024) / $(conn_mb nginx "$MANY_CONNECTIONS") | |"
    echo
    echo "| service | start to ready, ms | RSS idle, MB | peak RSS under load, MB |"
    echo "|---|---|---|---|"
    echo "| api-gateway | $ready_gateway | ${IDLE[api-gateway]} | ${LOADED[api-gateway]} |"
    echo "| inventory-app | $ready_inventory | ${IDLE[inventory-app]} | ${LOADED[inventory-app]} |"
    echo "| billing-app | $ready_billing | ${IDLE[billing-app]} | ${LOADED[billing-app]} |"
    echo
    echo "CPU time per request or message, µs (user + system, median of the rounds; \"machine\" is"
    echo "every process and the kernel together; \"RabbitMQ\" every broker node on it, the cluster's too):"
    echo
    echo "| run | gateway | bare proxy | nginx | inventory | PostgreSQL | RabbitMQ | billing | load generator | machine |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    cpu_row gateway-get "GET via the gateway"
    cpu_row bare-proxy-get "GET via the bare proxy"
    cpu_row inventory-get "GET straight to inventory"
    cpu_row uncached-gateway-get "GET via the gateway, cache off (beside nginx)"
    cpu_row nginx-get "GET via nginx"
    cpu_row gateway-post "POST /api/billing"
    cpu_row raw-publisher "raw publisher"
    cpu_row publish-3-nodes "confirmed publish, 3 nodes"
    cpu_row publish-1-node "confirmed publish, 1 node"
    cpu_row drain-10000 "drain of 10,000 orders (billing, from its start)"
    cpu_row raw-consume-10000 "raw consumer, 10,000"
    cpu_row "drain-$LARGE_BACKLOG" "drain of $LARGE_BACKLOG orders (billing, from its start)"
    cpu_row "raw-consume-$LARGE_BACKLOG" "raw consumer, $LARGE_BACKLOG"
    echo
    echo '```'
    cat "$OUT/rounds.txt"
    echo '```'
} | tee "$OUT/results.md"

# A missing or zero figure means a scenario did not run as intended; answers other than 2xx
# mean the platform failed under load. Either fails the run (after the table, to read why).
require_figures() {
    local figure
    for figure in "$@"; do
        if ! [[ "${!figure}" =~ ^[0-9]+$ ]] || ((${!figure} == 0)); then
            die "scenario figure $figure is missing (${!figure:-empty})"
        fi
    done
}
require_figures gw_rps bare_rps inv_rps hit_rps hit_inv_rps miss_rps nginx_rps hits post_rps raw_pub_rps drain_rps raw_batch_rps raw_consume_rps large_drain_rps large_raw_consume_rps raw_single_rps \
    cluster_pub_rps single_pub_rps
(($(nproc) < 2)) || require_figures own_gw_rps own_inv_rps
for label in gateway-get bare-proxy-get inventory-get uncached-gateway-get nginx-get gateway-post raw-publisher publish-3-nodes publish-1-node \
    drain-10000 raw-consume-10000 "drain-$LARGE_BACKLOG" "raw-consume-$LARGE_BACKLOG"; do
    cpu_recorded "$label" || die "no CPU accounting for $label"
done
[ "$(grep -o '@' <<<"${cluster_queue#*members}" | wc -l)" = 3 ] ||
    die "the cluster's queue was not on the three nodes (${cluster_queue:-not found})"
((gw_bad + bare_bad + inv_bad + own_bad + post_bad + cache_bad == 0)) || die "answers other than 2xx during the runs"
for key in "${!CONN_FIGURES[@]}"; do
    read -r rps _ bad _ <<<"${CONN_FIGURES[$key]}"
    [[ $rps =~ ^[0-9]+$ ]] && ((rps > 0)) || die "scenario 6 ($key) did not run: ${CONN_FIGURES[$key]}"
    ((bad == 0)) || die "failures in scenario 6 ($key): $OUT/${key%-*}-c${key##*-}-1.wrk"
done
for key in "${!IDLE_FIGURES[@]}"; do
    read -r _ held <<<"${IDLE_FIGURES[$key]}"
    [ "$held" = "${key##*-}" ] || die "scenario 6 ($key): only ${held:-no} idle connections held"
done
