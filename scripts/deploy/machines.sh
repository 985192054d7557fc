# shellcheck shell=bash
# Machines for the deployment test (scripts/deploy-test.sh): Debian 12 containers booted with
# systemd as PID 1 (systemd-nspawn), each on its own overlay of a read-only root filesystem
# (scripts/deploy/rootfs.sh builds it), in its own network namespace on a private bridge, with
# the repository at /vagrant as Vagrant's synced folder. One more namespace on the bridge plays
# the Vagrant host. No namespace has a default route: traffic stays inside. Source it (after
# scripts/lib/common.sh); it defines functions only.
#
# The caller sets, before machines_network:
#   MACHINES_WORK    a scratch directory of its own (overlays, consoles)
#   MACHINES_TAG     a short name unique to this run (prefix of namespaces and links)
#   MACHINES_ROOTFS  the root filesystem every machine starts from
#   MACHINE_IP       an associative array: machine name -> address in 192.168.56.0/24, with one
#                    entry named "client" for the namespace that plays the host
# and removes everything with machines_teardown (in an EXIT trap).

declare -A NSPAWN_PID=()

# nspawn_runtime_dir: systemd-nspawn wants /run/systemd/nspawn on a tmpfs (it complains at exit
# otherwise; there is no systemd as PID 1 here to provide it).
nspawn_runtime_dir() {
    mountpoint -q /run/systemd/nspawn || { mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn; }
}

leader() { # leader MACHINE: the PID of a container's PID 1 (the child of its systemd-nspawn)
    pgrep -P "${NSPAWN_PID[$1]}" | head -n 1
}

inside() { # inside MACHINE COMMAND...: runs a command in the container, as root
    local machine="$1"
    shift
    # Not `ip netns exec`, which remounts /sys.
    nsenter -t "$(leader "$machine")" -a -- "$@"
}

from_host() { # from_host COMMAND...: runs a command in the namespace that plays the Vagrant host
    ip netns exec "$MACHINES_TAG-client" "$@"
}

mac_for() { # mac_for ADDRESS: a stable MAC per address, so that re-created machines are reachable at once
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '02:00:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d"
}

# machines_network: the bridge, and a namespace per entry of MACHINE_IP with its address on it.
machines_network() {
    ip netns add "$MACHINES_TAG-bridge"
    ip -n "$MACHINES_TAG-bridge" link add br0 type bridge
    ip -n "$MACHINES_TAG-bridge" link set br0 up
    local name link
    for name in "${!MACHINE_IP[@]}"; do
        link="$(bridge_port "$name")"
        ip netns add "$MACHINES_TAG-$name"
        ip link add "$link" type veth peer name eth1
        ip link set eth1 netns "$MACHINES_TAG-$name"
        ip link set "$link" netns "$MACHINES_TAG-bridge"
        ip -n "$MACHINES_TAG-bridge" link set "$link" master br0 up
        ip -n "$MACHINES_TAG-$name" link set eth1 address "$(mac_for "${MACHINE_IP[$name]}")"
        ip -n "$MACHINES_TAG-$name" addr add "${MACHINE_IP[$name]}/24" dev eth1
        ip -n "$MACHINES_TAG-$name" link set eth1 up
        ip -n "$MACHINES_TAG-$name" link set lo up
        # No default route anywhere: nothing can leave these namespaces.
    done
}

system_state_known() { # systemd inside answers with a state other than "offline" (its first answer)
    local state
    state="$(inside "$1" systemctl is-system-running 2>/dev/null || true)"
    [ -n "$state" ] && [ "$state" != offline ]
}

# machine_boot MACHINE: boots it on its overlay (kept across reboots: a reboot is a poweroff and
# a boot on the same disk), in its namespace; returns once systemd has finished starting up.
machine_boot() { machine_start "$1" && machine_started "$1"; }

