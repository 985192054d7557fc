# shellcheck shell=bash
# The one vocabulary of every script, on the developer or CI machine and inside the VMs alike:
# messages, giving up, Debian packages, waiting for something to happen, and the PostgreSQL roles
# and databases and RabbitMQ users the platform needs. Source it; it defines functions only.
#   scripts/lib/local-platform.sh  adds what runs the platform on this machine (dev-up, test, ...)
#   scripts/vm/provision.sh        adds what provisions a VM (setup_*.sh)
# Inside a VM the repository is the synced folder /vagrant; the paths below follow this file.

# shellcheck disable=SC2034 # for the scripts that source this
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# log MESSAGE: progress, bold on a terminal. It goes to LOG_FD, stderr here, so that it never mixes
# with what a function prints for its caller; each line starts with LOG_PREFIX. (scripts/vm/
# provision.sh changes both.)
LOG_FD=2
LOG_PREFIX="==>"
log() {
    if [ -t "$LOG_FD" ]; then
        printf '\033[1m%s %s\033[0m\n' "$LOG_PREFIX" "$*" >&"$LOG_FD"
    else
        printf '%s %s\n' "$LOG_PREFIX" "$*" >&"$LOG_FD"
    fi
}
# die MESSAGE: says what went wrong, on stderr, and ends the script.
die() {
    printf '%s error: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PACKAGE...: installs the Debian/Ubuntu packages that are missing. The package
# index is refreshed first, only if something is missing; a refresh that fails (no network, the
# packages pre-fetched into the apt cache, as in the deployment test) is not fatal: the install
# says whether the packages are there.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        log "apt-get update failed; installing from the package lists and cache already here"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# without_service_starts COMMAND...: runs COMMAND (package installs) so that no package starts
# its daemon on this machine (it would run outside anything this project manages: nginx on port
# 80, libvirtd outside the Vagrant lab's namespace): a policy-rc.d says no meanwhile, removed
# however COMMAND ends (left behind, it would stop every later package's service from starting).
# One already there is left as it is.
without_service_starts() {
    local policy=/usr/sbin/policy-rc.d
    if [ -e "$policy" ]; then "$@"; return; fi
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >"$1" && chmod +x "$1"' policy "$policy"
    (
        trap 'as_root rm -f "$policy"' EXIT
        trap 'exit 130' INT TERM
        "$@"
    )
}

# wait_until [--every STEP] SECONDS WHAT COMMAND...: runs COMMAND (its output discarded) every
# STEP seconds (0.5 by default) until it succeeds. After SECONDS (whole) without success, prints
# "timed out after SECONDS s waiting for WHAT" on stderr and returns 1: whether that ends the
# script (`|| die ...`), fails a check or is only reported is the caller's choice.
wait_until() {
    local step=0.5
    if [ "$1" = --every ]; then
        step="$2"
        shift 2
    fi
    (($# >= 3)) || die "wait_until: usage: wait_until [--every STEP] SECONDS WHAT COMMAND..."
    [[ $1 =~ ^[0-9]+$ ]] || die "wait_until: SECONDS must be a whole number, not '$1'"
    local seconds="$1" what="$2" deadline
    shift 2
    # Microseconds (whatever the locale's decimal separator).
    deadline=$((${EPOCHREALTIME//[!0-9]/} + seconds * 1000000))
    until "$@" >/dev/null 2>&1; do
        if ((${EPOCHREALTIME//[!0-9]/} >= deadline)); then
            printf 'timed out after %s s waiting for %s\n' "$seconds" "$what" >&2
            return 1
        fi
        sleep "$step"
    done
}

# Conditions to wait for. http_ok URL: the URL answers 2xx within 2 seconds.
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }
# process_gone PID: no such process any more.
process_gone() { ! kill -0 "$1" 2>/dev/null; }

# pg_psql ARGS...: psql as the postgres superuser, unaligned, stopping at the first error.
pg_psql() { as_root runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -qAt "$@"; }

# pg_ensure_role ROLE PASSWORD [ATTRIBUTES]: a login role with this password (created, or its
# password and ATTRIBUTES such as CREATEDB set again).
pg_ensure_role() {
    local role="$1" password="$2" attributes="${3:-}"
    pg_psql -v role="$role" -v password="$password" <<SQL >/dev/null
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L $attributes', :'role', :'password') \gexec
SQL
}

# pg_ensure_database DATABASE OWNER: created if missing (an existing one is left as it is).
pg_ensure_database() {
    local database="$1" owner="$2"
    pg_psql -v db="$database" -v owner="$owner" <<'SQL' >/dev/null
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# rmq_ensure_user USER PASSWORD VHOST [CONFIGURE WRITE READ]: the vhost, and a user with this
# password and these permissions on it (regular expressions of resource names; default: every
# permission), created, or its password and permissions set again.
rmq_ensure_user() {
    local user="$1" password="$2" vhost="$3" configure="${4:-.*}" write="${5:-.*}" read="${6:-.*}"
    as_root rabbitmqctl -q add_vhost "$vhost" >/dev/null 2>&1 || true
    as_root rabbitmqctl -q add_user "$user" "$password" >/dev/null 2>&1 ||
        as_root rabbitmqctl -q change_password "$user" "$password" >/dev/null
    as_root rabbitmqctl -q set_permissions -p "$vhost" "$user" "$configure" "$write" "$read" >/dev/null
}

# The broker user inventory-app publishes the catalogue's change events as: it may declare and
# write the events' exchange, nothing else (no queue, no order).
CATALOGUE_AMQP_USER=movie_catalogue
rmq_ensure_catalogue_user() { # rmq_ensure_catalogue_user PASSWORD VHOST
    rmq_ensure_user "$CATALOGUE_AMQP_USER" "$1" "$2" '^catalogue\.events$' '^catalogue\.events$' '^$'
}

# rmq_retire_classic_dead_letter_queue VHOST: the dead-letter queue (billing_queue.dead-letter)
# is a quorum queue now; one left from an earlier version as a classic queue makes every
# declaration fail. Deleted if empty; if it holds messages, nothing is touched and this fails
# with what to do (they are poison orders an operator must look at first).
rmq_retire_classic_dead_letter_queue() {
    local vhost="$1" queue=billing_queue.dead-letter type messages
    read -r type messages < <(as_root rabbitmqctl -q list_queues -p "$vhost" name type messages 2>/dev/null |
        awk -v q="$queue" '$1 == q { print $2, $3 }') || true
    [ "${type:-}" = classic ] || return 0
    [ "${messages:-0}" = 0 ] ||
        die "$queue in vhost $vhost is a classic queue from an earlier version holding $messages messages: move them elsewhere (e.g. shovel them to a new queue), delete it, and provision again"
    log "deleting the empty classic $queue (it is a quorum queue now)"
    as_root rabbitmqctl -q delete_queue -p "$vhost" "$queue" --if-empty >/dev/null
}
