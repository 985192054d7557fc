# shellcheck shell=bash
# Helpers shared by the local scripts (dev-up, dev-down, test): installing and starting
# PostgreSQL and RabbitMQ from the distribution's packages, with or without systemd as PID 1,
# and the local, git-ignored secrets. Source it; it defines functions only.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="$REPO_ROOT/.local"
SECRETS_FILE="$LOCAL_DIR/secrets.env"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

have_systemd() { [ -d /run/systemd/system ]; }

# Installs the Debian/Ubuntu packages that are missing (one apt-get update, only if needed).
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Everything the platform and its build need from the distribution.
ensure_platform_packages() {
    ensure_packages postgresql rabbitmq-server curl ca-certificates gcc libc6-dev make pkg-config openssl
}

pg_psql() { as_root runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -qAt "$@"; }

start_postgres() {
    if have_systemd; then
        as_root systemctl start postgresql
    else
        local version cluster
        read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
        if [ -z "${version:-}" ]; then
            version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
            cluster=main
            log "creating PostgreSQL cluster $version/$cluster"
            as_root pg_createcluster "$version" "$cluster" >/dev/null
        fi
        if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
            log "starting PostgreSQL $version/$cluster"
            as_root pg_ctlcluster "$version" "$cluster" start
        fi
    fi
    local i
    for i in $(seq 1 60); do
        pg_psql -c 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "PostgreSQL did not come up"
}

rabbitmq_running() { as_root rabbitmqctl -q status >/dev/null 2>&1; }

start_rabbitmq() {
    if have_systemd; then
        as_root systemctl start rabbitmq-server
    elif ! rabbitmq_running; then
        log "starting RabbitMQ"
        # Debian's wrapper drops to the rabbitmq user itself.
        as_root rabbitmq-server -detached
    fi
    # await_startup needs a node that has begun booting; a detached node takes a moment to appear.
    local i
    for i in $(seq 1 120); do
        as_root rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "RabbitMQ did not come up (see /var/log/rabbitmq/)"
}

# Random passwords for the local databases and broker, made once and kept out of git.
ensure_local_secrets() {
    mkdir -p "$LOCAL_DIR"
    local name
    (
        umask 077
        touch "$SECRETS_FILE"
        for name in INVENTORY_DB_PASSWORD BILLING_DB_PASSWORD AMQP_PASSWORD TEST_DB_PASSWORD TEST_AMQP_PASSWORD ADMIN_TOKEN; do
            grep -q "^$name=" "$SECRETS_FILE" || printf '%s=%s\n' "$name" "$(openssl rand -hex 24)" >>"$SECRETS_FILE"
        done
    )
    # shellcheck disable=SC1090
    set -a; . "$SECRETS_FILE"; set +a
}

# A login role with this password (created or updated), optionally with extra attributes.
pg_ensure_role() {
    local role="$1" password="$2" attributes="${3:-}"
    pg_psql -v role="$role" -v password="$password" <<SQL
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L $attributes', :'role', :'password') \gexec
SQL
}

pg_ensure_database() {
    local database="$1" owner="$2"
    pg_psql -v db="$database" -v owner="$owner" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

rmq_ensure_user() {
    local user="$1" password="$2" vhost="$3"
    as_root rabbitmqctl -q add_vhost "$vhost" 2>/dev/null || true
    as_root rabbitmqctl -q add_user "$user" "$password" 2>/dev/null \
        || as_root rabbitmqctl -q change_password "$user" "$password" >/dev/null
    as_root rabbitmqctl -q set_permissions -p "$vhost" "$user" '.*' '.*' '.*' >/dev/null
}

# A fresh, empty vhost (tests start from nothing and leave nothing behind in the dev vhost).
rmq_recreate_vhost() {
    local vhost="$1"
    as_root rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    as_root rabbitmqctl -q add_vhost "$vhost" >/dev/null
}

# Waits until an HTTP URL answers 2xx.
wait_for_http() {
    local url="$1" what="$2" i
    for i in $(seq 1 120); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.5
    done
    die "$what did not answer at $url"
}

# start_service BIN_DIR NAME LOG_DIR RUN_DIR VAR=VALUE...: runs a service binary in the
# background with exactly these variables, logging to LOG_DIR/NAME.log, its pid in RUN_DIR.
start_service() {
    local bin_dir="$1" name="$2" log_dir="$3" run_dir="$4"
    shift 4
    mkdir -p "$log_dir" "$run_dir"
    # Each start gets a fresh log (the previous one is kept as .1), so readiness checks read
    # this run's lines only.
    [ -f "$log_dir/$name.log" ] && mv -f "$log_dir/$name.log" "$log_dir/$name.log.1"
    env -i PATH="$PATH" RUST_LOG="${RUST_LOG:-info}" "$@" \
        nohup "$bin_dir/$name" >>"$log_dir/$name.log" 2>&1 </dev/null &
    echo $! >"$run_dir/$name.pid"
}

# stop_services RUN_DIR: SIGTERM to each service started there (so each finishes its in-flight
# work), SIGKILL after 30 s.
stop_services() {
    local run_dir="$1" name pid_file pid
    for name in api-gateway billing-app inventory-app; do
        pid_file="$run_dir/$name.pid"
        [ -f "$pid_file" ] || continue
        pid="$(cat "$pid_file")"
        # Only signal the process if it still is the service we started.
        if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 150); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                log "$name did not stop in 30 s; killing it"
                kill -KILL "$pid"
            fi
        fi
        rm -f "$pid_file"
    done
}

# wait_for_log FILE TEXT WHAT: waits until FILE contains TEXT.
wait_for_log() {
    local file="$1" text="$2" what="$3" i
    for i in $(seq 1 120); do
        grep -q "$text" "$file" 2>/dev/null && return 0
        sleep 0.5
    done
    die "$what did not get ready; see $file"
}
