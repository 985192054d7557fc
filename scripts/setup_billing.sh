#!/usr/bin/env bash
# Provisions the billing VM: PostgreSQL (local only), a RabbitMQ node (the one the other machines'
# nodes join, and the only one in the single shape) with the platform's user and vhost (and no
# guest), the billing service under systemd, and a firewall that lets only the gateway
# reach billing's HTTP listener and only the platform's machines reach RabbitMQ, and chrony, the
# clock the other machines follow; the exporters for the gateway's Prometheus, RabbitMQ's
# management UI (forwarded to the host) and a daily backup of the orders. Idempotent. Run as root
# by Vagrant.
set -euo pipefail
. "${MOVIE_REPO:-/vagrant}/scripts/vm/provision.sh"
require_secret BILLING_DB_PASSWORD
require_secret AMQP_PASSWORD
require_secret RABBITMQ_ADMIN_PASSWORD

# Everything this machine installs, in one apt run: each run takes a minute on an emulated VM.
ensure_packages postgresql rabbitmq-server chrony nftables curl ca-certificates openssl \
    prometheus-node-exporter prometheus-postgres-exporter
# The service works as "billing", which may read and add orders but never change or delete
# one; the schema belongs to "billing_owner", used only for migrations.
local_postgres billing "$BILLING_DB_PASSWORD" "SELECT, INSERT"
postgres_exporter
database_backups billing
node_exporter
time_sync serve

rabbitmq_node
[ "$BROKER_SHAPE" = single ] || rabbitmq_rejoin_survivors
rmq_ensure_user movie_platform "$AMQP_PASSWORD" movie
# In the single shape inventory uses this node, and has none to make its user on.
if [ "$BROKER_SHAPE" = single ]; then
    require_secret CATALOGUE_AMQP_PASSWORD
    rmq_ensure_catalogue_user "$CATALOGUE_AMQP_PASSWORD" movie
fi
rmq_retire_classic_dead_letter_queue movie
[ "$BROKER_SHAPE" = single ] || rabbitmq_replicate_here
rabbitmq_metrics
rabbitmq_management movie_admin "$RABBITMQ_ADMIN_PASSWORD"

system_user billing
install_binary billing-app
write_env billing <<ENV
BILLING_HTTP_ADDR=$BILLING_IP:8082
DATABASE_URL=postgres://billing:$BILLING_DB_PASSWORD@127.0.0.1:5432/billing
DATABASE_MIGRATION_URL=postgres://billing_owner:$DB_OWNER_PASSWORD@127.0.0.1:5432/billing
AMQP_URL=$(amqp_urls movie_platform "$AMQP_PASSWORD")
RUST_LOG=info
ENV
install_unit billing
mapfile -t broker_rules < <(broker_firewall_rules)
firewall "${broker_rules[@]}" "$(time_sync_firewall_rules)" \
    "ip saddr $GATEWAY_IP tcp dport 8082 accept comment \"billing order status: the gateway only\"" \
    "$(monitoring_firewall_rules 9100 9187)" "$(forwarded_port_rules 15672)"
start_unit billing
wait_ready billing "http://$BILLING_IP:8082/ready" 120
