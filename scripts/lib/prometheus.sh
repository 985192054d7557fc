# shellcheck shell=bash
# Prometheus with the platform's one configuration (config/prometheus.yml, config/alerts.yml):
# the targets files it reads, for the gateway VM's Prometheus (scripts/vm/provision.sh) and the
# local platform's (scripts/dev-up.sh). Source it after common.sh; it defines functions only.

# prometheus_targets MACHINE=ADDRESS...: a targets/JOB.yml file on stdout, each address labelled
# with its machine (no address: an empty list, the job scrapes nothing).
prometheus_targets() {
    local entry
    [ $# -gt 0 ] || { echo '[]'; return; }
    echo '# Written by the movie platform; changes are overwritten.'
    for entry in "$@"; do
        printf -- '- targets: ["%s"]\n  labels: { machine: "%s" }\n' "${entry#*=}" "${entry%%=*}"
    done
}
