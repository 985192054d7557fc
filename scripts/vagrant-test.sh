#!/usr/bin/env bash
# `vagrant up` itself, tested: the project's own, unchanged Vagrantfile run by a real Vagrant with
# vagrant-libvirt, three Debian 12 VMs under QEMU (KVM when it works here, emulation otherwise),
# then checked as a user would: the README's curls through the forwarded port, Swagger UI in
# Chromium, the stop-billing demo, each VM's clock and secrets, a second `vagrant provision`, a
# rebuilt binary arriving with `vagrant provision`, `vagrant reload`, the firewall, `vagrant
# destroy`. libvirt and Vagrant run in a network namespace made for the test (scripts/vagrant/
# lab.sh), so every VM network exists only there; the box is built locally and cached
# (scripts/vagrant/box.sh). Prints "vagrant: N passed, M failed" last and removes what it made.
set -euo pipefail
. "$(dirname "$0")/lib/local-platform.sh"
. "$(dirname "$0")/lib/checks.sh"
. "$(dirname "$0")/vagrant/lab.sh"
LAB_CACHE="${MOVIE_LAB_CACHE:-/var/tmp/movie-lab}"
PROJECT="$LAB_CACHE/project"
# The run tests a snapshot of this checkout (tracked and new files as they are now, not what git
# ignores), and runs from it, this script included: the checkout may change during the hour it
# takes (bash reads a script as it goes) without changing what runs, what the machines get or
# what "unchanged" means to the provisioning checks. Always at the same path, with the files'
# times kept, so cargo rebuilds only what changed since the last run; its .local (the Python
# tools) is kept too.
if [ "$REPO_ROOT" != "$PROJECT" ]; then
    mkdir -p "$LAB_CACHE"
    exec 9>"$LAB_CACHE/lock"
    flock -n 9 || die "another Vagrant test runs (it holds $LAB_CACHE/lock)"
    mkdir -p "$PROJECT"
    find "$PROJECT" -mindepth 1 -maxdepth 1 ! -name .local -exec rm -rf {} +
    cd "$REPO_ROOT"
    git ls-files -z --cached --others --exclude-standard |
        tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$PROJECT"
    exec bash "$PROJECT/scripts/vagrant-test.sh" "$@" # (the lock stays held: fd 9 is inherited)
fi
cd "$PROJECT"
WORK="$(mktemp -d /var/tmp/movie-vagrant.XXXXXX)"
CHECK_LOG="$WORK/check.log"
# This run's machines, apart from any a developer has made with this checkout.
export VAGRANT_DOTFILE_PATH="$WORK/dot-vagrant"
declare -A MACHINE_IP=([gateway]=192.168.56.10 [inventory]=192.168.56.11 [billing]=192.168.56.12)
GATEWAY=http://127.0.0.1:8080
VAGRANT_SECRETS="$PROJECT/.vagrant-secrets.env" # the Vagrantfile makes it

