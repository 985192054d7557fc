# shellcheck shell=bash
# A Vagrant + libvirt lab sealed in a network namespace: libvirtd, virtlogd, the machines, their
# networks (libvirt's management network, 192.168.56.0/24), dnsmasq and Vagrant's forwarded ports
# on 127.0.0.1 all live in a namespace made for the run, with no link out of it. Nothing the lab
# runs can reach (or be reached from) any address but its own. The machines boot the local box
# scripts/vagrant/box.sh builds (movie-debian12); its Vagrantfile chooses KVM or TCG from
# MOVIE_LAB_DRIVER. Source it after scripts/lib/common.sh; it defines functions only.
#
#   lab_install         installs Vagrant, vagrant-libvirt, libvirt and QEMU (Debian packages).
#   lab_start WORKDIR   builds the box if needed (cached), adds it to Vagrant, detects KVM
#                       (exports MOVIE_LAB_DRIVER=kvm|qemu; a value already set is kept), creates
#                       the namespace, starts virtlogd and libvirtd in it, makes sure libvirt's
#                       "default" storage pool is active; exports VAGRANT_HOME and
#                       MOVIE_BOX=movie-debian12. WORKDIR (created) holds the run's pid files and
#                       logs. One lab at a time per host (libvirt's sockets are not per namespace).
#   lab_vagrant ARGS... vagrant ARGS in the namespace, in the current directory (provider libvirt,
#                       CARGO_NET_OFFLINE=true, no Vagrant Cloud or checkpoint calls).
#   lab_in COMMAND...   any command in the namespace (e.g. curl http://127.0.0.1:8080/...).
#   lab_stop            destroys the domains, volumes and networks libvirt gained since lab_start,
#                       and always the box's base volume (so a rebuilt box is uploaded again), stops
#                       libvirtd, virtlogd, dnsmasq and anything else left in the namespace by
#                       PID, deletes the namespace. Safe twice, and from an EXIT trap.
#
# Caches (MOVIE_LAB_CACHE, /var/tmp/movie-lab by default; not under /root, which libvirt's qemu
# user cannot read): box/ (the box, scripts/vagrant/box.sh) and vagrant-home/ (VAGRANT_HOME).
# The machines' disks go to libvirt's default pool, /var/lib/libvirt/images.

LAB_URI=qemu:///system

# lab_install: Vagrant, vagrant-libvirt, libvirt and QEMU from Debian's packages, none of their
# daemons started here (they run in the lab's namespace only). QEMU comes from
# bookworm-backports where the machine's qemu-utils does (the bookworm one conflicts with it).
lab_install() { without_service_starts lab_install_packages; }
lab_install_packages() {
    ensure_packages vagrant vagrant-libvirt libvirt-daemon libvirt-daemon-system-sysv libvirt-daemon-system \
        libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base iptables ebtables rsync debootstrap \
        qemu-utils openssh-client
    if ! dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q 'install ok installed'; then
        if dpkg-query -W -f='${Version}' qemu-utils | grep -q bpo; then
            grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ ||
                echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
            log "installing qemu-system-x86 from bookworm-backports (as this machine's qemu-utils)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -t bookworm-backports qemu-system-x86 >/dev/null
        else
            ensure_packages qemu-system-x86
        fi
    fi
}

# lab_virsh ARGS...: virsh on the lab's libvirtd (a unix socket: reachable from any namespace).
lab_virsh() { virsh -q -c "$LAB_URI" "$@"; }

lab_in() {
    [ -n "${LAB_NS:-}" ] || die "lab_in: no lab running (lab_start first)"
    ip netns exec "$LAB_NS" "$@"
}

lab_vagrant() {
    lab_in env VAGRANT_DEFAULT_PROVIDER=libvirt CARGO_NET_OFFLINE=true \
        VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1 vagrant "$@"
}

