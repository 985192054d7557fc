#!/usr/bin/env bash
# Provisions the inventory VM: PostgreSQL (local only), a RabbitMQ node joined to billing's
# (cluster shape) and the broker user inventory publishes its change events as, the inventory
# service under systemd, the exporters for the gateway's
# Prometheus, a daily backup of the catalogue, and a firewall that lets only the gateway reach
# the service and the exporters. Idempotent. Run as root by Vagrant.
set -euo pipefail
. "${MOVIE_REPO:-/vagrant}/scripts/vm/provision.sh"
require_secret INVENTORY_DB_PASSWORD
# Writes need the admin token here too, so a firewall mistake does not open the catalogue.
require_secret ADMIN_TOKEN
require_secret CATALOGUE_AMQP_PASSWORD

# Everything this machine installs, in one apt run: each run takes a minute on an emulated VM.
if [ "$BROKER_SHAPE" = cluster ]; then
    ensure_packages postgresql rabbitmq-server chrony nftables curl ca-certificates openssl \
        prometheus-node-exporter prometheus-postgres-exporter
else
    ensure_packages postgresql chrony nftables curl ca-certificates openssl \
        prometheus-node-exporter prometheus-postgres-exporter
fi
time_sync follow
# The service works as "inventory" (reads and writes movies, nothing else); the schema belongs
# to "inventory_owner", used only for migrations.
local_postgres inventory "$INVENTORY_DB_PASSWORD" "SELECT, INSERT, UPDATE, DELETE"
postgres_exporter
database_backups inventory
node_exporter
if [ "$BROKER_SHAPE" = cluster ]; then
    rabbitmq_node
    rabbitmq_join_cluster
    rabbitmq_replicate_here
    rabbitmq_metrics
    rmq_ensure_catalogue_user "$CATALOGUE_AMQP_PASSWORD" movie
fi

system_user inventory
install_binary inventory-app
write_env inventory <<ENV
INVENTORY_BIND_ADDR=$INVENTORY_IP:8081
DATABASE_URL=postgres://inventory:$INVENTORY_DB_PASSWORD@127.0.0.1:5432/inventory
DATABASE_MIGRATION_URL=postgres://inventory_owner:$DB_OWNER_PASSWORD@127.0.0.1:5432/inventory
ADMIN_TOKEN=$ADMIN_TOKEN
AMQP_URL=$(amqp_urls "$CATALOGUE_AMQP_USER" "$CATALOGUE_AMQP_PASSWORD")
RUST_LOG=info
ENV
install_unit inventory
mapfile -t broker_rules < <(broker_firewall_rules)
firewall "${broker_rules[@]}" "ip saddr $GATEWAY_IP tcp dport 8081 accept comment \"inventory: the gateway only\"" \
    "$(monitoring_firewall_rules 9100 9187)"
start_unit inventory
wait_ready inventory "http://$INVENTORY_IP:8081/ready" 120
