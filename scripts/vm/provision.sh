# shellcheck shell=bash
# Helpers for the VM provisioning scripts (setup_*.sh). Vagrant uploads a provisioner script alone
# to /tmp, so the scripts source this file from the synced folder: /vagrant/scripts/vm/common.sh.
# Every helper is idempotent: provisioning twice changes nothing the second time.

set -euo pipefail

REPO="${MOVIE_REPO:-/vagrant}"
CONFIG_DIR=/etc/movie-platform
GATEWAY_IP="${MOVIE_GATEWAY_IP:-192.168.56.10}"
INVENTORY_IP="${MOVIE_INVENTORY_IP:-192.168.56.11}"
BILLING_IP="${MOVIE_BILLING_IP:-192.168.56.12}"
# Set by a provisioning step that changed something the running service uses.
RESTART_NEEDED=false

say() { printf '[%s] %s\n' "$(hostname)" "$*"; }
fail() { say "error: $*" >&2; exit 1; }

require_secret() {
    local name="$1"
    [ -n "${!name:-}" ] || fail "$name is not set (the Vagrantfile passes it from .vagrant-secrets.env)"
}

install_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    # A failed index refresh (no network, packages pre-fetched in the apt cache) is not fatal;
    # the install below says whether the packages are there.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# install_file SOURCE DEST MODE OWNER: copies only if different; sets RESTART_NEEDED on change.
install_file() {
    local source="$1" dest="$2" mode="$3" owner="$4"
    if ! cmp -s "$source" "$dest"; then
        install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$source" "$dest"
        RESTART_NEEDED=true
    fi
    chmod "$mode" "$dest"
    chown "$owner" "$dest"
}

# install_content DEST MODE OWNER < content
install_content() {
    local tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    install_file "$tmp" "$1" "$2" "$3"
    rm -f "$tmp"
}

# The running PostgreSQL cluster's conf.d (Debian 12 ships version 15).
postgres_conf_dir() {
    local dir
    dir="$(find /etc/postgresql -mindepth 2 -maxdepth 2 -type d -name main | sort -V | tail -n 1)"
    echo "$dir/conf.d"
}

# local_postgres SERVICE APP_PASSWORD PRIVILEGES: PostgreSQL for this machine only, and two roles
# for the service's database (named after the service):
# - SERVICE_owner owns the database and its schema; the service uses it only to apply its
#   migrations at start (DATABASE_MIGRATION_URL);
# - SERVICE, the role the service works as, may only run PRIVILEGES (e.g. "SELECT, INSERT") on
#   the tables the owner creates, and use their sequences.
# Prints the owner's password (generated once, kept in the service's env file).
local_postgres() {
    local service="$1" password="$2" privileges="$3" owner_password
    owner_password="$(sed -nE 's|^DATABASE_MIGRATION_URL=postgres://[^:]+:([^@]+)@.*|\1|p' \
        "$CONFIG_DIR/$service.env" 2>/dev/null || true)"
    [ -n "$owner_password" ] || owner_password="$(openssl rand -hex 24)"
    install_content "$(postgres_conf_dir)/movie-platform.conf" 0644 postgres:postgres <<'CONF'
listen_addresses = 'localhost'
CONF
    systemctl enable --quiet --now postgresql
    if $RESTART_NEEDED; then systemctl restart postgresql; fi
    RESTART_NEEDED=false
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -v app="$service" -v owner="${service}_owner" \
        -v password="$password" -v owner_password="$owner_password" <<'SQL' >/dev/null
SELECT format('CREATE ROLE %I LOGIN', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'owner', :'owner_password') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'app', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app', :'owner') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'app', :'app') \gexec
SQL
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$service" -v app="$service" -v owner="${service}_owner" <<SQL >/dev/null
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT $privileges ON TABLES TO %I', :'owner', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT USAGE ON SEQUENCES TO %I', :'owner', :'app') \gexec
SELECT format('GRANT $privileges ON ALL TABLES IN SCHEMA public TO %I', :'app') \gexec
SELECT format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', :'app') \gexec
SQL
    echo "$owner_password"
}

system_user() {
    id -u "$1" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

# The service binary: from the host's release build in /vagrant/dist, or built here.
install_binary() {
    local binary="$1" source="$REPO/dist/$1"
    if [ ! -x "$source" ]; then
        say "no prebuilt $binary in $REPO/dist (not a Linux host?): building it in this VM"
        bash "$REPO/scripts/vm/build-in-vm.sh" "$binary"
        source="/opt/movie-platform/build/$binary"
    fi
    install_file "$source" "/usr/local/bin/$binary" 0755 root:root
}

# The service's environment file: readable by root and the service's group only.
write_env() {
    local service="$1"
    install -d -m 0755 "$CONFIG_DIR"
    install_content "$CONFIG_DIR/$service.env" 0640 "root:$service"
}

install_unit() {
    local service="$1"
    local before
    before="$(cat "/etc/systemd/system/$service.service" 2>/dev/null || true)"
    install_file "$REPO/systemd/$service.service" "/etc/systemd/system/$service.service" 0644 root:root
    if [ "$before" != "$(cat "/etc/systemd/system/$service.service")" ]; then
        systemctl daemon-reload
    fi
}

# firewall RULES...: the host firewall, SSH always open, everything else dropped unless listed.
firewall() {
    install_packages nftables
    {
        echo '#!/usr/sbin/nft -f'
        echo '# Written by the movie platform provisioning; changes are overwritten.'
        echo 'flush ruleset'
        echo 'table inet movie_platform {'
        echo '    chain input {'
        echo '        type filter hook input priority filter; policy drop;'
        echo '        ct state established,related accept'
        echo '        ct state invalid drop'
        echo '        iif lo accept'
        echo '        meta l4proto { icmp, ipv6-icmp } accept'
        echo '        udp dport 68 accept comment "DHCP on the NAT interface"'
        echo '        tcp dport 22 accept comment "SSH"'
        local rule
        for rule in "$@"; do echo "        $rule"; done
        echo '    }'
        echo '}'
    } | install_content /etc/nftables.conf 0644 root:root
    systemctl enable --quiet nftables
    nft -f /etc/nftables.conf
}

# Starts the service (restarting it if its binary, unit or configuration changed), without
# waiting: a service whose dependencies live on a machine not up yet keeps retrying on its own.
start_service() {
    local service="$1"
    systemctl enable --quiet "$service"
    if $RESTART_NEEDED && systemctl is-active --quiet "$service"; then
        say "configuration changed: restarting $service"
        systemctl restart --no-block "$service"
    else
        systemctl start --no-block "$service"
    fi
}

# wait_ready SERVICE URL SECONDS: waits until URL answers 200; prints one status line.
wait_ready() {
    local service="$1" url="$2" seconds="$3" i body
    for ((i = 0; i < seconds * 2; i++)); do
        if body="$(curl -fsS --max-time 2 "$url" 2>/dev/null)"; then
            say "$service: $(systemctl is-active "$service"), ready: $body"
            return 0
        fi
        sleep 0.5
    done
    body="$(curl -sS --max-time 2 "$url" 2>/dev/null || echo 'no answer')"
    say "$service: $(systemctl is-active "$service") but not ready after ${seconds}s: $body (see journalctl -u $service)"
    return 1
}
