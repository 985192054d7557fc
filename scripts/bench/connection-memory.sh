# shellcheck shell=bash
# Scenario 6 of scripts/bench.sh: what a concurrent client connection costs in memory, the gateway
# against nginx (Debian's, proxy_pass with upstream keep-alive: what an operator would otherwise put
# in front of inventory), both proxying GET /api/movies to the same inventory. For each connection
# count each proxy starts fresh, so its peak RSS (VmHWM; nginx's master and workers summed) is that
# load's: per connection = (peak - idle) / connections. `gateway` has its catalogue cache off, so
# it makes the hop to inventory for every request as nginx does; `cached-gateway` is the gateway
# as deployed (its default 16 MB cache answers the reads). Also the most connections the proxy
# had open to inventory meanwhile (the gateway bounds them; nginx's keep-alive caches idle ones
# only), and what an idle keep-alive connection costs (`idle_connection_memory`).
# Source it from bench.sh (it uses BIN, OUT, RUN, INVENTORY, ADMIN_TOKEN, DURATION, wrk_run).

NGINX_PROXY=127.0.0.1:28084
FRESH_GATEWAY=127.0.0.1:28085
FRESH_RUN="$RUN/fresh"

# nginx_start CONNECTIONS: nginx in the foreground of its own prefix, its pid in FRESH_RUN.
nginx_start() {
    local prefix="$FRESH_RUN/nginx" files=$((2 * $1 + 1024))
    mkdir -p "$prefix/logs"
    cat >"$prefix/nginx.conf" <<CONF
worker_processes $(nproc);
worker_rlimit_nofile $files;
pid $prefix/nginx.pid;
error_log $OUT/logs/nginx.log warn;
events { worker_connections $files; }
http {
    access_log off;
    keepalive_requests 1000000;
    # Under the prefix, not Debian's /var/lib/nginx (made on nginx's first start, which the
    # install skipped).
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    upstream inventory { server $INVENTORY; keepalive 64; }
    server {
        listen $NGINX_PROXY backlog=4096;
        location / {
            proxy_pass http://inventory;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    nginx -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off;' >>"$OUT/logs/nginx.log" 2>&1 &
    echo $! >"$FRESH_RUN/nginx.pid"
    wait_until --every 0.01 30 "nginx" http_ok "http://$NGINX_PROXY/api/movies" || die "$LOGS_HINT"
}
nginx_stop() {
    [ -f "$FRESH_RUN/nginx.pid" ] || return 0
    kill -QUIT "$(cat "$FRESH_RUN/nginx.pid")" 2>/dev/null || true
    wait_until --every 0.1 30 "nginx to stop" process_gone "$(cat "$FRESH_RUN/nginx.pid")" || true
    rm -f "$FRESH_RUN/nginx.pid"
}
fresh_gateway_start() { # fresh_gateway_start CACHE_MB
    spawn_service "$BIN" api-gateway "$OUT/logs/fresh" "$FRESH_RUN" RUST_LOG=warn \
        GATEWAY_BIND_ADDR="$FRESH_GATEWAY" INVENTORY_URL="http://$INVENTORY" BILLING_URL="http://$BILLING" \
        AMQP_URL="$AMQP" BILLING_QUEUE="$QUEUE" ADMIN_TOKEN="$ADMIN_TOKEN" RATE_LIMIT_PER_SECOND=0 \
        CATALOGUE_CACHE_MB="$1"
    wait_until --every 0.01 60 "the fresh gateway" http_ok "http://$FRESH_GATEWAY/api/movies" || die "$LOGS_HINT"
}
connection_memory_cleanup() {
    # The connection watcher of an interrupted run ends too.
    mkdir -p "$FRESH_RUN" && touch "$FRESH_RUN/inventory-connections.stop"
    nginx_stop
    stop_spawned_services "$FRESH_RUN"
}

# kib FIELD PID...: the sum of a /proc/PID/status field (VmRSS, VmHWM) over the processes, KiB.
kib() {
    local field="$1" pid total=0
    shift
    for pid in "$@"; do
        total=$((total + $(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
proxy_pids() { # proxy_pids gateway|cached-gateway|nginx
    case "$1" in
        gateway | cached-gateway) cat "$FRESH_RUN/api-gateway.pid" ;;
        nginx) echo "$(cat "$FRESH_RUN/nginx.pid") $(pgrep -P "$(cat "$FRESH_RUN/nginx.pid")" | tr '\n' ' ')" ;;
    esac
}
# The most connections from PIDS to inventory open at once, sampled every 0.1 s until FILE.stop
# exists.
watch_inventory_connections() {
    local file="$1" most=0 now pattern
    shift
    pattern="pid=($(tr ' ' '|' <<<"$*")),"
    while [ ! -e "$file.stop" ]; do
        now="$(ss -Htnp state established "( dport = :${INVENTORY##*:} )" | grep -cE "$pattern" || true)"
        ((now <= most)) || most="$now"
        sleep 0.1
    done
    echo "$most" >"$file"
}

# proxy_start PROXY CONNECTIONS: a fresh PROXY; prints the URL to load.
proxy_start() {
    case "$1" in
        gateway) fresh_gateway_start 0 ;;
        cached-gateway) fresh_gateway_start 16 ;;
        nginx) nginx_start "$2" ;;
    esac
    case "$1" in
        nginx) echo "http://$NGINX_PROXY/api/movies" ;;
        *) echo "http://$FRESH_GATEWAY/api/movies" ;;
    esac
}

# idle_connection_memory PROXY CONNECTIONS: one fresh PROXY holding CONNECTIONS idle keep-alive
# connections (each after one answered GET); prints "kib_per_connection held". RSS now, not the
# peak: what the idle connections keep.
idle_connection_memory() {
    local proxy="$1" connections="$2" url idle held holding holder kib_held
    url="$(proxy_start "$proxy" "$connections")"
    url="${url#http://}"
    # shellcheck disable=SC2046 # one pid per word
    idle="$(kib VmRSS $(proxy_pids "$proxy"))"
    holding="$FRESH_RUN/holding"
    rm -f "$holding"
    # Held well within the proxies' idle timeouts (the gateway's 30 s, nginx's 75 s).
    "$BIN/bench-baselines" hold "${url%%/*}" "/${url#*/}" "$connections" 20 >"$holding" 2>&1 &
    holder=$!
    wait_until --every 0.2 60 "$connections connections held" grep -q '^holding' "$holding" ||
        die "the connection holder did not report: $(cat "$holding")"
    sleep 1
    # shellcheck disable=SC2046
    kib_held="$(kib VmRSS $(proxy_pids "$proxy"))"
    held="$(awk '{ print $2 }' "$holding")"
    wait "$holder"
    connection_memory_cleanup
    echo "$(((kib_held - idle) / (held > 0 ? held : 1))) $held"
}

# connection_memory PROXY CONNECTIONS: one fresh PROXY under CONNECTIONS keep-alive connections;
# prints "requests/s p99_ms non_2xx idle_kib peak_kib kib_per_connection inventory_connections
# inventory_rss_kib" (inventory's RSS right after the load: flat whatever the client count, when
# the proxy bounds its connections).
connection_memory() {
    local proxy="$1" connections="$2" url idle peak rps p99 bad watcher inventory_rss watch="$FRESH_RUN/inventory-connections"
    url="$(proxy_start "$proxy" "$connections")"
    # shellcheck disable=SC2046 # one pid per word
    idle="$(kib VmRSS $(proxy_pids "$proxy"))"
    rm -f "$watch" "$watch.stop"
    # shellcheck disable=SC2046
    watch_inventory_connections "$watch" $(proxy_pids "$proxy") &
    watcher=$!
    read -r rps _ p99 bad < <(CONNECTIONS="$connections" wrk_run "$proxy-c$connections-1" --timeout 30s "$url")
    inventory_rss="$(kib VmRSS "$(cat "$RUN/inventory-app.pid")")"
    touch "$watch.stop"
    wait "$watcher"
    # shellcheck disable=SC2046
    peak="$(kib VmHWM $(proxy_pids "$proxy"))"
    connection_memory_cleanup
    echo "$rps $p99 $bad $idle $peak $(((peak - idle) / connections)) $(cat "$watch") $inventory_rss"
}
