#!/usr/bin/env bash
# rootfs.sh: the lab host's root filesystem, a minimal Debian 12 with systemd, cached on this machine.
#
# The lab host (tests/lab/container.py) boots this tree with systemd-nspawn under an overlay mount,
# so a lab run never changes it. Built once per content of this script (the package list is in it):
# /var/cache/ooa-lab/rootfs-<first 12 hex of the script's sha256>. A cold build takes 70-80 s here
# (debootstrap from the machine's Debian mirror), so `make lab-rootfs` builds it before the timed lab.
#
# Entry points:
#   rootfs.sh path     print the cache directory for this script (built or not)
#   rootfs.sh build    build it unless it exists (flock; into a temporary directory, renamed when
#                      complete), remove caches of older versions of this script, print the path
#
# Parameters (environment): OOA_ROOTFS_CACHE (default /var/cache/ooa-lab), OOA_ROOTFS_MIRROR (default:
# the first Debian URI of /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list).
set -euo pipefail

CACHE=${OOA_ROOTFS_CACHE:-/var/cache/ooa-lab}
SUITE=bookworm
# What the steps run over SSH (prepare-host, external-gateway, gateway-mac, port-forwards, tls-front,
# public-endpoints), what runs inside (sshd, Open vSwitch, Apache, Neutron's agents and what they
# run: dnsmasq, haproxy for the metadata proxy; nova-compute's libvirt and QEMU), python3 for the lab
# venv (3.11, as on this machine). python3-cffi-backend: cloud-init's closure misses it under
# --variant=minbase; libpam-systemd: polkitd's (libvirt's) `default-logind | logind`, an alternative
# debootstrap does not resolve.
PACKAGES=(
  systemd systemd-sysv dbus iproute2 procps sudo openssh-server python3 python3-yaml python3-cffi-backend
  iptables conntrack iputils-ping openvswitch-switch dnsmasq-base jq netplan.io cloud-init apache2-bin curl openssl
  git ca-certificates haproxy libvirt-daemon-system libpam-systemd qemu-system-x86 qemu-utils
)
# Debian's units that would start at boot what the lab starts itself (Open vSwitch, on the lab's
# paths; apache2-bin has no unit: the lab makes a transient apache2.service), that must not touch the lab's NICs (systemd-networkd shares the lab host's network
# namespace: masked, netplan's files for it stay unused), or that have nothing to do here (getty: no
# console). ssh.service stays: sshd starts at boot with the lab's key and configuration.
MASKED=(
  openvswitch-switch.service ovsdb-server.service ovs-vswitchd.service ovs-record-hostname.service
  ssh.socket
  systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service
  console-getty.service getty@.service
  libvirt-guests.service
)

# cache_dir : the cache directory of this version of the script.
cache_dir() {
  local sum
  sum=$(sha256sum "${BASH_SOURCE[0]}")
  echo "$CACHE/rootfs-${sum:0:12}"
}

# mirror : the Debian mirror the machine's apt uses.
mirror() {
  local uri
  if [ -n "${OOA_ROOTFS_MIRROR:-}" ]; then echo "$OOA_ROOTFS_MIRROR"; return 0; fi
  uri=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "rootfs.sh: no Debian mirror in /etc/apt/sources.list(.d)" >&2; return 1; }
  echo "$uri"
}

# configure DIR : what every lab host shares: no host keys (each lab writes its own), masked units,
# root's .ssh directory, the host name.
configure() {
  local dir=$1 unit
  rm -f "$dir"/etc/ssh/ssh_host_*
  for unit in "${MASKED[@]}"; do ln -sfn /dev/null "$dir/etc/systemd/system/$unit"; done
  install -d -m 0700 "$dir/root/.ssh"
  echo lab-host >"$dir/etc/hostname"
  # as Debian's installer writes it: the host's own name resolves without DNS (sudo looks it up)
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tlab-host\n' >"$dir/etc/hosts"
  # libvirtd in a container: the cgroup controllers are nspawn's, read-only inside ("Failed to
  # create v1 controller cpu ... Read-only file system" otherwise)
  echo 'cgroup_controllers = [ ]' >>"$dir/etc/libvirt/qemu.conf"
  # libvirt's default network would put its own bridge, dnsmasq and NAT rules in the lab host's
  # namespace: Nova uses Neutron's networks only (DevStack removes it too)
  rm -f "$dir/etc/libvirt/qemu/networks/autostart/default.xml"
  apt_clean "$dir"
}

# apt_clean DIR : the downloaded .debs and package lists out of the tree (a smaller cache).
apt_clean() {
  rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages
}

# build : the cache directory, built once.
build() {
  local dir tmp
  dir=$(cache_dir)
  install -d -m 0755 "$CACHE"
  exec 8>"$CACHE/rootfs.lock"
  flock -w 900 8 || { echo "rootfs.sh: $CACHE/rootfs.lock held for 15 minutes" >&2; return 1; }
  if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d "$dir.tmp.XXXXXX")
    # shellcheck disable=SC2064 # expanded now: the EXIT trap runs after build's locals are gone
    trap "rm -rf --one-file-system '$tmp'" EXIT
    trap 'exit 1' INT TERM
    local IFS=,
    debootstrap --variant=minbase --include="${PACKAGES[*]}" "$SUITE" "$tmp" "$(mirror)" >&2
    unset IFS
    configure "$tmp"
    chmod 0755 "$tmp"
    mv "$tmp" "$dir"
    trap - EXIT INT TERM
  fi
  remove_stale "$dir"
  echo "$dir"
}

# remove_stale KEEP : the caches of other versions of this script, and half-built ones, go.
remove_stale() {
  local d
  for d in "$CACHE"/rootfs-*; do
    [ -e "$d" ] && [ "$d" != "$1" ] || continue
    rm -rf --one-file-system "$d" # a build killed inside debootstrap may leave its /proc mounted there
  done
}

case ${1:-} in
  path) cache_dir ;;
  build) build ;;
  *) echo "usage: $0 path|build" >&2; exit 2 ;;
esac
