#!/usr/bin/env bash
# Provisions the inventory VM: PostgreSQL (local only), the inventory service under systemd, and a
# firewall that lets only the gateway reach the service. Idempotent. Run as root by Vagrant.
set -euo pipefail
. "${MOVIE_REPO:-/vagrant}/scripts/vm/common.sh"
require_secret INVENTORY_DB_PASSWORD

install_packages postgresql curl ca-certificates
local_postgres inventory "$INVENTORY_DB_PASSWORD"

system_user inventory
install_binary inventory-app
write_env inventory <<ENV
INVENTORY_BIND_ADDR=$INVENTORY_IP:8081
DATABASE_URL=postgres://inventory:$INVENTORY_DB_PASSWORD@127.0.0.1:5432/inventory
RUST_LOG=info
ENV
install_unit inventory
firewall "ip saddr $GATEWAY_IP tcp dport 8081 accept comment \"inventory: the gateway only\""
start_service inventory
wait_ready inventory "http://$INVENTORY_IP:8081/ready" 120
