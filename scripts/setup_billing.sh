#!/usr/bin/env bash
# Provisions the billing VM: PostgreSQL (local only), RabbitMQ with a dedicated user and vhost
# (guest stays local-only), the billing service under systemd, and a firewall that lets only the
# gateway reach RabbitMQ and billing's HTTP listener. Idempotent. Run as root by Vagrant.
set -euo pipefail
. "${MOVIE_REPO:-/vagrant}/scripts/vm/provision.sh"
require_secret BILLING_DB_PASSWORD
require_secret AMQP_PASSWORD

ensure_packages postgresql rabbitmq-server curl ca-certificates openssl
# The service works as "billing", which may read and add orders but never change or delete
# one; the schema belongs to "billing_owner", used only for migrations.
local_postgres billing "$BILLING_DB_PASSWORD" "SELECT, INSERT"

systemctl enable --quiet --now rabbitmq-server
rabbitmqctl -q await_startup --timeout 120 >/dev/null
rmq_ensure_user movie_platform "$AMQP_PASSWORD" movie

system_user billing
install_binary billing-app
write_env billing <<ENV
BILLING_HTTP_ADDR=$BILLING_IP:8082
DATABASE_URL=postgres://billing:$BILLING_DB_PASSWORD@127.0.0.1:5432/billing
DATABASE_MIGRATION_URL=postgres://billing_owner:$DB_OWNER_PASSWORD@127.0.0.1:5432/billing
AMQP_URL=amqp://movie_platform:$AMQP_PASSWORD@127.0.0.1:5672/movie
RUST_LOG=info
ENV
install_unit billing
firewall \
    "ip saddr $GATEWAY_IP tcp dport 5672 accept comment \"RabbitMQ: the gateway only\"" \
    "ip saddr $GATEWAY_IP tcp dport 8082 accept comment \"billing order status: the gateway only\""
start_unit billing
wait_ready billing "http://$BILLING_IP:8082/ready" 120