# lab_kvm_works KERNEL: boots the box's kernel under KVM with no root disk (and no network
# device). A usable KVM gets to the panic about the missing root in seconds; a broken nested
# one hangs, and TCG it is.
lab_kvm_works() {
    local kernel="$1" out="$LAB_WORK/kvm-test.log"
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    lab_in timeout 60 qemu-system-x86_64 -enable-kvm -cpu host -m 256 -nodefaults -nic none \
        -display none -monitor none -serial stdio -no-reboot \
        -kernel "$kernel" -append "console=ttyS0 panic=-1" >"$out" 2>&1 </dev/null || true
    grep -q -e 'Kernel panic' -e 'VFS: Unable to mount root' "$out"
}

# lab_box_add BOXFILE: adds the box to VAGRANT_HOME, unless this very file (size, mtime) is there.
lab_box_add() {
    local box="$1" stamp="$VAGRANT_HOME/$MOVIE_BOX.stamp" id
    id="$(stat -c '%s %Y' "$box")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$id" ] &&
        [ -f "$VAGRANT_HOME/boxes/$MOVIE_BOX/0/libvirt/box.img" ]; then
        return 0
    fi
    log "adding the box $MOVIE_BOX to $VAGRANT_HOME"
    rm -f "$stamp"
    lab_in env VAGRANT_CHECKPOINT_DISABLE=1 vagrant box add --name "$MOVIE_BOX" --force "$box" \
        >"$LAB_WORK/box-add.log" 2>&1 || { tail -20 "$LAB_WORK/box-add.log" >&2; die "vagrant box add failed"; }
    echo "$id" >"$stamp"
}

# (Not grep -q: under pipefail, virsh dying of SIGPIPE would fail the test.)
lab_pool_active() { lab_virsh pool-info default 2>/dev/null | grep '^State: *running' >/dev/null; }

# lab_box_volumes: the base-box volumes vagrant-libvirt uploaded for our box (one per box version).
lab_box_volumes() {
    lab_virsh vol-list default 2>/dev/null | awk -v p="${MOVIE_BOX}_vagrant_box_image_" 'index($1, p) == 1 { print $1 }'
}

