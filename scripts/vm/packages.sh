# shellcheck shell=bash
# The Debian packages the provisioning scripts (setup_*.sh) install. The images the tests boot
# (scripts/deploy/rootfs.sh, scripts/vagrant/box.sh) have them pre-fetched into their apt cache:
# their machines have no network.
# shellcheck disable=SC2034
VM_PACKAGES="postgresql rabbitmq-server nftables chrony curl ca-certificates openssl"
