#!/usr/bin/env bash
# Builds (once; cached) the Debian 12 root filesystem the deployment test boots with systemd-nspawn:
# systemd as PID 1, and the packages the provisioning scripts install (scripts/vm/packages.sh)
# pre-fetched into its apt cache, so provisioning runs with no network.
# Usage: rootfs.sh DIR   (DIR/.complete marks a finished build)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/machines.sh"
. "$(dirname "$0")/../vm/packages.sh"
dir="$1"
# Bump when the contents below change (a new package list does it by itself), so a cached tree is rebuilt.
VERSION="4: $VM_PACKAGES"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$VERSION" ]; then
    exit 0
fi
rm -rf "$dir" "$dir.tmp"
mkdir -p "$(dirname "$dir")"
log "building the container root filesystem (cached in $dir)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,libnss-systemd,libpam-systemd,iproute2,iputils-ping,procps,netbase,ca-certificates,curl \
    bookworm "$dir.tmp" "$MIRROR" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }

root="$dir.tmp"
prepare_to_fetch "$root" "$MIRROR"
nspawn_runtime_dir
systemd-nspawn -q -D "$root" --register=no --keep-unit --resolv-conf=off --timezone=off \
    sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install --download-only -y -qq $VM_PACKAGES" \
    >>"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
rm -f "$root/usr/sbin/policy-rc.d"
# Every clone gets its own identity at first boot, and the name systemd-nspawn gives it.
rm -f "$root/etc/hostname"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
# Nothing resolves names outside: the machines use addresses only.
echo 'nameserver 127.0.0.1' >"$root/etc/resolv.conf"
echo "$VERSION" >"$root/.complete"
mv "$root" "$dir"
