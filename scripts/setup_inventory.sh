#!/usr/bin/env bash
# Provisions the inventory VM: PostgreSQL (local only), the inventory service under systemd, and a
# firewall that lets only the gateway reach the service. Idempotent. Run as root by Vagrant.
set -euo pipefail
. "${MOVIE_REPO:-/vagrant}/scripts/vm/common.sh"
require_secret INVENTORY_DB_PASSWORD

install_packages postgresql curl ca-certificates
# PostgreSQL serves this machine only.
install_content "$(postgres_conf_dir)/movie-platform.conf" 0644 postgres:postgres <<'CONF'
listen_addresses = 'localhost'
CONF
systemctl enable --quiet --now postgresql
if $RESTART_NEEDED; then systemctl restart postgresql; fi
RESTART_NEEDED=false
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -v password="$INVENTORY_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE inventory LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'inventory') \gexec
SELECT format('ALTER ROLE inventory WITH LOGIN PASSWORD %L', :'password') \gexec
SELECT 'CREATE DATABASE inventory OWNER inventory' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'inventory') \gexec
SQL

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