cleanup() {
    if [ -n "${LAB_NS:-}" ]; then
        lab_vagrant destroy -f >/dev/null 2>&1 || true
        lab_stop
    fi
    rm -rf "$WORK" "$PROJECT/.vagrant-secrets.env"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- set-up --------------------------------------------------------------------------------------

# sudo resets PATH, which loses a rustup toolchain: say so now rather than after the installs.
command -v cargo >/dev/null ||
    die "cargo is not on root's PATH (under sudo: sudo env \"PATH=\$PATH\" bash scripts/vagrant-test.sh)"
lab_install
ensure_packages curl openssl
ensure_python_tools
# The Vagrantfile builds dist/ on the host, inside the namespace where crates.io is out of reach.
cargo fetch --locked
log "building the release binaries into dist/"
bash scripts/build-dist.sh >/dev/null
lab_start "$WORK"

vagrant_logged() { # vagrant_logged NAME ARGS...: a vagrant command, its output in $WORK/NAME.log
    local name="$1" started=$SECONDS
    shift
    if lab_vagrant "$@" 2>&1 | while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done >"$WORK/$name.log"; then
        echo "figures: vagrant $* took $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
    else
        tail -n 25 "$WORK/$name.log"
        return 1
    fi
}

ssh_config() { lab_vagrant ssh-config >"$WORK/ssh-config"; }
on() { # on MACHINE SCRIPT: runs a shell script on a VM as root, over SSH as `vagrant ssh` would
    lab_in ssh -F "$WORK/ssh-config" -o LogLevel=ERROR "$1" sudo bash -c "$(printf '%q' "$2")"
}
api() { lab_in curl -sS --max-time 10 "$@"; }
# keep_journals WHY: each VM's journal of this boot (the platform's units, RabbitMQ and its
# guard) and the vagrant logs, kept past the run in /var/tmp/movie-lab/logs/ for a failure's
# diagnosis (the run's work directory goes with it).
keep_journals() {
    local dir machine
    dir="/var/tmp/movie-lab/logs/$(date -u +%Y%m%dT%H%M%S)-$1"
    mkdir -p "$dir"
    cp "$WORK"/*.log "$dir/" 2>/dev/null || true
    for machine in gateway inventory billing; do
        on "$machine" 'systemctl list-units --all --no-pager "movie*" rabbitmq-server gateway inventory billing;
            journalctl -b --no-pager -u rabbitmq-server -u movie-rabbitmq-resume -u gateway -u inventory -u billing' \
            >"$dir/$machine.journal" 2>&1 || true
    done
    echo "logs kept in $dir"
}
# (Matches below use grep >/dev/null, not grep -q: under pipefail, a writer that grep -q stopped
# reading from dies of SIGPIPE and fails the check.)
secret() { sed -n "s/^$1=//p" "$VAGRANT_SECRETS"; }

units_of() { # units_of MACHINE: the platform's daemons on it (nftables is loaded, not run)
    case "$1" in
        gateway) echo "gateway rabbitmq-server chrony prometheus prometheus-node-exporter" ;;
        inventory) echo "inventory postgresql@15-main rabbitmq-server chrony prometheus-node-exporter prometheus-postgres-exporter" ;;
        billing) echo "billing postgresql@15-main rabbitmq-server chrony prometheus-node-exporter prometheus-postgres-exporter" ;;
    esac
}
main_pids() { # the main PIDs of every platform unit on every machine, one line each
    local machine
    for machine in gateway inventory billing; do
        # shellcheck disable=SC2046
        on "$machine" "for unit in $(units_of "$machine"); do echo $machine \$unit \$(systemctl show -p MainPID --value \$unit); done"
    done
}

# --- vagrant up ----------------------------------------------------------------------------------

check "vagrant up: three machines provisioned with no manual step ($MOVIE_LAB_DRIVER)" vagrant_logged up up
ssh_config || die "vagrant ssh-config failed: the machines did not come up (see above)"

units_active_without_restarts() {
    local machine unit state
    for machine in gateway inventory billing; do
        for unit in $(units_of "$machine"); do
            state="$(on "$machine" "echo \$(systemctl show -p ActiveState --value $unit) \$(systemctl show -p NRestarts --value $unit) restarts")"
            echo "$machine $unit: $state"
            [ "$state" = "active 0 restarts" ]
        done
    done
}
after_first_boot() { units_active_without_restarts || { keep_journals first-boot; return 1; }; }
check "every unit active, none restarted by systemd during the parallel first boot" after_first_boot

# The cluster as a user's `vagrant up` leaves it: three nodes, both queues with a member on each.
# Right after the parallel first boot, under emulation, a queue whose members have just joined
# can take a minute or more to answer list_queues ("unresponsive"): the check waits for it.
# Asked of the two quorum queues only: `list_queues` waits on every queue of the vhost, and
# twice in a row, right after the first boot under emulation, it gave up on one for minutes
# ("Some queue(s) are unresponsive") while orders flowed.
queues_members() {
    on billing "for q in billing_queue billing_queue.dead-letter; do
        echo \"== \$q\"; timeout 70 rabbitmq-queues -q quorum_status \"\$q\" --vhost movie --formatter json || exit 1
    done" >"$WORK/queues" 2>&1
}
rabbitmq_cluster_whole() {
    local queue node
    wait_until --every 10 300 "the quorum queues' status" queues_members || {
        cat "$WORK/queues"
        on billing "timeout 70 rabbitmqctl -q list_unresponsive_queues -p movie" || true
        return 1
    }
    # A member on each node: the three are one cluster, and the queues are replicated three times.
    cat "$WORK/queues"
    for queue in billing_queue billing_queue.dead-letter; do
        for node in gateway inventory billing; do
            awk -v q="== $queue" '/^== / { on = ($0 == q) } on' "$WORK/queues" | grep "rabbit@$node" >/dev/null || return 1
        done
    done
}
check "RabbitMQ: three nodes clustered, both queues with a member on each" rabbitmq_cluster_whole

order_billed() { api -f "$GATEWAY/api/billing/$1" | grep '"billed"' >/dev/null; }
readme_curls() {
    local token movie_id order_id
    token="$(secret ADMIN_TOKEN)"
    wait_until 120 "the gateway ready" api -f -o /dev/null "$GATEWAY/ready"
    api -f "$GATEWAY/api/movies" | grep '"movies"' >/dev/null
    movie_id="$(api -f -X POST "$GATEWAY/api/movies" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"title": "The Matrix", "description": "Sci-Fi Classic"}' |
        sed -nE 's/.*"id":([0-9]+).*/\1/p')"
    [ -n "$movie_id" ]
    api -f "$GATEWAY/api/movies?q=matrix&limit=10" | grep '"The Matrix"' >/dev/null
    api -f -X PUT "$GATEWAY/api/movies/$movie_id" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"title": "The Matrix", "description": "Sci-Fi Classic", "release_year": 1999}' | grep '"release_year":1999' >/dev/null
    test "$(api -o /dev/null -w '%{http_code}' -X POST "$GATEWAY/api/movies" -H 'Content-Type: application/json' \
        -d '{"title": "No token"}')" = 401
    order_id="$(api -f -X POST "$GATEWAY/api/billing" -H 'Content-Type: application/json' \
        -d '{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}' | sed -nE 's/.*"order_id":"([^"]+)".*/\1/p')"
    [ -n "$order_id" ]
    wait_until 60 "order $order_id billed" order_billed "$order_id"
}
check "the README's curls through the forwarded port: catalogue CRUD with the admin token, an order billed" readme_curls

swagger_ui() {
    lab_in "$VENV/bin/python" tests/conformance/swagger_ui.py "$GATEWAY" "$WORK/swagger-ui.png"
}
check "Swagger UI at /docs/ in Chromium: every operation listed, Try it out answers 200" swagger_ui

orders_in_billing() { on billing "runuser -u postgres -- psql -qAt -d billing -c \"SELECT count(*) FROM orders WHERE user_id = '$1'\""; }
orders_billed() { test "$(orders_in_billing "$1")" = "$2"; } # orders_billed USER_ID COUNT
stop_billing_demo() {
    local before accepted=0 status
    on billing 'systemctl stop billing'
    before="$(orders_in_billing demo)"
    for _ in $(seq 1 20); do
        status="$(api -o /dev/null -w '%{http_code}' -X POST "$GATEWAY/api/billing" -H 'Content-Type: application/json' \
            -d '{"user_id": "demo", "number_of_items": "2", "total_amount": "45.00"}')"
        [ "$status" = 202 ] && accepted=$((accepted + 1))
    done
    echo "figures: 20 orders while billing was stopped: $accepted answered 202, $(($(orders_in_billing demo) - before)) rows meanwhile"
    [ "$accepted" = 20 ]
    [ "$(orders_in_billing demo)" = "$before" ]
    on billing 'systemctl start billing'
    wait_until 120 "20 new rows" orders_billed demo $((before + 20))
    echo "figures: once billing started: $(($(orders_in_billing demo) - before)) new rows"
}
check "the stop-billing demo: 20 orders answered 202 while billing is stopped, 20 rows once it starts" stop_billing_demo

# The operator's two UIs, through the ports the Vagrantfile forwards to the host's loopback.
prometheus_targets_up() {
    test "$(api -f http://127.0.0.1:9090/api/v1/targets | grep -o '"health":"up"' | wc -l)" = 15
}
operator_uis() {
    wait_until 120 "Prometheus to see its 15 targets up" prometheus_targets_up || {
        api http://127.0.0.1:9090/api/v1/targets | grep -oE '"scrapeUrl":"[^"]+"|"health":"[a-z]+"' | paste - - | grep -v '"up"'
        return 1
    }
    api -f http://127.0.0.1:9090/api/v1/rules | grep '"name":"OrdersNotBilled"' >/dev/null
    api -f -u "movie_admin:$(secret RABBITMQ_ADMIN_PASSWORD)" http://127.0.0.1:15672/api/nodes |
        grep -o '"name":"rabbit@[a-z]*"' | sort -u | tr '\n' ' ' | sed 's/^/figures: management UI sees /'
    echo
    test "$(api -o /dev/null -w '%{http_code}' -u guest:guest http://127.0.0.1:15672/api/overview)" = 401
}
check "the host's 127.0.0.1:9090 (Prometheus: 15 targets up, alert rules) and :15672 (RabbitMQ management, generated admin)" operator_uis

follows_billing() { on "$1" 'chronyc -n sources' | grep "^\^\* *${MACHINE_IP[billing]} " >/dev/null; }
clocks_in_step() {
    local machine sources
    for machine in gateway inventory; do
        wait_until 120 "$machine's chrony following billing" follows_billing "$machine"
        sources="$(on "$machine" 'chronyc -n tracking' | sed -n 's/^System time *: //p')"
        echo "figures: $machine follows billing's clock; $sources"
    done
    # Timestamps from two machines' clocks: the gateway's received_at, billing's processed_at.
    test "$(on billing "runuser -u postgres -- psql -qAt -d billing -c 'SELECT count(*) FROM orders WHERE processed_at < received_at'")" = 0
}
check "clocks: gateway and inventory follow billing's (chrony); no order processed before it was received" clocks_in_step

# Each machine may hold only the secrets its own services use (as the Vagrantfile hands them out).
declare -A FOREIGN_SECRETS=(
    [gateway]="INVENTORY_DB_PASSWORD BILLING_DB_PASSWORD RABBITMQ_ADMIN_PASSWORD CATALOGUE_AMQP_PASSWORD"
    [inventory]="BILLING_DB_PASSWORD AMQP_PASSWORD RABBITMQ_ADMIN_PASSWORD"
    [billing]="INVENTORY_DB_PASSWORD ADMIN_TOKEN CATALOGUE_AMQP_PASSWORD"
)
no_foreign_secrets() {
    local machine name found
    for machine in gateway inventory billing; do
        on "$machine" 'test ! -e /vagrant/.vagrant-secrets.env'
        # The patterns go in on stdin, so they are never written on the machine.
        found="$(for name in ${FOREIGN_SECRETS[$machine]}; do secret "$name"; done |
            lab_in ssh -F "$WORK/ssh-config" -o LogLevel=ERROR "$machine" \
                sudo grep -rlsF -f /dev/stdin /etc /var /home /root /tmp /opt /srv /usr/local /run /vagrant || true)"
        if [ -n "$found" ]; then
            echo "$machine holds another machine's secret in: $found"
            return 1
        fi
        echo "figures: $machine: no trace of ${FOREIGN_SECRETS[$machine]// /, }"
    done
}
check "secrets: no VM holds one it does not use (files searched), none in the synced folder" no_foreign_secrets

firewall_from_machines() {
    local open closed
    reach() { on "$1" "timeout 3 bash -c '</dev/tcp/$2/$3'" 2>/dev/null; }
    for open in "gateway ${MACHINE_IP[inventory]} 8081" "gateway ${MACHINE_IP[billing]} 8082" \
        "gateway ${MACHINE_IP[billing]} 5672" "inventory ${MACHINE_IP[billing]} 5672" \
        "inventory ${MACHINE_IP[billing]} 25672"; do
        # shellcheck disable=SC2086
        reach $open || { echo "blocked, should be open: $open"; return 1; }
    done
    for closed in "inventory ${MACHINE_IP[billing]} 8082" \
        "billing ${MACHINE_IP[inventory]} 8081" "gateway ${MACHINE_IP[billing]} 5432" \
        "gateway ${MACHINE_IP[inventory]} 5432"; do
        # shellcheck disable=SC2086
        refuse reach $closed || { echo "open, should be blocked: $closed"; return 1; }
    done
}
check "firewall between the VMs: service and cluster ports open where used, closed elsewhere" firewall_from_machines

units_security() {
    local machine score
    for machine in gateway inventory billing; do
        score="$(on "$machine" "systemd-analyze security $machine 2>/dev/null | sed -nE 's/.*Overall exposure level for .*: ([0-9.]+).*/\1/p'")"
        echo "figures: $machine.service exposure on its VM: ${score:-none}"
        awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }'
    done
}
check "systemd-analyze security rates each unit 2.5 or lower on its VM" units_security

