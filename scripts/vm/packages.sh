# shellcheck shell=bash
# The Debian packages the provisioning scripts (setup_*.sh) install, and how the test images get them. The images the tests boot
# (scripts/deploy/rootfs.sh, scripts/vagrant/box.sh) have them pre-fetched into their apt cache:
# their machines have no network.
# shellcheck disable=SC2034
VM_PACKAGES="postgresql rabbitmq-server nftables chrony curl ca-certificates openssl prometheus prometheus-node-exporter prometheus-postgres-exporter"

# prepare_to_fetch ROOT MIRROR: a debootstrapped tree made ready to download VM_PACKAGES into its
# apt cache, and to keep them (they are its machines' only package source): Debian's sources,
# the host's resolver, and a policy-rc.d so that no package starts a daemon in an unbooted tree
# (the caller removes it).
prepare_to_fetch() {
    local root="$1" mirror="$2"
    rm -f "$root/etc/apt/apt.conf.d/docker-clean"
    echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$root/etc/apt/apt.conf.d/90keep-packages"
    cat >"$root/etc/apt/sources.list" <<LIST
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
LIST
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
}
