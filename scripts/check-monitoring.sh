#!/usr/bin/env bash
# Checks the monitoring configuration with Prometheus' own promtool (Debian's prometheus
# package): config/prometheus.yml as installed with targets, the alert rules in
# config/alerts.yml, their unit tests in config/alerts.test.yml, and that every alert has one.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/prometheus.sh"
cd "$REPO_ROOT"

# The package's own Prometheus would start on port 9090 and scrape nothing of ours.
without_service_starts ensure_packages prometheus

installed="$(mktemp -d)"
trap 'rm -rf "$installed"' EXIT
cp config/prometheus.yml config/alerts.yml "$installed/"
mkdir "$installed/targets"
for job in gateway inventory billing rabbitmq postgres node; do
    prometheus_targets "local=127.0.0.1:1" >"$installed/targets/$job.yml"
done
promtool check config "$installed/prometheus.yml"
promtool check rules config/alerts.yml
promtool test rules config/alerts.test.yml

untested="$(comm -23 <(sed -nE 's/^ *- alert: *([A-Za-z]+).*/\1/p' config/alerts.yml | sort -u) \
    <(sed -nE 's/^ *alertname: *([A-Za-z]+).*/\1/p' config/alerts.test.yml | sort -u))"
[ -z "$untested" ] || die "alerts without a unit test in config/alerts.test.yml: ${untested//$'\n'/ }"
# Each alert tested both ways: firing (an expected alert) and silent (`exp_alerts: []`).
one_sided=""
while read -r alert; do
    awk -v a="$alert" '$1 == "alertname:" && $2 == a { getline; if ($0 ~ /exp_alerts: \[\]/) silent = 1; else fires = 1 }
        END { exit !(silent && fires) }' config/alerts.test.yml || one_sided="$one_sided $alert"
done < <(sed -nE 's/^ *- alert: *([A-Za-z]+).*/\1/p' config/alerts.yml)
[ -z "$one_sided" ] || die "alerts not tested both firing and silent:$one_sided"
echo "monitoring: $(grep -c '^ *- alert:' config/alerts.yml) alerts, each tested firing and silent; configuration valid"
