# shellcheck shell=bash
# The platform on this machine (dev-up, dev-down, test, conformance, bench, service-ctl):
# PostgreSQL and RabbitMQ installed from the distribution's packages and started with or without
# systemd as PID 1, the local, git-ignored secrets, and the service binaries run in the
# background on loopback. Source it; it defines functions only (and sources common.sh).

# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LOCAL_DIR="$REPO_ROOT/.local"
SECRETS_FILE="$LOCAL_DIR/secrets.env"

have_systemd() { [ -d /run/systemd/system ]; }


start_postgres() {
    if have_systemd; then
        as_root systemctl start postgresql
    else
        local version cluster
        read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
        if [ -z "${version:-}" ]; then
            version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
            cluster=main
            log "creating PostgreSQL cluster $version/$cluster"
            as_root pg_createcluster "$version" "$cluster" >/dev/null
        fi
        if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
            log "starting PostgreSQL $version/$cluster"
            as_root pg_ctlcluster "$version" "$cluster" start
        fi
    fi
    wait_until 30 "PostgreSQL to accept connections" pg_psql -c 'select 1' || die "PostgreSQL did not come up"
}

# as_rabbitmq_with_open_files COMMAND...: runs COMMAND as the rabbitmq user with as many open
# files as allowed (its hard limit; su and runuser reset the soft one to 1,024). Every test
# declares queues of its own (about three file handles each for a quorum queue): with 1,024, a
# few test runs exhaust the broker's handle budget and it stops answering AMQP handshakes.
as_rabbitmq_with_open_files() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    as_root runuser -u rabbitmq -- sh -c 'cd /var/lib/rabbitmq && ulimit -n "$(ulimit -Hn)" && exec "$@"' sh \
        env HOME=/var/lib/rabbitmq "$@"
}

start_rabbitmq() {
    if have_systemd; then
        as_root systemctl start rabbitmq-server
    elif ! as_root rabbitmqctl -q status >/dev/null 2>&1; then
        log "starting RabbitMQ"
        as_rabbitmq_with_open_files /usr/lib/rabbitmq/bin/rabbitmq-server -detached
    fi
    # await_startup needs a node that has begun booting; a detached node takes a moment to appear.
    wait_until --every 1 120 "RabbitMQ to start" as_root rabbitmqctl -q await_startup --timeout 60 ||
        die "RabbitMQ did not come up (see /var/log/rabbitmq/)"
}

# start_local_servers: everything the platform and its build need from the distribution
# installed, PostgreSQL and RabbitMQ running, and the local secrets loaded.
start_local_servers() {
    ensure_packages postgresql rabbitmq-server curl ca-certificates gcc libc6-dev make pkg-config openssl
    start_postgres
    start_rabbitmq
    ensure_local_secrets
}

# Random passwords for the local databases and broker, made once and kept out of git.
ensure_local_secrets() {
    mkdir -p "$LOCAL_DIR"
    local name
    (
        umask 077
        touch "$SECRETS_FILE"
        for name in INVENTORY_DB_PASSWORD BILLING_DB_PASSWORD AMQP_PASSWORD CATALOGUE_AMQP_PASSWORD \
            TEST_DB_PASSWORD TEST_AMQP_PASSWORD ADMIN_TOKEN; do
            grep -q "^$name=" "$SECRETS_FILE" || printf '%s=%s\n' "$name" "$(openssl rand -hex 24)" >>"$SECRETS_FILE"
        done
    )
    # shellcheck disable=SC1090
    set -a; . "$SECRETS_FILE"; set +a
}

# A fresh, empty vhost (tests start from nothing and leave nothing behind in the dev vhost).
# ensure_python_tools: Chromium and a virtualenv at $VENV with the pinned Python tools
# (schemathesis, Playwright: tests/conformance/requirements.txt), rebuilt when the pins change.
VENV="$LOCAL_DIR/venv"
ensure_python_tools() {
    local requirements="$REPO_ROOT/tests/conformance/requirements.txt"
    ensure_packages python3 python3-venv chromium
    if ! cmp -s "$requirements" "$VENV/requirements.txt" 2>/dev/null; then
        log "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')"
        rm -rf "$VENV"
        /usr/bin/python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$VENV/requirements.txt"
    fi
}

rmq_recreate_vhost() {
    local vhost="$1"
    as_root rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    as_root rabbitmqctl -q add_vhost "$vhost" >/dev/null
}

# wait_for_http URL WHAT: waits until URL answers 2xx; ends the script if it does not in 60 s.
wait_for_http() {
    wait_until 60 "$2 to answer at $1" http_ok "$1" || die "$2 did not answer at $1"
}

# wait_for_log FILE TEXT WHAT: waits until FILE contains TEXT; ends the script if it does not in 60 s.
wait_for_log() {
    wait_until 60 "\"$2\" in $1" grep -q "$2" "$1" || die "$3 did not get ready; see $1"
}

# spawn_service BIN_DIR NAME LOG_DIR RUN_DIR VAR=VALUE... [-- ARGUMENTS...]: runs a binary in
# the background with exactly these variables (and arguments), logging to LOG_DIR/NAME.log, its
# pid in RUN_DIR.
spawn_service() {
    local bin_dir="$1" name="$2" log_dir="$3" run_dir="$4" vars=()
    shift 4
    while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
    [ $# -eq 0 ] || shift
    mkdir -p "$log_dir" "$run_dir"
    # Each start gets a fresh log (the previous one is kept as .1), so readiness checks read
    # this run's lines only.
    [ -f "$log_dir/$name.log" ] && mv -f "$log_dir/$name.log" "$log_dir/$name.log.1"
    env -i PATH="$PATH" RUST_LOG="${RUST_LOG:-info}" "${vars[@]}" \
        nohup "$bin_dir/$name" "$@" >>"$log_dir/$name.log" 2>&1 </dev/null &
    echo $! >"$run_dir/$name.pid"
}

# stop_spawned_services RUN_DIR: SIGTERM to each service spawned there (so each finishes its
# in-flight work), SIGKILL after 30 s.
stop_spawned_services() {
    local run_dir="$1" name pid_file pid
    for name in api-gateway billing-app inventory-app prometheus; do
        pid_file="$run_dir/$name.pid"
        [ -f "$pid_file" ] || continue
        pid="$(cat "$pid_file")"
        # Only signal the process if it still is the service we started.
        if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid"
            if ! wait_until --every 0.2 30 "$name to stop" process_gone "$pid"; then
                log "$name did not stop in 30 s; killing it"
                kill -KILL "$pid"
            fi
        fi
        rm -f "$pid_file"
    done
}
