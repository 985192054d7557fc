#!/usr/bin/env bash
# Starts the whole platform on this machine: PostgreSQL and RabbitMQ (installed from the
# distribution's packages if missing), the databases and users, then the three services built
# in release mode, on loopback, and Prometheus with the platform's configuration and alert rules
# (config/). Stop the services and Prometheus with scripts/dev-down.sh.
set -euo pipefail
. "$(dirname "$0")/lib/local-platform.sh"
. "$(dirname "$0")/lib/prometheus.sh"
cd "$REPO_ROOT"

RUN_DIR="$LOCAL_DIR/run"
LOG_DIR="$LOCAL_DIR/logs"
GATEWAY_ADDR="${GATEWAY_BIND_ADDR:-127.0.0.1:8080}"
INVENTORY_ADDR="${INVENTORY_BIND_ADDR:-127.0.0.1:8081}"
BILLING_ADDR="${BILLING_HTTP_ADDR:-127.0.0.1:8082}"

start_local_servers

log "creating databases, users and the broker vhost (idempotent)"
pg_ensure_role inventory "$INVENTORY_DB_PASSWORD"
pg_ensure_database inventory inventory
pg_ensure_role billing "$BILLING_DB_PASSWORD"
pg_ensure_database billing billing
rmq_ensure_user movie_platform "$AMQP_PASSWORD" movie
rmq_ensure_catalogue_user "$CATALOGUE_AMQP_PASSWORD" movie
rmq_retire_classic_dead_letter_queue movie
# The broker's metrics for Prometheus (port 15692); Debian's Prometheus, not started as a
# system service (it would scrape nothing of ours): run below with the platform's configuration.
as_root rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null
without_service_starts ensure_packages prometheus

log "building the services (release)"
cargo build --release --locked --bins
BIN_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release"

"$REPO_ROOT/scripts/dev-down.sh" --quiet

start() { spawn_service "$BIN_DIR" "$1" "$LOG_DIR" "$RUN_DIR" "${@:2}"; }

AMQP_URL="amqp://movie_platform:${AMQP_PASSWORD}@127.0.0.1:5672/movie"
start inventory-app \
    INVENTORY_BIND_ADDR="$INVENTORY_ADDR" \
    DATABASE_URL="postgres://inventory:${INVENTORY_DB_PASSWORD}@127.0.0.1:5432/inventory" \
    AMQP_URL="amqp://$CATALOGUE_AMQP_USER:${CATALOGUE_AMQP_PASSWORD}@127.0.0.1:5672/movie" \
    ADMIN_TOKEN="$ADMIN_TOKEN"
start billing-app \
    BILLING_HTTP_ADDR="$BILLING_ADDR" \
    DATABASE_URL="postgres://billing:${BILLING_DB_PASSWORD}@127.0.0.1:5432/billing" \
    AMQP_URL="$AMQP_URL"
start api-gateway \
    GATEWAY_BIND_ADDR="$GATEWAY_ADDR" \
    INVENTORY_URL="http://$INVENTORY_ADDR" \
    BILLING_URL="http://$BILLING_ADDR" \
    AMQP_URL="$AMQP_URL" \
    ADMIN_TOKEN="$ADMIN_TOKEN"

wait_for_http "http://$INVENTORY_ADDR/health" inventory-app
wait_for_http "http://$BILLING_ADDR/ready" billing-app
wait_for_http "http://$GATEWAY_ADDR/ready" api-gateway

# Prometheus: config/prometheus.yml and config/alerts.yml as they are, the local addresses as
# targets (no node or PostgreSQL exporter here: those jobs scrape nothing).
PROMETHEUS_DIR="$LOCAL_DIR/prometheus"
mkdir -p "$PROMETHEUS_DIR/targets"
cp config/prometheus.yml config/alerts.yml "$PROMETHEUS_DIR/"
prometheus_targets "local=$GATEWAY_ADDR" >"$PROMETHEUS_DIR/targets/gateway.yml"
prometheus_targets "local=$INVENTORY_ADDR" >"$PROMETHEUS_DIR/targets/inventory.yml"
prometheus_targets "local=$BILLING_ADDR" >"$PROMETHEUS_DIR/targets/billing.yml"
prometheus_targets "local=127.0.0.1:15692" >"$PROMETHEUS_DIR/targets/rabbitmq.yml"
prometheus_targets >"$PROMETHEUS_DIR/targets/postgres.yml"
prometheus_targets >"$PROMETHEUS_DIR/targets/node.yml"
spawn_service /usr/bin prometheus "$LOG_DIR" "$RUN_DIR" -- \
    --config.file="$PROMETHEUS_DIR/prometheus.yml" --storage.tsdb.path="$PROMETHEUS_DIR/data" \
    --web.listen-address=127.0.0.1:9090
wait_for_http "http://127.0.0.1:9090/-/ready" prometheus

cat <<MSG

The movie platform is up:
  gateway     http://$GATEWAY_ADDR      (the public entry)
  inventory   http://$INVENTORY_ADDR    (behind the gateway)
  billing     http://$BILLING_ADDR      (order status, health; consumes billing_queue on vhost "movie")
  docs        http://$GATEWAY_ADDR/docs/  (Swagger UI)
  prometheus  http://127.0.0.1:9090     (the platform's metrics and alerts)
  logs        ${LOG_DIR#"$REPO_ROOT"/}/{api-gateway,inventory-app,billing-app,prometheus}.log
  stop        scripts/dev-down.sh
  admin token $ADMIN_TOKEN
              (catalogue writes need "Authorization: Bearer <token>"; kept in .local/secrets.env)

Try:
  export ADMIN_TOKEN=$ADMIN_TOKEN
  curl -X POST http://$GATEWAY_ADDR/api/movies -H "Authorization: Bearer \$ADMIN_TOKEN" \\
       -H "Content-Type: application/json" \\
       -d '{"title": "The Matrix", "description": "Sci-Fi Classic"}'
  curl http://$GATEWAY_ADDR/api/movies
  curl -X POST http://$GATEWAY_ADDR/api/billing -H "Content-Type: application/json" \\
       -d '{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}'
MSG
