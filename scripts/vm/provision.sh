# shellcheck shell=bash
# What the VM provisioning scripts (setup_*.sh) share, on top of scripts/lib/common.sh. Vagrant
# uploads a provisioner script alone to /tmp, so the scripts source this file from the synced
# folder, /vagrant/scripts/vm/provision.sh (MOVIE_REPO overrides /vagrant); the deployment test
# mounts the repository there too. Every helper is idempotent: provisioning twice changes nothing
# the second time.

# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=scripts/lib/prometheus.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/prometheus.sh"
# Vagrant shows what a provisioner writes to stderr in red: progress goes to stdout, each line
# starting with the machine's name.
LOG_FD=1
LOG_PREFIX="[$(hostname)]"

CONFIG_DIR=/etc/movie-platform
# The machines' addresses, for the setup scripts (the Vagrantfile passes them).
# shellcheck disable=SC2034
GATEWAY_IP="${MOVIE_GATEWAY_IP:-192.168.56.10}" \
    INVENTORY_IP="${MOVIE_INVENTORY_IP:-192.168.56.11}" \
    BILLING_IP="${MOVIE_BILLING_IP:-192.168.56.12}"
# Set by a provisioning step that changed something the running service uses.
RESTART_NEEDED=false
# Before the Vagrantfile excluded it, the host's secrets file was synced to every VM, and rsync
# never deletes what it excludes: a VM made then would keep every machine's secrets.
if [ -f "$REPO_ROOT/.vagrant-secrets.env" ]; then rm -f "$REPO_ROOT/.vagrant-secrets.env"; fi

require_secret() {
    local name="$1"
    [ -n "${!name:-}" ] || die "$name is not set (the Vagrantfile passes it from .vagrant-secrets.env)"
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

# track_changes COMMAND...: runs COMMAND's install steps and sets CHANGED to true if they changed
# a file (false if not), leaving RESTART_NEEDED as it was: for what a change restarts other than
# the machine's service. Call it as a statement, never as a condition: in an `if`, bash would run
# the steps without `set -e`, and a failed one would not stop the provisioning.
track_changes() {
    local restart_needed_before="$RESTART_NEEDED"
    RESTART_NEEDED=false
    "$@"
    CHANGED="$RESTART_NEEDED"
    RESTART_NEEDED="$restart_needed_before"
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
# Sets DB_OWNER_PASSWORD (generated once, then read back from the service's env file).
local_postgres() {
    local service="$1" password="$2" privileges="$3"
    DB_OWNER_PASSWORD="$(sed -nE 's|^DATABASE_MIGRATION_URL=postgres://[^:]+:([^@]+)@.*|\1|p' \
        "$CONFIG_DIR/$service.env" 2>/dev/null || true)"
    [ -n "$DB_OWNER_PASSWORD" ] || DB_OWNER_PASSWORD="$(openssl rand -hex 24)"
    systemctl enable --quiet --now postgresql
    # A change here restarts PostgreSQL, not the service.
    track_changes postgres_local_only
    if $CHANGED; then systemctl restart postgresql; fi
    pg_ensure_role "${service}_owner" "$DB_OWNER_PASSWORD"
    pg_ensure_role "$service" "$password"
    pg_ensure_database "$service" "${service}_owner"
    pg_psql -v app="$service" <<'SQL' >/dev/null
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'app', :'app') \gexec
SQL
    pg_psql -d "$service" -v app="$service" -v owner="${service}_owner" <<SQL >/dev/null
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT $privileges ON TABLES TO %I', :'owner', :'app') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT USAGE ON SEQUENCES TO %I', :'owner', :'app') \gexec
SELECT format('GRANT $privileges ON ALL TABLES IN SCHEMA public TO %I', :'app') \gexec
SELECT format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', :'app') \gexec
SQL
}

postgres_local_only() {
    install_content "$(postgres_conf_dir)/movie-platform.conf" 0644 postgres:postgres <<'CONF'
listen_addresses = 'localhost'
CONF
}