# machine_start MACHINE: machine_boot without waiting for the start-up to finish: machines whose
# start-up waits for one another (clustered RabbitMQ nodes) are started together, then awaited.
machine_start() {
    local name="$1" dir="$MACHINES_WORK/$1"
    nspawn_runtime_dir
    mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
    ip -n "$MACHINES_TAG-bridge" link set "$(bridge_port "$name")" up
    mountpoint -q "$dir/merged" ||
        mount -t overlay overlay -o "lowerdir=$MACHINES_ROOTFS,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
    # Vagrant's rsync leaves the host's secrets file out of /vagrant: hide it here too.
    local hidden=()
    [ ! -e "$REPO_ROOT/.vagrant-secrets.env" ] || hidden=(--bind-ro=/dev/null:/vagrant/.vagrant-secrets.env)
    # --register=no needs --keep-unit here: there is no machined.
    systemd-nspawn -b -D "$dir/merged" --register=no --keep-unit "${hidden[@]}" \
        --machine="$name" --hostname="$name" \
        --network-namespace-path="/run/netns/$MACHINES_TAG-$name" \
        --resolv-conf=off --timezone=off --link-journal=no --console=read-only \
        --bind-ro="$REPO_ROOT:/vagrant" \
        >>"$MACHINES_WORK/$name.console" 2>&1 </dev/null &
    NSPAWN_PID[$name]=$!
    wait_until --every 0.1 10 "$name's systemd to start" leader "$name" || true
}

machine_started() { # machine_started MACHINE: until systemd in it has finished starting up
    wait_until --every 0.2 20 "$1's systemd to answer" system_state_known "$1" || true
    inside "$1" systemctl is-system-running --wait >/dev/null 2>&1 || true
}

# machine_poweroff MACHINE: a clean shutdown; waits (30 s at most) for systemd-nspawn to exit.
machine_poweroff() {
    local name="$1" pid="${NSPAWN_PID[$1]:-}"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        inside "$name" systemctl poweroff >/dev/null 2>&1 || true
        wait_until --every 0.2 30 "$name to power off" process_gone "$pid" || true
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    unset "NSPAWN_PID[$name]"
}

bridge_port() { # bridge_port MACHINE: the machine's link on the bridge
    echo "v$MACHINES_TAG${1:0:3}"
}

# machine_power_cut MACHINE: as a power cut: the machine's link goes silent first (its peers get
# no FIN or RST, as from a machine that lost power), then every process in it is killed at once.
# Its disk (the overlay) stays; machine_boot starts it again and restores the link.
machine_power_cut() {
    local name="$1" pid="${NSPAWN_PID[$1]}"
    ip -n "$MACHINES_TAG-bridge" link set "$(bridge_port "$name")" down
    # SIGKILL to a PID namespace's init kills everything in the namespace.
    kill -KILL "$(leader "$name")"
    wait_until --every 0.2 30 "$name to stop" process_gone "$pid" || kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    unset "NSPAWN_PID[$name]"
}

# machine_wipe MACHINE: a powered-off machine's disk lost: its overlay's upper layer emptied, so
# it boots as a new machine from the root filesystem.
machine_wipe() {
    local dir="$MACHINES_WORK/$1"
    ! mountpoint -q "$dir/merged" || umount "$dir/merged"
    rm -rf "$dir/upper" "$dir/work"
}

# machines_teardown: every machine stopped, every overlay unmounted, every namespace and
# MACHINES_WORK removed. Only what this run created, even after a failure half-way.
machines_teardown() {
    local name
    for name in "${!NSPAWN_PID[@]}"; do machine_poweroff "$name"; done
    for name in "${!MACHINE_IP[@]}"; do
        mountpoint -q "$MACHINES_WORK/$name/merged" && umount "$MACHINES_WORK/$name/merged"
    done
    for name in "${!MACHINE_IP[@]}" bridge; do
        ip netns del "$MACHINES_TAG-$name" 2>/dev/null || true
    done
    rm -rf "$MACHINES_WORK"
}
