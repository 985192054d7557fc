#!/usr/bin/env bash
# Builds (once; cached) a local Debian 12 box for the vagrant-libvirt provider, for machines with
# no Vagrant Cloud: DIR/movie-debian12.box (box.img, metadata.json, the kernel and initrd, and a
# Vagrantfile with the lab's provider settings, so the project's Vagrantfile stays as it is).
# The packages the provisioning scripts install (scripts/vm/packages.sh) are pre-fetched into its
# apt cache, not installed: the VMs have no network.
# Usage: box.sh DIR   (DIR/.complete marks a finished build; DIR/build.log is its log)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../vm/packages.sh"
dir="$1"
# Bump when the contents below change (a new package list does it by itself), so a cached box is rebuilt.
VERSION="4: $VM_PACKAGES"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BOX="$dir/movie-debian12.box"

if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$VERSION" ] && [ -f "$BOX" ]; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "box.sh needs root (debootstrap, chroot)"
ensure_packages debootstrap qemu-utils e2fsprogs
mkdir -p "$dir"
rm -f "$dir/.complete" "$BOX"
work="$dir/build"
root="$work/rootfs"
buildlog="$dir/build.log"
: >"$buildlog"
cleanup() {
    # A failed build must not leave /proc mounted in the tree (rm -rf would walk into it).
    mountpoint -q "$root/proc" && umount "$root/proc"
    rm -rf "$work"
}
fail() {
    tail -30 "$buildlog" >&2
    die "building the box failed (log: $buildlog)"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

log "building the Debian 12 Vagrant box (cached in $dir; about 5 minutes)"
# udev: the initramfs finds /dev/vda with it; dbus + libpam-systemd: systemctl for the vagrant
# user; netbase, procps: what Vagrant's guest capabilities and the setup scripts expect.
debootstrap --variant=minbase \
    --include=linux-image-amd64,udev,openssh-server,sudo,rsync,ca-certificates,systemd-sysv,ifupdown,isc-dhcp-client,iproute2,dbus,libpam-systemd,netbase,procps \
    bookworm "$root" "$MIRROR" >>"$buildlog" 2>&1 || fail

prepare_to_fetch "$root" "$MIRROR"
mount -t proc proc "$root/proc"
# Download only: rabbitmq-server's node name would bind to this build host's name, and the
# setup scripts install what they need themselves (ensure_packages, from this cache).
# shellcheck disable=SC2086 # VM_PACKAGES is a list of words
chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install --download-only --no-install-recommends -y -qq $VM_PACKAGES" \
    >>"$buildlog" 2>&1 || fail
umount "$root/proc"

# The vagrant user: Vagrant's insecure key (replaced by a per-machine key at the first `up`),
# passwordless sudo. The password stays locked; sshd with PAM still takes the key.
chroot "$root" useradd --create-home --shell /bin/bash vagrant >>"$buildlog" 2>&1 || fail
install -d -m 700 "$root/home/vagrant/.ssh"
install -m 600 /usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub \
    "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"

# Network: eth0 (net.ifnames=0 on the kernel command line) by DHCP from libvirt's management
# network; `auto`, not allow-hotplug, so networking.service waits for the lease. Vagrant adds
# the private network (eth1) to this file itself.
cat >"$root/etc/network/interfaces" <<'IFACES'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
IFACES
echo '/dev/vda / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
# Vagrant's hostname step (Debian guests) restarts ifup@IFACE for every interface before it has
# written the private network's stanza; an interface ifupdown knows nothing of is not a failure
# (it would leave the machine "degraded").
mkdir -p "$root/etc/systemd/system/ifup@.service.d"
cat >"$root/etc/systemd/system/ifup@.service.d/unconfigured.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=/bin/sh -ec 'ifquery %I >/dev/null 2>&1 || exit 0; ifup --allow=hotplug %I; ifquery --state %I'
UNIT

# Every clone gets its own identity at first boot: machine-id, SSH host keys; the hostname is
# Vagrant's to set.
echo debian >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Generate the SSH host keys (first boot)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
UNIT
chroot "$root" systemctl enable ssh-host-keys.service >>"$buildlog" 2>&1 || fail
# Never a prompt on the console at boot, whatever systemd makes of the empty machine-id.
chroot "$root" systemctl mask systemd-firstboot.service >>"$buildlog" 2>&1 || fail
# dhclient writes it at boot; the build host's must not travel with the image.
rm -f "$root/etc/resolv.conf"
rm -f "$root/usr/sbin/policy-rc.d"

# The box: the kernel and initrd outside the image (libvirt boots them directly: no boot
# loader, no partition table), the root filesystem as qcow2.
boxdir="$work/box"
mkdir -p "$boxdir"
kernels=("$root"/boot/vmlinuz-*)
[ ${#kernels[@]} -eq 1 ] || die "expected one kernel in the image, found: ${kernels[*]}"
install -m 644 "${kernels[0]}" "$boxdir/vmlinuz"
install -m 644 "$root/boot/initrd.img-${kernels[0]#*/boot/vmlinuz-}" "$boxdir/initrd.img"
truncate -s 6G "$work/root.raw"
mkfs.ext4 -q -L movie-root -d "$root" "$work/root.raw" >>"$buildlog" 2>&1 || fail
rm -rf "$root"
qemu-img convert -O qcow2 "$work/root.raw" "$boxdir/box.img" >>"$buildlog" 2>&1 || fail
rm -f "$work/root.raw"
echo '{"provider":"libvirt","format":"qcow2","virtual_size":20}' >"$boxdir/metadata.json"
# The lab specifics live in the box (Vagrant merges this under the project's Vagrantfile).
cat >"$boxdir/Vagrantfile" <<'RUBY'
# Box defaults of movie-debian12 (scripts/vagrant/box.sh), for scripts/vagrant/lab.sh:
# MOVIE_LAB_DRIVER is kvm when KVM works on this host, qemu (TCG, emulation) otherwise.
Vagrant.configure("2") do |config|
  # TCG boots in minutes, not seconds.
  config.vm.boot_timeout = 900
  config.vm.provider :libvirt do |lv|
    # The lab's libvirtd reads this machine's /etc/libvirt: its own names cannot clash with the
    # domains of a checkout that an operator brought up here.
    lv.default_prefix = "movie-lab-"
    lv.driver = ENV.fetch("MOVIE_LAB_DRIVER", "qemu")
    if lv.driver == "kvm"
      lv.cpu_mode = "host-passthrough"
    else
      lv.cpu_mode = "custom"
      lv.cpu_model = "qemu64"
    end
    # No boot loader in the image: libvirt boots the box's kernel with the root filesystem on vda.
    lv.kernel = File.expand_path("vmlinuz", __dir__)
    lv.initrd = File.expand_path("initrd.img", __dir__)
    lv.cmd_line = "root=/dev/vda ro console=ttyS0 net.ifnames=0"
    lv.disk_bus = "virtio"
    lv.graphics_type = "none"
  end
end
RUBY
tar -C "$boxdir" -cf "$BOX.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img 2>>"$buildlog" || fail
mv "$BOX.tmp" "$BOX"
echo "$VERSION" >"$dir/.complete"
log "box ready: $BOX ($(du -h "$BOX" | cut -f1))"