system_user() {
    id -u "$1" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

# The service binary: from the host's release build in /vagrant/dist, or built here.
install_binary() {
    local binary="$1" source="$REPO_ROOT/dist/$1"
    if [ ! -x "$source" ]; then
        log "no prebuilt $binary in $REPO_ROOT/dist (not a Linux host?): building it in this VM"
        bash "$REPO_ROOT/scripts/vm/build-in-vm.sh" "$binary"
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

# install_unit SERVICE: the service's unit, and the drop-in every service of the platform shares
# (readiness, restarts, the kept socket, the watchdog, the hardening).
install_unit() {
    # A changed unit needs systemd to read it again, and the service a restart.
    track_changes install_unit_files "$1"
    if $CHANGED; then
        systemctl daemon-reload
        RESTART_NEEDED=true
    fi
}
install_unit_files() {
    install_file "$REPO_ROOT/systemd/$1.service" "/etc/systemd/system/$1.service" 0644 root:root
    install_file "$REPO_ROOT/systemd/movie-platform.conf" \
        "/etc/systemd/system/$1.service.d/movie-platform.conf" 0644 root:root
}

# firewall RULES...: the host firewall, SSH always open, everything else dropped unless listed.
firewall() {
    ensure_packages nftables
    {
        echo '#!/usr/sbin/nft -f'
        echo '# Written by the movie platform provisioning; changes are overwritten.'
        echo 'flush ruleset'
        echo 'table inet movie_platform {'
        echo '    chain input {'
        echo '        type filter hook input priority filter; policy drop;'
        # Loopback first: conntrack did not see connections opened before this ruleset was
        # loaded, and takes their FIN for invalid. Dropped, a killed RabbitMQ node's FIN left
        # epmd holding its name, and the node could not start again until a reboot.
        echo '        iif lo accept'
        echo '        ct state established,related accept'
        echo '        ct state invalid drop'
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

# time_sync serve|follow: chrony keeps this machine's clock. Billing's ("serve") follows Debian's
# NTP pool when it can reach it and serves the other two ("follow") either way, so the platform's
# clocks agree even with no internet (an order's received_at comes from the gateway's clock, its
# processed_at from billing's). Open UDP 123 on billing with time_sync_firewall_rules.
time_sync() {
    ensure_packages chrony
    systemctl enable --quiet chrony
    track_changes chrony_config "$1"
    if $CHANGED; then systemctl restart chrony; else systemctl start chrony; fi
}
chrony_config() {
    if [ "$1" = serve ]; then
        install_content /etc/chrony/conf.d/movie-platform.conf 0644 root:root <<CONF
# Written by the movie platform provisioning: billing serves time to the platform's machines,
# from its own clock when no NTP server answers.
allow $GATEWAY_IP
allow $INVENTORY_IP
local stratum 10
CONF
    else
        install_content /etc/chrony/conf.d/movie-platform.conf 0644 root:root <<CONF
# Written by the movie platform provisioning: billing's clock, always reachable, keeps the
# platform's machines in agreement; 'prefer' so that they follow it even when the pool answers.
server $BILLING_IP iburst prefer
CONF
    fi
}

time_sync_firewall_rules() { # the rule that lets the two other machines ask billing the time
    echo "ip saddr { $GATEWAY_IP, $INVENTORY_IP } udp dport 123 accept comment \"time for the platform's machines\""
}

# start_unit SERVICE: enables and starts the service's unit (restarting it if its binary, unit
# or configuration changed), without waiting: a service whose dependencies live on a machine not
# up yet keeps retrying on its own.
start_unit() {
    local service="$1"
    systemctl enable --quiet "$service"
    if $RESTART_NEEDED && systemctl is-active --quiet "$service"; then
        log "configuration changed: restarting $service"
        systemctl restart --no-block "$service"
    else
        systemctl start --no-block "$service"
    fi
}

# wait_ready SERVICE URL SECONDS: waits until URL answers 2xx; prints one status line.
wait_ready() {
    local service="$1" url="$2" seconds="$3" body
    if wait_until "$seconds" "$service at $url" http_ok "$url"; then
        body="$(curl -fsS --max-time 2 "$url" 2>/dev/null || echo 'no answer')"
        log "$service: $(systemctl is-active "$service"), ready: $body"
        return 0
    fi
    body="$(curl -sS --max-time 2 "$url" 2>/dev/null || echo 'no answer')"
    log "$service: $(systemctl is-active "$service") but not ready after ${seconds}s: $body (see journalctl -u $service)"
    return 1
}

# --- RabbitMQ ------------------------------------------------------------------------------------
# MOVIE_BROKER_SHAPE (the Vagrantfile passes it): "cluster", the default, runs a RabbitMQ node on
# each of the three machines, clustered through billing's node, with the queues replicated on all
# three; "single" runs the only node on billing, for hosts short of memory.
BROKER_SHAPE="${MOVIE_BROKER_SHAPE:-cluster}"
case "$BROKER_SHAPE" in
    cluster | single) ;;
    *) die "MOVIE_BROKER_SHAPE is cluster or single, not '$BROKER_SHAPE'" ;;
esac
# The node the others join, and the only node in the single shape.
BROKER_SEED=billing
declare -A MACHINE_IP=([gateway]="$GATEWAY_IP" [inventory]="$INVENTORY_IP" [billing]="$BILLING_IP")

# amqp_urls USER PASSWORD: AMQP_URL for a service on this machine: this machine's node first,
# then the others (cluster), or billing's node (single).
amqp_urls() {
    local self machine hosts=() urls=()
    self="$(hostname -s)"
    if [ "$BROKER_SHAPE" = single ]; then
        [ "$self" = "$BROKER_SEED" ] && hosts=(127.0.0.1) || hosts=("${MACHINE_IP[$BROKER_SEED]}")
    else
        hosts=(127.0.0.1)
        for machine in gateway inventory billing; do
            [ "$machine" = "$self" ] || hosts+=("${MACHINE_IP[$machine]}")
        done
    fi
    for machine in "${hosts[@]}"; do urls+=("amqp://$1:$2@$machine:5672/movie"); done
    local IFS=,
    echo "${urls[*]}"
}

# broker_firewall_rules: the firewall rules this machine's RabbitMQ needs: AMQP from the other
# machines (each one's services use the broker: orders, change events), and in the cluster
# shape Erlang's port mapper (epmd, 4369) and the inter-node port (25672) from them only.
broker_firewall_rules() {
    local self machine peers=()
    self="$(hostname -s)"
    if [ "$BROKER_SHAPE" = single ]; then
        [ "$self" = "$BROKER_SEED" ] &&
            echo "ip saddr { $GATEWAY_IP, $INVENTORY_IP } tcp dport 5672 accept comment \"AMQP: the gateway and inventory\""
        return 0
    fi
    for machine in gateway inventory billing; do
        [ "$machine" = "$self" ] || peers+=("${MACHINE_IP[$machine]}")
    done
    echo "ip saddr { ${peers[0]}, ${peers[1]} } tcp dport 5672 accept comment \"AMQP: the other two machines' services\""
    echo "ip saddr { ${peers[0]}, ${peers[1]} } tcp dport { 4369, 25672 } accept comment \"RabbitMQ clustering: the other two machines\""
}

# rabbitmq_node: this machine's RabbitMQ node, running: the machines' names in /etc/hosts (node
# names are rabbit@<machine>), the cluster's Erlang cookie (generated on the Vagrant host: a
# node with a package-made cookie could not join), and a configuration for a 1 GiB machine.
# The resume guard leaves the node alone until this provisioning ends (see rabbitmq-resume.sh):
# a vagrant up under emulation saw it kill a node in the middle of joining the cluster.
rabbitmq_node() {
    install -d -m 0755 /run/movie-rabbitmq-resume
    touch /run/movie-rabbitmq-resume/provisioning
    trap 'rm -f /run/movie-rabbitmq-resume/provisioning' EXIT
    track_changes rabbitmq_node_files
    if $CHANGED; then
        log "RabbitMQ configuration changed: restarting its node"
        systemctl enable --quiet rabbitmq-server
        systemctl restart rabbitmq-server
    else
        systemctl enable --quiet rabbitmq-server
        systemctl start rabbitmq-server
    fi
    rabbitmqctl -q await_startup --timeout 120 >/dev/null
    rabbitmq_resume_guard
}

# machines_in_hosts: /etc/hosts with the platform's machines (node names are rabbit@<machine>).
machines_in_hosts() {
    local machine
    sed '/# movie-platform machines: begin/,/# movie-platform machines: end/d' /etc/hosts
    echo "# movie-platform machines: begin (written by the provisioning)"
    for machine in gateway inventory billing; do echo "${MACHINE_IP[$machine]} $machine"; done
    echo "# movie-platform machines: end"
}
rabbitmq_node_files() {
    # (Process substitution, not a pipe: a pipeline would run install_content in a subshell and
    # lose the change it records, and the node would not restart for it.)
    install_content /etc/hosts 0644 root:root < <(machines_in_hosts)
    ensure_packages rabbitmq-server
    # Measured in scripts/deploy-test.sh: a node holding a backlog of about 1,000 orders, with
    # one of its peers down, takes about 120 MiB. Above the watermark RabbitMQ blocks publishers
    # (the gateway answers 503) rather than let the machine run out of memory.
    install_content /etc/rabbitmq/rabbitmq.conf 0644 root:rabbitmq <<'CONF'
# Written by the movie platform provisioning; changes are overwritten.
# A node cut off from the other two stops serving rather than confirm what it cannot replicate
# (what RabbitMQ recommends for three nodes); it resumes once it sees a majority again.
cluster_partition_handling = pause_minority
# How soon a silent peer (powered off, cut off) counts as down: 7.5 to 12.5 s instead of
# Erlang's 45 to 75 s. Until then the cluster's metadata waits for it, and the order queue
# accepted nothing for the whole minute a powered-off billing VM led it (deployment test).
net_ticktime = 10
# A 1 GiB machine, shared with PostgreSQL and a service.
vm_memory_high_watermark.absolute = 320MiB
disk_free_limit.absolute = 1GB
CONF
    if [ "$BROKER_SHAPE" = cluster ]; then
        require_secret RABBITMQ_ERLANG_COOKIE
        install_content /var/lib/rabbitmq/.erlang.cookie 0400 rabbitmq:rabbitmq < <(printf '%s' "$RABBITMQ_ERLANG_COOKIE")
    fi
}

# rabbitmq_resume_guard: a timer that restarts this machine's node if it stays paused after a
# partition has healed (why: scripts/vm/rabbitmq-resume.sh).
rabbitmq_resume_guard() {
    track_changes rabbitmq_resume_guard_files
    if $CHANGED; then systemctl daemon-reload; fi
    systemctl enable --quiet --now movie-rabbitmq-resume.timer
}
rabbitmq_resume_guard_files() {
    install_file "$REPO_ROOT/scripts/vm/rabbitmq-resume.sh" /usr/local/sbin/movie-rabbitmq-resume 0755 root:root
    local unit
    for unit in movie-rabbitmq-resume.service movie-rabbitmq-resume.timer; do
        install_file "$REPO_ROOT/systemd/$unit" "/etc/systemd/system/$unit" 0644 root:root
    done
}

in_cluster_of() { # in_cluster_of NODE: this machine's node knows NODE as a cluster member
    rabbitmqctl -q eval "lists:member('$1', rabbit_mnesia:cluster_nodes(all))." 2>/dev/null | grep -qx true
}

# join_through NODE: this machine's node (just installed, or rebuilt) joins NODE's cluster. A
# rebuilt machine's node has its predecessor's name but not its identity: the cluster must
# forget the predecessor first, or it refuses the newcomer (or takes it for the old node).
join_through() {
    local seed="$1" self
    self="rabbit@$(hostname -s)"
    log "joining the RabbitMQ cluster of $seed"
    rabbitmqctl -q stop_app
    if rabbitmqctl -q -n "$seed" eval "lists:member('$self', rabbit_mnesia:cluster_nodes(all))." | grep -qx true; then
        log "$seed still lists an earlier $self (this machine was rebuilt): forgetting it"
        rabbitmqctl -q -n "$seed" forget_cluster_node "$self"
    fi
    rabbitmqctl -q join_cluster "$seed"
    rabbitmqctl -q start_app
    rabbitmqctl -q await_startup --timeout 120 >/dev/null
}

# rabbitmq_join_cluster: this machine's node joins billing's, once (a node that joined stays
# joined across reboots). Machines boot in any order, so it waits for billing's node. Until it
# has joined, this node knows no platform user: the services on this machine cannot use it and
# fail over to the cluster, so nothing is stored on a node that the join then resets.
rabbitmq_join_cluster() {
    local seed="rabbit@$BROKER_SEED"
    in_cluster_of "$seed" && return 0
    wait_until --every 5 900 "RabbitMQ on $BROKER_SEED to answer" \
        rabbitmqctl -q -n "$seed" await_startup --timeout 5 ||
        die "RabbitMQ on $BROKER_SEED did not answer: provision $BROKER_SEED, then this machine again"
    join_through "$seed"
}

holds_the_platform() { # holds_the_platform NODE: NODE runs and has the platform's vhost
    # Bounded: a peer powered off answers nothing.
    timeout 20 rabbitmqctl -q -n "$1" eval 'lists:member(<<"movie">>, rabbit_vhost:list_names()).' 2>/dev/null |
        grep -qx true
}

# rabbitmq_rejoin_survivors: on billing, whose node starts the cluster: if billing was rebuilt
# (a lost disk) while the other two nodes kept the cluster and its queued orders, its new node
# joins them instead of starting a cluster of its own, which would consume from an empty queue
# while the orders wait on the other two. On a first provisioning the other nodes hold no
# platform vhost yet (it is made here), so nothing is joined.
rabbitmq_rejoin_survivors() {
    local self peer
    self="rabbit@$(hostname -s)"
    rabbitmqctl -q eval "rabbit_mnesia:cluster_nodes(all) =:= ['$self']." 2>/dev/null | grep -qx true || return 0
    for peer in gateway inventory; do
        if holds_the_platform "rabbit@$peer"; then
            join_through "rabbit@$peer"
            return 0
        fi
    done
}

# rabbitmq_replicate_here: every quorum queue of the platform gets a member on this machine's
# node: a queue declared before this node joined has none (once every machine has run this, each
# queue has three).
rabbitmq_replicate_here() {
    rabbitmq-queues -q grow "rabbit@$(hostname -s)" all --vhost-pattern '^movie$' --errors-only >/dev/null
}

# --- Monitoring ----------------------------------------------------------------------------------
# Prometheus runs on the gateway machine and scrapes every machine: the services' /metrics, each
# RabbitMQ node's rabbitmq_prometheus plugin (15692), PostgreSQL through Debian's
# prometheus-postgres-exporter (9187), each machine through prometheus-node-exporter (9100). The
# firewall lets only the gateway machine reach these ports (monitoring_firewall_rules).

# monitoring_firewall_rules PORT...: this machine's exporter ports (and its RabbitMQ node's
# metrics, if it runs one), open to the gateway's Prometheus only.
monitoring_firewall_rules() {
    local ports=("$@")
    if [ "$BROKER_SHAPE" = cluster ] || [ "$(hostname -s)" = "$BROKER_SEED" ]; then ports+=(15692); fi
    local IFS=,
    echo "ip saddr $GATEWAY_IP tcp dport { ${ports[*]} } accept comment \"Prometheus on the gateway machine: metrics\""
}

# forwarded_port_rules PORT...: ports the Vagrant host reaches through a forwarded port. With
# libvirt the forward arrives through the machine's own sshd (loopback, always open); with
# VirtualBox from its NAT gateway, 10.0.2.2, which only the host reaches.
forwarded_port_rules() {
    local IFS=,
    echo "ip saddr 10.0.2.2 tcp dport { $* } accept comment \"the Vagrant host's forwarded ports (VirtualBox NAT)\""
}

node_exporter() {
    systemctl enable --quiet --now prometheus-node-exporter
}

# postgres_exporter: Debian's exporter, connecting over the local socket as the "prometheus" role
# (peer authentication, pg_monitor: statistics only, no data).
postgres_exporter() {
    pg_psql <<'SQL' >/dev/null
SELECT 'CREATE ROLE prometheus LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'prometheus') \gexec
GRANT pg_monitor TO prometheus;
SQL
    track_changes install_content /etc/default/prometheus-postgres-exporter 0644 root:root <<'CONF'
# Written by the movie platform provisioning; changes are overwritten.
DATA_SOURCE_NAME='user=prometheus host=/run/postgresql dbname=postgres'
ARGS=""
CONF
    systemctl enable --quiet prometheus-postgres-exporter
    if $CHANGED; then systemctl restart prometheus-postgres-exporter; else systemctl start prometheus-postgres-exporter; fi
}

# rabbitmq_metrics: this node's rabbitmq_prometheus plugin (enabled on the running node: no
# restart; a no-op once enabled).
rabbitmq_metrics() {
    rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null
}

# prometheus_server: Prometheus with config/prometheus.yml and config/alerts.yml, scraping the
# platform's machines (the broker nodes of this shape); its UI on port 9090, which the
# Vagrantfile forwards to the host's 127.0.0.1:9090.
prometheus_server() {
    # The package's first start scraped with Debian's example configuration: its data would
    # show as extra targets for a while. Dropped before this configuration is first installed.
    if ! grep -q "^# The platform's Prometheus configuration" /etc/prometheus/prometheus.yml 2>/dev/null; then
        systemctl stop prometheus
        find /var/lib/prometheus/metrics2 -mindepth 1 -delete 2>/dev/null || true
    fi
    track_changes prometheus_files
    systemctl enable --quiet prometheus
    if $CHANGED; then systemctl restart prometheus; else systemctl start prometheus; fi
}
prometheus_files() {
    local brokers=()
    if [ "$BROKER_SHAPE" = single ]; then
        brokers=("billing=$BILLING_IP:15692")
    else
        brokers=("gateway=$GATEWAY_IP:15692" "inventory=$INVENTORY_IP:15692" "billing=$BILLING_IP:15692")
    fi
    install_file "$REPO_ROOT/config/prometheus.yml" /etc/prometheus/prometheus.yml 0644 root:root
    install_file "$REPO_ROOT/config/alerts.yml" /etc/prometheus/alerts.yml 0644 root:root
    # (Fed by process substitution, not a pipe: in a pipeline install_content would run in a
    # subshell, and the change it records would be lost.)
    local dir=/etc/prometheus/targets
    install_content $dir/gateway.yml 0644 root:root < <(prometheus_targets "gateway=$GATEWAY_IP:8080")
    install_content $dir/inventory.yml 0644 root:root < <(prometheus_targets "inventory=$INVENTORY_IP:8081")
    install_content $dir/billing.yml 0644 root:root < <(prometheus_targets "billing=$BILLING_IP:8082")
    install_content $dir/rabbitmq.yml 0644 root:root < <(prometheus_targets "${brokers[@]}")
    install_content $dir/postgres.yml 0644 root:root < <(prometheus_targets "inventory=$INVENTORY_IP:9187" "billing=$BILLING_IP:9187")
    install_content $dir/node.yml 0644 root:root < <(prometheus_targets "gateway=$GATEWAY_IP:9100" \
        "inventory=$INVENTORY_IP:9100" "billing=$BILLING_IP:9100")
    install_content /etc/default/prometheus 0644 root:root <<'CONF'
# Written by the movie platform provisioning; changes are overwritten.
# Two weeks of history, about 100 MB for this platform's series.
ARGS="--storage.tsdb.retention.time=15d"
CONF
}

# rabbitmq_management: the RabbitMQ management UI on this node (port 15672, forwarded to the
# host's 127.0.0.1:15672), with a generated administrator, and no "guest" user on the cluster.
rabbitmq_management() {
    local user="$1" password="$2"
    rabbitmq-plugins -q enable rabbitmq_management >/dev/null
    rabbitmqctl -q add_user "$user" "$password" >/dev/null 2>&1 ||
        rabbitmqctl -q change_password "$user" "$password" >/dev/null
    rabbitmqctl -q set_user_tags "$user" administrator >/dev/null
    rabbitmqctl -q set_permissions -p movie "$user" '.*' '.*' '.*' >/dev/null
    rabbitmqctl -q set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
    if rabbitmqctl -q list_users | awk '{ print $1 }' | grep -qx guest; then
        rabbitmqctl -q delete_user guest >/dev/null
    fi
}

# --- Backups -------------------------------------------------------------------------------------

# database_backups DATABASE: a daily pg_dump of DATABASE into /var/backups/movie-platform
# (movie-db-backup@DATABASE.timer), and the restore command (movie-db-restore).
database_backups() {
    track_changes database_backup_files
    if $CHANGED; then systemctl daemon-reload; fi
    install -d -m 0750 -o postgres -g postgres /var/backups/movie-platform
    systemctl enable --quiet --now "movie-db-backup@$1.timer"
}
database_backup_files() {
    install_file "$REPO_ROOT/scripts/vm/db-backup.sh" /usr/local/sbin/movie-db-backup 0755 root:root
    install_file "$REPO_ROOT/scripts/vm/db-restore.sh" /usr/local/sbin/movie-db-restore 0755 root:root
    local unit
    for unit in movie-db-backup@.service movie-db-backup@.timer; do
        install_file "$REPO_ROOT/systemd/$unit" "/etc/systemd/system/$unit" 0644 root:root
    done
}
