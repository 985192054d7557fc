#!/usr/bin/env bash
# Provisions the gateway VM: a RabbitMQ node joined to billing's (cluster shape), the gateway
# service under systemd, open on port 8080, Prometheus (scraping every machine, its UI forwarded
# to the host), and a firewall. Idempotent. Run as root by Vagrant.
# Inventory and billing may come up after this machine: joining the cluster waits for billing's
# node, and the gateway keeps retrying its upstreams on its own.
set -euo pipefail
. "${MOVIE_REPO:-/vagrant}/scripts/vm/provision.sh"
require_secret AMQP_PASSWORD
require_secret ADMIN_TOKEN

# Everything this machine installs, in one apt run: each run takes a minute on an emulated VM.
if [ "$BROKER_SHAPE" = cluster ]; then
    ensure_packages rabbitmq-server chrony nftables curl ca-certificates prometheus prometheus-node-exporter
else
    ensure_packages chrony nftables curl ca-certificates prometheus prometheus-node-exporter
fi
time_sync follow
if [ "$BROKER_SHAPE" = cluster ]; then
    rabbitmq_node
    rabbitmq_join_cluster
    rabbitmq_replicate_here
    rabbitmq_metrics
fi
node_exporter
prometheus_server
system_user gateway
install_binary api-gateway
write_env gateway <<ENV
GATEWAY_BIND_ADDR=0.0.0.0:8080
INVENTORY_URL=http://$INVENTORY_IP:8081
BILLING_URL=http://$BILLING_IP:8082
AMQP_URL=$(amqp_urls movie_platform "$AMQP_PASSWORD")
ADMIN_TOKEN=$ADMIN_TOKEN
RUST_LOG=info
ENV
install_unit gateway
mapfile -t broker_rules < <(broker_firewall_rules)
firewall "${broker_rules[@]}" 'tcp dport 8080 accept comment "the public API"' \
    "$(monitoring_firewall_rules 9100)" "$(forwarded_port_rules 9090)"
start_unit gateway
# Serving at once; ready (broker connected, inventory answering) once those machines are up.
wait_ready gateway "http://127.0.0.1:8080/health" 60
readiness="$(curl -sS --max-time 3 http://127.0.0.1:8080/ready 2>/dev/null || true)"
log "gateway dependencies: ${readiness:-unknown} (services on machines still starting are retried)"