# --- vagrant provision, twice --------------------------------------------------------------------

synced_dist() { on gateway 'stat -c "%n %i %Y" /vagrant/dist/*'; } # rsync replaces a file it sends
provision_changes_nothing() {
    local before after dist_before
    before="$(main_pids)"
    dist_before="$(synced_dist)"
    vagrant_logged provision-again provision
    after="$(main_pids)"
    diff <(echo "$before") <(echo "$after")
    diff <(echo "$dist_before") <(synced_dist) || { echo "dist/ was sent again though unchanged"; return 1; }
}
check "a second vagrant provision restarts nothing, and sends no unchanged binary again" provision_changes_nothing

serves_build() { api -f "$GATEWAY/metrics" | grep "^gateway_build_info{build=\"$1\"" >/dev/null; }
# One machine is enough to show the folder is sent before provisioning (the trigger runs per
# machine), and saves provisioning the other two again under emulation.
rebuilt_binary_arrives() {
    local build="vagrant-test-$$"
    MOVIE_BUILD_ID="$build" vagrant_logged provision-rebuilt provision gateway
    test "$(on gateway "sha256sum < /usr/local/bin/api-gateway")" = "$(sha256sum <dist/api-gateway)"
    wait_until 60 "the gateway's new build serving" serves_build "$build"
    echo "figures: build $build built on the host, installed and serving on the gateway VM"
}
check "a rebuilt binary (MOVIE_BUILD_ID changed) arrives with vagrant provision and runs" rebuilt_binary_arrives