lab_start() {
    local work="$1" cache="${MOVIE_LAB_CACHE:-/var/tmp/movie-lab}" running volume
    [ -z "${LAB_NS:-}" ] || die "lab_start: a lab is running already ($LAB_NS)"
    [ "$(id -u)" -eq 0 ] || die "lab_start needs root (network namespace, libvirtd)"
    running="$(pgrep -x libvirtd; pgrep -x virtlogd)" || true
    [ -z "$running" ] ||
        die "libvirtd or virtlogd runs already (pid ${running//$'\n'/ }): libvirt's sockets are shared by every namespace, so one lab at a time"
    mkdir -p "$work"
    LAB_WORK="$(cd "$work" && pwd)"
    rm -f "$LAB_WORK"/*.before "$LAB_WORK"/*.pid
    # The one step that uses the network (the Debian mirror), so outside the namespace.
    "$(dirname "${BASH_SOURCE[0]}")/box.sh" "$cache/box"

    # Set before anything exists, so that lab_stop after a failure below cleans up what did.
    LAB_NS="movie-lab-$$"
    ip netns add "$LAB_NS"
    ip -n "$LAB_NS" link set lo up

    export VAGRANT_HOME="$cache/vagrant-home" MOVIE_BOX=movie-debian12
    mkdir -p "$VAGRANT_HOME"
    lab_box_add "$cache/box/movie-debian12.box"
    if [ -z "${MOVIE_LAB_DRIVER:-}" ]; then
        if lab_kvm_works "$VAGRANT_HOME/boxes/$MOVIE_BOX/0/libvirt/vmlinuz"; then
            MOVIE_LAB_DRIVER=kvm
        else
            MOVIE_LAB_DRIVER=qemu
        fi
    fi
    export MOVIE_LAB_DRIVER
    log "lab: namespace $LAB_NS, libvirt driver $MOVIE_LAB_DRIVER ($([ "$MOVIE_LAB_DRIVER" = kvm ] && echo KVM || echo 'TCG: emulated, slow'))"

    lab_in virtlogd -d -p "$LAB_WORK/virtlogd.pid"
    lab_in libvirtd -d -p "$LAB_WORK/libvirtd.pid"
    wait_until 60 "libvirtd" lab_virsh version || die "libvirtd did not start"

    # The pool: vagrant-libvirt would define one too, but only on first use.
    if ! lab_virsh pool-info default >/dev/null 2>&1; then
        mkdir -p /var/lib/libvirt/images
        lab_virsh pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
        lab_virsh pool-autostart default >/dev/null
    fi
    # (libvirtd autostarts it in the background: it may turn active while we look.)
    lab_pool_active || lab_virsh pool-start default >/dev/null 2>&1 || lab_pool_active ||
        die "libvirt's default storage pool does not start"
    # A base volume of our box left by a run that could not clean up may be of an older build.
    for volume in $(lab_box_volumes); do
        lab_virsh vol-delete --pool default "$volume" >/dev/null
    done
    # Machines left by a run that was killed before it could clean up: the lab's own name prefix
    # (box.sh's default_prefix), and they would block `vagrant up` ("name already taken").
    for name in $(lab_virsh list --all --name | grep '^movie-lab-' || true); do
        lab_virsh destroy "$name" >/dev/null 2>&1 || true
        lab_virsh undefine --nvram --remove-all-storage "$name" >/dev/null 2>&1 ||
            lab_virsh undefine "$name" >/dev/null 2>&1 || true
    done
    # What libvirt holds now is not ours: lab_stop removes only what appears after this.
    lab_virsh list --all --name | sort >"$LAB_WORK/domains.before"
    lab_virsh vol-list default | awk '{ print $1 }' | sort >"$LAB_WORK/volumes.before"
    lab_virsh net-list --all --name | sort >"$LAB_WORK/networks.before"
}

lab_stop() {
    [ -n "${LAB_NS:-}" ] || return 0
    local name pid pids
    if [ -f "$LAB_WORK/networks.before" ] && lab_virsh version >/dev/null 2>&1; then
        for name in $(lab_virsh list --all --name | sort | comm -13 "$LAB_WORK/domains.before" -); do
            lab_virsh destroy "$name" >/dev/null 2>&1 || true
            lab_virsh undefine --nvram --remove-all-storage "$name" >/dev/null 2>&1 ||
                lab_virsh undefine "$name" >/dev/null 2>&1 || true
        done
        lab_virsh pool-refresh default >/dev/null 2>&1 || true
        for name in $(lab_virsh vol-list default 2>/dev/null | awk '{ print $1 }' | sort |
            comm -13 "$LAB_WORK/volumes.before" -) $(lab_box_volumes); do
            lab_virsh vol-delete --pool default "$name" >/dev/null 2>&1 || true
        done
        for name in $(lab_virsh net-list --all --name | sort | comm -13 "$LAB_WORK/networks.before" -); do
            lab_virsh net-destroy "$name" >/dev/null 2>&1 || true
            lab_virsh net-undefine "$name" >/dev/null 2>&1 || true
        done
    fi
    for name in libvirtd virtlogd; do
        pid="$(cat "$LAB_WORK/$name.pid" 2>/dev/null)" || continue
        # Only if that PID is still ours (in the namespace), not a reused one.
        [ "$(ip netns identify "$pid" 2>/dev/null)" = "$LAB_NS" ] || continue
        kill "$pid" 2>/dev/null || true
        wait_until 30 "$name to stop" process_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    done
    # Whatever else runs in the namespace is the lab's: dnsmasq, Vagrant's ssh port forwards, a
    # qemu libvirt lost track of.
    if [ -e "/run/netns/$LAB_NS" ]; then
        pids="$(ip netns pids "$LAB_NS")"
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086 # a list of PIDs
            kill $pids 2>/dev/null || true
            sleep 2
            pids="$(ip netns pids "$LAB_NS")"
            # shellcheck disable=SC2086
            [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        fi
        ip netns delete "$LAB_NS" || true
    fi
    LAB_NS=
}
