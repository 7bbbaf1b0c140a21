# shellcheck shell=bash
# Helpers shared by the remote steps; sourced, never run. Installed beside the step scripts.

# Where steps keep their state: saved parameters and what `remove` must undo (root only).
OOA_STATE=${OOA_STATE:-/var/lib/openstack-on-aws}

# catalog_interface : the catalog interface the host's own `openstack` calls must use: `internal`
# once public-endpoints has moved Keystone's public endpoints to the public https address (neither
# routed nor trusted from the host: its state file says so), else `public`.
catalog_interface() { cat "$OOA_STATE/public-endpoints/interface" 2>/dev/null || echo public; }
# Every step that sources this (external-gateway, smoke, discover-hosts, compute-record, re-run
# after public-endpoints) then calls the internal endpoints: the openstack CLI takes OS_INTERFACE
# as its --os-interface default. public-endpoints passes --os-interface itself.
if [ "$(catalog_interface)" = internal ]; then export OS_INTERFACE=internal; fi

log() { printf '[%s] %s\n' "${OOA_STEP:-step}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${OOA_STEP:-step}" "$*" >&2; exit 1; }

# load_params FILE NAME... : read KEY=value lines from FILE (- for stdin); accept only NAMEs.
# Values are taken literally (never evaluated). Every NAME must be given.
load_params() {
  local file=$1 line key value name
  shift
  local -A wanted=()
  for name in "$@"; do wanted[$name]=1; done
  [ "$file" = - ] && file=/dev/stdin
  while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] && continue
    key=${line%%=*}
    value=${line#*=}
    [ "$key" != "$line" ] || die "parameter line without '=': ${key:0:40}"
    [ -n "${wanted[$key]:-}" ] || die "unknown parameter $key"
    printf -v "$key" '%s' "$value"
    unset "wanted[$key]"
  done <"$file"
  for name in "${!wanted[@]}"; do die "missing parameter $name"; done
}

# save_params FILE NAME... : write the named variables as KEY=value lines, readable by root only.
save_params() {
  local file=$1 name
  shift
  install -d -m 0700 "$(dirname "$file")"
  (umask 077 && for name in "$@"; do printf '%s=%s\n' "$name" "${!name}"; done >"$file.tmp")
  mv "$file.tmp" "$file"
}