# --- vagrant reload ------------------------------------------------------------------------------

counts() {
    on inventory "runuser -u postgres -- psql -qAt -d inventory -c 'SELECT count(*) FROM movies'"
    on billing "runuser -u postgres -- psql -qAt -d billing -c 'SELECT count(*) FROM orders'"
}
reload_keeps_everything() {
    local before after machine
    before="$(counts)"
    vagrant_logged reload reload
    ssh_config
    wait_until 300 "the gateway ready after the reload" api -f -o /dev/null "$GATEWAY/ready"
    # Ready through any broker node: its own machine's may still be starting.
    wait_until 300 "every unit active after the reload" units_active_without_restarts ||
        { keep_journals reload; return 1; }
    # Still so a minute later, and none restarted by the RabbitMQ guard (which systemd does not
    # count): a normal reboot restarts nothing.
    sleep 60
    units_active_without_restarts || { keep_journals reload; return 1; }
    for machine in gateway inventory billing; do
        ! on "$machine" 'journalctl -b -q -u movie-rabbitmq-resume | grep ": restarting it$"' ||
            { echo "the guard restarted $machine's RabbitMQ node during a normal reboot"; keep_journals reload; return 1; }
    done
    for machine in gateway inventory billing; do
        on "$machine" 'nft list table inet movie_platform' >/dev/null || { echo "no firewall on $machine after the reboot"; return 1; }
    done
    after="$(counts)"
    echo "figures: movies and orders before the reload: $(echo "$before" | paste -sd /), after: $(echo "$after" | paste -sd /)"
    [ "$before" = "$after" ]
    test "$(api -o /dev/null -w '%{http_code}' -X POST "$GATEWAY/api/billing" -H 'Content-Type: application/json' \
        -d '{"user_id": "after-reload", "number_of_items": "1", "total_amount": "1.00"}')" = 202
    wait_until 60 "the order after the reload billed" orders_billed after-reload 1
}
check "vagrant reload: every unit back on its own, the catalogue and the orders kept, orders billed" reload_keeps_everything

# --- vagrant destroy -----------------------------------------------------------------------------

destroy_leaves_nothing() {
    vagrant_logged destroy destroy -f
    lab_virsh list --all --name | sort | comm -13 "$LAB_WORK/domains.before" - >"$WORK/domains.left"
    [ ! -s "$WORK/domains.left" ] || { cat "$WORK/domains.left"; return 1; }
}
check "vagrant destroy -f removes the three machines" destroy_leaves_nothing

checks_summary vagrant