is_mac() { [[ $1 =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]]; }
is_ipv4() {
  local IFS=. part
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  # shellcheck disable=SC2086 # split on dots on purpose
  for part in $1; do ((10#$part <= 255)) || return 1; done
}
is_cidr() { [[ $1 == */* ]] && is_ipv4 "${1%/*}" && [[ ${1#*/} =~ ^[0-9]{1,2}$ ]] && ((${1#*/} <= 32)); }
is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }
is_uuid() { [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; }

# need VALIDATOR NAME : die unless the variable NAME passes VALIDATOR (is_mac, is_ipv4, ...).
need() { "$1" "${!2}" || die "parameter $2 is not a valid ${1#is_}: '${!2}'"; }

# --- re-apply helpers (gateway-mac, port-forwards) ---

# lock_step DIR : hold an exclusive lock for this step (apply/remove vs the re-apply timer).
lock_step() {
  install -d -m 0700 "$1"
  exec 9>"$1.lock"
  flock -w 60 9 || die "another run of ${OOA_STEP:-this step} holds $1.lock"
}

# missing_target PROBLEM [wait] : with "wait" (reapply), log that we wait and return 1; else die.
missing_target() {
  [ "${2:-}" = wait ] || die "$1"
  log "waiting: $1"
  return 1
}

netns_exists() {
  local line
  while read -r line _; do [ "$line" = "$1" ] && return 0; done < <(ip netns list)
  return 1
}

# random_local_mac : a random locally administered unicast MAC (first octet x2, x6, xa or xe).
random_local_mac() {
  local b
  b=$(od -An -N6 -tx1 /dev/urandom | tr -s ' \n' ' ')
  # shellcheck disable=SC2086 # split the six bytes on purpose
  set -- $b
  printf '%02x:%s:%s:%s:%s:%s\n' $(((0x$1 & 0xfc) | 0x02)) "$2" "$3" "$4" "$5" "$6"
}

# install_reapply_units STEP : where systemd runs, a timer re-runs `<this dir>/STEP.sh reapply`
# at boot, after Neutron's L3 agent starts, and every 30 s (cheap, idempotent: the router namespace
# can be re-created at any time). Without systemd (containers, the lab) it does nothing.
install_reapply_units() {
  local step=$1 unit=openstack-on-aws-$1-reapply dir
  [ -d /run/systemd/system ] || { log "no systemd: re-apply unit not installed"; return 0; }
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cat >"/etc/systemd/system/$unit.service.tmp" <<UNIT
[Unit]
Description=openstack-on-aws: re-apply $step after a reboot or a re-created router namespace
After=network-online.target openvswitch-switch.service devstack@q-l3.service

[Service]
Type=oneshot
Environment=OOA_STATE=$OOA_STATE
ExecStart=$dir/$step.sh reapply
UNIT
  cat >"/etc/systemd/system/$unit.timer.tmp" <<UNIT
[Unit]
Description=openstack-on-aws: re-apply $step periodically

[Timer]
OnBootSec=30s
OnUnitActiveSec=30s
AccuracySec=5s

[Install]
WantedBy=timers.target
UNIT
  mv "/etc/systemd/system/$unit.service.tmp" "/etc/systemd/system/$unit.service"
  mv "/etc/systemd/system/$unit.timer.tmp" "/etc/systemd/system/$unit.timer"
  systemctl daemon-reload
  systemctl enable --now "$unit.timer" >/dev/null 2>&1 || die "cannot enable $unit.timer"
}

# remove_reapply_units STEP : undo install_reapply_units (nothing if it was never installed).
remove_reapply_units() {
  local unit=openstack-on-aws-$1-reapply
  [ -e "/etc/systemd/system/$unit.timer" ] || [ -e "/etc/systemd/system/$unit.service" ] || return 0
  if [ -d /run/systemd/system ]; then systemctl disable --now "$unit.timer" >/dev/null 2>&1 || true; fi
  rm -f "/etc/systemd/system/$unit.timer" "/etc/systemd/system/$unit.service"
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
}

# --- host helpers (prepare-host, install-openstack, external-gateway) ---

# Where the kernel lists the network devices (a variable so tests can point it at fake trees).
NET_SYSFS=${NET_SYSFS:-/sys/class/net}
# Link kinds that can carry the NIC's MAC but are not the NIC: bridges and OVS internal ports
# (br-ex may take the NIC's MAC), bonds, VLAN devices (they inherit it), tunnels, tun/tap, dummies.
NOT_NIC_KINDS=" bridge openvswitch bond team vlan macsec vxlan geneve gre gretap ip6gre ip6gretap
  erspan ip6erspan ipip sit ip6tnl vti vti6 bareudp tun dummy ifb vrf wireguard "

# link_kind DIR : the kind of the device DIR (an entry of $NET_SYSFS): "nic" for one on a bus
# (PCI, virtio, Xen, ENA); else the kernel's link kind. sysfs shows what it can (type, bridge/,
# bonding/, tun_flags, uevent DEVTYPE); veth, macvlan and OVS internal ports look alike there
# (no DEVTYPE in the kernel), so for devices without a bus device rtnetlink says (`ip -d -j link`).
link_kind() {
  local dir=$1 line type
  type=$(cat "$dir/type" 2>/dev/null) || type=unknown
  [ "$type" = 1 ] || { echo "arphrd-$type"; return 0; } # not Ethernet: gre, ipip, sit, tun, lo, ...
  [ -d "$dir/bridge" ] && { echo bridge; return 0; }
  [ -d "$dir/bonding" ] && { echo bond; return 0; }
  [ -e "$dir/tun_flags" ] && { echo tun; return 0; } # tap (OVS's userspace datapath ports too)
  if [ -r "$dir/uevent" ]; then
    while IFS= read -r line; do # DEVTYPE: bridge, bond, vlan, vxlan, geneve, ... (wlan is a NIC)
      [[ $line == DEVTYPE=* && $NOT_NIC_KINDS == *" ${line#DEVTYPE=} "* ]] && { echo "${line#DEVTYPE=}"; return 0; }
    done <"$dir/uevent"
  fi
  [ -e "$dir/device" ] && { echo nic; return 0; }
  line=$(ip -d -j link show dev "${dir##*/}" 2>/dev/null | grep -o '"info_kind":"[^"]*"') || line=
  line=${line#*:}
  echo "${line//\"/}"
}

# nic_by_mac MAC : the name of the one NIC with that MAC (found, not guessed: Nitro says ens6).
# Devices of a kind in NOT_NIC_KINDS are skipped; none or several left: a message, status 1.
nic_by_mac() {
  local dir kind mac=${1,,} skipped='' found=()
  for dir in "$NET_SYSFS"/*; do
    [ "$(cat "$dir/address" 2>/dev/null)" = "$mac" ] || continue
    kind=$(link_kind "$dir")
    if [[ $kind == arphrd-* || $NOT_NIC_KINDS == *" $kind "* ]]; then
      skipped+="${skipped:+, }${dir##*/} ($kind)"
    else
      found+=("${dir##*/}")
    fi
  done
  ((${#found[@]} != 1)) || { echo "${found[0]}"; return 0; }
  if ((${#found[@]} > 1)); then
    log "several NICs have the MAC $mac: ${found[*]}"
  else
    log "no NIC has the MAC $mac${skipped:+ (not NICs: $skipped)}"
  fi
  return 1
}

ip_to_int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  echo $(((10#$a << 24) | (10#$b << 16) | (10#$c << 8) | 10#$d))
}
# in_cidr IP CIDR : IP lies inside CIDR.
in_cidr() {
  local ip net bits mask
  ip=$(ip_to_int "$1") net=$(ip_to_int "${2%/*}") bits=${2#*/}
  mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
  (((ip & mask) == (net & mask)))
}
