# shellcheck shell=bash
# Helpers shared by the remote steps; sourced, never run. Installed beside the step scripts.
# Sections: parameters and checks (all steps); re-apply helpers (gateway-mac, port-forwards); cloud
# helpers (external-gateway, smoke: the CLI's reads side by side); host
# helpers (prepare-host, install-openstack, external-gateway); preparation helpers (prepare-host,
# prepare-compute); DevStack helpers (install-openstack, install-compute). A change here changes
# every step's command text (each carries lib.sh's hash, onhost/remote.py): every step runs again.

# Where steps keep their state: saved parameters and what `remove` must undo (root only).
OOA_STATE=${OOA_STATE:-/var/lib/openstack-on-aws}
# Where the re-apply units go (the local administrator's unit folder).
UNIT_DIR=/etc/systemd/system
# There when systemd runs the host (a variable so tests can keep this machine's systemd out).
SYSTEMD_RUN_DIR=${SYSTEMD_RUN_DIR:-/run/systemd/system}

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
# mask [SECRET] : stdin to stdout with SECRET (default: the admin password) replaced by ********
# (an empty SECRET replaces nothing).
mask() {
  local secret=${1-$ADMIN_PASSWORD} line
  while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "${line//"$secret"/********}"; done
}

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

# The re-applied steps define `missing`: what of their targets (the router namespace, its devices)
# is not there yet, in one line; nothing when all are.

# seconds NAME DEFAULT : the whole seconds in the environment variable NAME (DEFAULT when unset).
seconds() {
  local value=${!1:-$2}
  [[ $value =~ ^[0-9]{1,3}$ ]] || die "$1 is not a number of seconds: '$value'"
  echo $((10#$value))
}

# await_targets : apply's wait for `missing` to print nothing. Neutron's API has a router before
# its L3 agent builds it: the agent fetches it from neutron-server (an RPC call), then makes the
# namespace and plugs the devices, seconds later as a rule. On a busy host neutron-server may not
# answer that call within oslo.messaging's rpc_response_timeout (60 s); the agent fetches again
# when the update comes round in its queue, so the wait (OOA_ROUTER_WAIT, default 120 s) covers one
# such time-out and the retry. Logs what it waits for at the start, when that changes and every
# 10 s; dies naming what is still missing and how long it waited.
await_targets() {
  local bound problem last='' start=$SECONDS next=0
  bound=$(seconds OOA_ROUTER_WAIT 120)
  while :; do
    problem=$(missing)
    [ -n "$problem" ] || return 0
    # said before the bound is checked: a first check slower than the bound still says what it waited for
    if [ "$problem" != "$last" ] || ((SECONDS - start >= next)); then
      log "waiting up to $bound s for Neutron's L3 agent: $problem"
      last=$problem next=$((SECONDS - start + 10))
    fi
    ((SECONDS - start < bound)) || die "$problem (waited $((SECONDS - start)) s for Neutron's L3 agent)"
    sleep 1
  done
}

# present : reapply's check: every target is there; else log what it waits for and return 1
# (the timer's next run tries again).
present() {
  local problem
  problem=$(missing)
  [ -z "$problem" ] || { log "waiting: $problem"; return 1; }
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

# install_reapply_units STEP [BEFORE] : where systemd runs, a timer re-runs `<this dir>/STEP.sh
# reapply` 5 s after boot, after Neutron's L3 agent starts, and every 10 s (a run before the agent
# has made the router finds nothing to do and the next one comes 10 s later: an early first run
# shortens the outage after a reboot, a late one only adds to it): the router namespace or its
# gateway port can be re-created at any time, and until the next run the VPC drops the tenants'
# traffic, so the period is the outage; a run that finds nothing to do is short (the lab prints how
# long). With BEFORE (a unit), the run at boot is before BEFORE starts instead (the service itself
# is enabled): a host firewall in place before the server it guards answers. Without systemd it
# does nothing.
install_reapply_units() {
  local step=$1 before=${2:-} unit=openstack-on-aws-$1-reapply dir file boot=''
  local order="After=network-online.target openvswitch-switch.service devstack@q-l3.service" units=("$unit.timer")
  file=$UNIT_DIR/$unit
  [ -d "$SYSTEMD_RUN_DIR" ] || { log "no systemd: re-apply unit not installed"; return 0; }
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if [ -n "$before" ]; then
    order="Before=$before" boot=$'\n\n[Install]\nWantedBy=multi-user.target'
    units+=("$unit.service")
  fi
  cat >"$file.service.tmp" <<UNIT
[Unit]
Description=openstack-on-aws: re-apply $step after a reboot or a re-created router namespace
$order

[Service]
Type=oneshot
Environment=OOA_STATE=$OOA_STATE
ExecStart=$dir/$step.sh reapply$boot
UNIT
  cat >"$file.timer.tmp" <<UNIT
[Unit]
Description=openstack-on-aws: re-apply $step periodically

[Timer]
OnBootSec=5s
OnUnitActiveSec=10s
AccuracySec=1s

[Install]
WantedBy=timers.target
UNIT
  # A reload of systemd's configuration is the slow part of this (140-190 ms on the lab's small
  # host, more beside DevStack's units): an apply that changes nothing reloads nothing.
  if cmp -s "$file.service.tmp" "$file.service" && cmp -s "$file.timer.tmp" "$file.timer" &&
    systemctl --quiet is-enabled "${units[@]}" && systemctl --quiet is-active "$unit.timer"; then
    rm -f "$file.service.tmp" "$file.timer.tmp"
    return 0
  fi
  mv "$file.service.tmp" "$file.service"
  mv "$file.timer.tmp" "$file.timer"
  # enable reloads the configuration (new or changed files included); then the timer starts (and
  # starts the service, without waiting for it: a step holding its lock must not wait for reapply)
  if ! systemctl enable "${units[@]}" >/dev/null 2>&1 || ! systemctl start "$unit.timer"; then
    die "cannot enable ${units[*]}"
  fi
}

# remove_reapply_units STEP : undo install_reapply_units (nothing if it was never installed). Called
# under the step's lock: a run the timer started may be waiting for it, and would fail once the
# state is gone and stay listed as a failed unit, so the timer stops first, then that run.
remove_reapply_units() {
  local unit=openstack-on-aws-$1-reapply file
  file=$UNIT_DIR/$unit
  [ -e "$file.timer" ] || [ -e "$file.service" ] || return 0
  # one reload, once the files are gone (disable would reload before that too)
  if [ -d "$SYSTEMD_RUN_DIR" ]; then
    systemctl disable --now --no-reload "$unit.timer" "$unit.service" >/dev/null 2>&1 || true
    systemctl reset-failed "$unit.service" >/dev/null 2>&1 || true
  fi
  rm -f "$file.timer" "$file.service"
  if [ -d "$SYSTEMD_RUN_DIR" ]; then systemctl daemon-reload; fi
}

# --- cloud helpers (external-gateway, smoke) ---

declare -A LISTINGS=() # listing's jobs: name -> pid

# listing NAME ARGS... : start `openstack ARGS...` in the background, its output into $WORK/NAME:
# reads that do not depend on each other start side by side (each call is a CLI start-up of 1-2 s:
# one of wall time instead of several). The caller's environment says which cloud. A simple
# command, not a function: the job's pid (in LISTINGS) is the CLI's own, so stop_listings reaches it.
listing() {
  local name=$1
  shift
  openstack "$@" </dev/null >"$WORK/$name" 2>"$WORK/$name.err" &
  LISTINGS[$name]=$!
}
# listed NAME VAR : wait for that listing (a child of this shell); its output into VAR, or its
# error on stderr and status 1.
listed() {
  local rc=0
  wait "${LISTINGS[$1]}" || rc=$?
  cat "$WORK/$1.err" >&2
  ((rc == 0)) || return 1
  printf -v "$2" '%s' "$(cat "$WORK/$1")"
}
# stop_listings : end the listings still running (the step stopped early).
stop_listings() {
  local pid
  for pid in "${LISTINGS[@]}"; do kill "$pid" 2>/dev/null || true; done
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

# --- preparation helpers (prepare-host, prepare-compute) ---
# They use the step's STATE (its state directory), PACKAGES (what apt installs) and NEEDS (this
# step's own commands that a minimal image may lack, each with the package that has it).

SUDOERS=/etc/sudoers.d/50-openstack-on-aws-stack
STACK_HOME=/opt/stack

# wait_for_cloud_init : until cloud-init is done (it runs apt and writes netplan too).
wait_for_cloud_init() {
  command -v cloud-init >/dev/null || return 0
  log "waiting for cloud-init to finish"
  local rc=0
  cloud-init status --wait >/dev/null || rc=$?
  # 2: finished with recoverable errors (degraded) - the host is usable.
  ((rc == 0 || rc == 2)) || die "cloud-init failed (status $rc): see /var/log/cloud-init.log"
}

# install_packages : PACKAGES (apt; nothing fetched when dpkg has every one installed already: a
# re-run, an image that has them, a host without a mirror), then check that this step's own
# commands (NEEDS) are there.
install_packages() {
  local cmd missing
  missing=$(missing_packages "${PACKAGES[@]}")
  if [ -z "$missing" ]; then
    log "packages already installed: ${PACKAGES[*]}"
  else
    log "installing packages: ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -qq -o DPkg::Lock::Timeout=600 update
    apt-get -qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null
  fi
  for cmd in "${!NEEDS[@]}"; do
    command -v "$cmd" >/dev/null || die "$cmd not found after installing ${NEEDS[$cmd]}: this step needs it"
  done
}

# missing_packages PACKAGE... : those dpkg does not have installed, one a line.
missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) || status=
    [ "$status" = installed ] || echo "$pkg"
  done
}

# ensure_stack_user : the `stack` user DevStack runs as, with passwordless sudo.
ensure_stack_user() {
  if ! id stack >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "$STACK_HOME" --shell /bin/bash stack
    touch "$STATE/created-user"
  fi
  chmod 0755 "$STACK_HOME"
  (umask 0227 && printf 'stack ALL=(ALL) NOPASSWD: ALL\n' >"$SUDOERS.tmp")
  visudo -cqf "$SUDOERS.tmp" || die "invalid sudoers entry"
  mv "$SUDOERS.tmp" "$SUDOERS"
}

# remove_stack_user : undo ensure_stack_user (the user only if this step created it).
remove_stack_user() {
  rm -f "$SUDOERS"
  if [ -f "$STATE/created-user" ]; then
    pkill -u stack || true
    userdel --remove stack 2>/dev/null || userdel stack
  fi
}

# prepare_main ACTION : the entry points both prepare steps have: apply, remove, and config /
# unconfig (only the file part, under $OOA_ROOT: the step's read_params + write_config / remove_config).
prepare_main() {
  case ${1:-} in
    apply) apply ;;
    remove) remove ;;
    config) read_params && write_config ;;
    unconfig) remove_config && rm -rf "$STATE" ;;
    *) die "usage: $0 apply|remove|config|unconfig (parameters on stdin)" ;;
  esac
}

# --- DevStack helpers (install-openstack, install-compute) ---
# They use the step's STATE, its parameters BRANCH and ADMIN_PASSWORD, and STACK_TIMEOUT (each
# step's own: within its Pulumi step's timeout). An install or a remove holds $STATE.lock
# (lock_devstack): never two stack.sh at once, and a newer run stops an older one still running.

DEVSTACK_REPO=${DEVSTACK_REPO:-https://opendev.org/openstack/devstack}
DEVSTACK=/opt/stack/devstack
# stack.sh (stable/2026.1 and master) with LOGFILE set logs to $LOGFILE.<time>, its phase lines
# (echo_summary) to $LOGFILE.<time>.summary.<time> through tools/outfilter.py, which puts
# "YYYY-mm-dd HH:MM:SS.mmm | " in front, and links $LOGFILE and $LOGFILE.summary to this run's files.
STACK_LOG=/opt/stack/logs/stack.sh.log # LOGFILE in local.conf (a link to the newest log)
STACK_SUMMARY=$STACK_LOG.summary       # the link to the newest summary log
AS_STACK=(sudo -n -u stack -H)         # how stack.sh is run (as the `stack` user)
PROGRESS_LINES=200                     # summary lines shown at most (a run writes about 30)
PROGRESS_POLL=2                        # seconds between looks at the summary log
TAIL_LINES=80
STOP_GRACE=5     # seconds between SIGTERM and SIGKILL for what a stack.sh run leaves running
UNIT_GRACE=10    # seconds DevStack's services get to stop on SIGTERM before SIGKILL
LOCK_WAIT=600    # seconds a run waits for another run's lock (stopping its stack.sh meanwhile)
CLEAN_TIMEOUT=15m # for unstack.sh and clean.sh (their services are stopped before they run)

# check_devstack_params : BRANCH is a DevStack branch, ADMIN_PASSWORD one DevStack can take.
check_devstack_params() {
  [[ $BRANCH =~ ^(master|stable/20[0-9]{2}\.[12])$ ]] || die "parameter BRANCH is not a DevStack branch: '$BRANCH'"
  # DevStack puts the password unquoted into URLs and config files: letters, digits, _ and - only.
  [[ $ADMIN_PASSWORD =~ ^[A-Za-z0-9_-]{12,128}$ ]] ||
    die "parameter ADMIN_PASSWORD must be 12-128 letters, digits, '_' or '-' (value not shown)"
}

# decode_local_conf NAME : the parameter LOCAL_CONF (base64) decoded into the variable NAME; dies
# unless it is a DevStack local.conf.
decode_local_conf() {
  local text
  text=$(printf '%s' "$LOCAL_CONF" | base64 -d 2>/dev/null) || die "parameter LOCAL_CONF is not base64"
  [[ $text == *"[[local|localrc]]"* ]] || die "parameter LOCAL_CONF is not a DevStack local.conf"
  printf -v "$1" '%s' "$text"
}

# need_placeholders CONF PLACEHOLDER... : die unless CONF has each PLACEHOLDER.
need_placeholders() {
  local conf=$1 placeholder
  shift
  for placeholder in "$@"; do
    [[ $conf == *"$placeholder"* ]] || die "parameter LOCAL_CONF lacks the placeholder $placeholder"
  done
}

# libvirt_type : kvm where /dev/kvm exists, else qemu (LIBVIRT_TYPE in local.conf).
libvirt_type() { if [ -e /dev/kvm ]; then echo kvm; else echo qemu; fi; }
# libvirt_cpu_mode TYPE : the guests' CPU mode for libvirt TYPE (LIBVIRT_CPU_MODE; local.conf says why).
libvirt_cpu_mode() { if [ "$1" = kvm ]; then echo host-passthrough; else echo custom; fi; }
# fill_libvirt CONF TYPE : CONF with its libvirt placeholders filled for TYPE, on stdout.
fill_libvirt() {
  local conf=${1//@LIBVIRT_TYPE@/$2}
  printf '%s\n' "${conf//@LIBVIRT_CPU_MODE@/$(libvirt_cpu_mode "$2")}"
}

# devstack_stamp KEY : what a successful run records: a hash of BRANCH and KEY, what the install
# depends on (the filled local.conf; install-openstack leaves out what a new instance changes).
devstack_stamp() { printf '%s\n%s\n' "$BRANCH" "$1" | sha256sum | cut -d' ' -f1; }

# devstack_is_current KEY [CONF] : the last successful run used this BRANCH and KEY. A stamp of
# CONF (the whole filled local.conf, which older versions recorded) counts too, recorded anew as KEY's.
devstack_is_current() {
  local recorded
  recorded=$(cat "$STATE/stamp" 2>/dev/null) || return 1
  [ "$recorded" != "$(devstack_stamp "$1")" ] || return 0
  [ -n "${2:-}" ] && [ "$recorded" = "$(devstack_stamp "$2")" ] || return 1
  devstack_stamp "$1" >"$STATE/stamp"
}

# install_devstack CONF [KEY] : DevStack at BRANCH in $DEVSTACK with CONF as its local.conf, stack.sh
# run (run_stack); the caller holds the lock (lock_devstack, before its devstack_is_current: a run
# holding it may be unstacking a stamped install). A previous run is unstacked first: one with other
# settings, and one that failed or was interrupted (stack.sh over half-started services fails in
# other ways). The stamp of BRANCH and KEY (default CONF) is recorded once stack.sh succeeded (and
# is gone meanwhile).
install_devstack() {
  local conf=$1 stamp
  stamp=$(devstack_stamp "${2:-$1}")
  if [ -d "$DEVSTACK/.git" ]; then
    if [ -f "$STATE/stamp" ]; then
      unstack_devstack "settings changed: unstacking the previous run first"
    else
      unstack_devstack "the previous install did not finish (failed or interrupted): unstacking it first"
    fi
    sudo -n -u stack -H git -C "$DEVSTACK" fetch -q origin "$BRANCH"
    sudo -n -u stack -H git -C "$DEVSTACK" checkout -q --force FETCH_HEAD
  else
    sudo -n -u stack -H git clone -q --branch "$BRANCH" "$DEVSTACK_REPO" "$DEVSTACK"
  fi
  (umask 077 && printf '%s\n' "$conf" >"$DEVSTACK/local.conf")
  chown stack: "$DEVSTACK/local.conf"
  rm -f "$STATE/stamp"
  run_stack "$DEVSTACK"
  printf '%s\n' "$stamp" >"$STATE/stamp"
}

# show_progress PID : until PID ends, show each new complete line of $STACK_SUMMARY as
# "[<step>] +MM:SS <line>" (time since the call; DevStack's own timestamp dropped),
# masked, at most PROGRESS_LINES of them. Reads the file once more after PID ended. (stack.sh
# writes whole lines there when its stdout is not a terminal - here a pipe - else a spinner.)
show_progress() {
  local pid=$1 start now seen=0 shown=0 n line ended=
  printf -v start '%(%s)T' -1
  while :; do
    kill -0 "$pid" 2>/dev/null || ended=1
    if [ -r "$STACK_SUMMARY" ]; then
      n=0
      while IFS= read -r line; do # a last line without its newline yet waits for the next look
        ((++n > seen)) || continue
        ((++shown <= PROGRESS_LINES)) || { ((shown > PROGRESS_LINES + 1)) || log "(more in $STACK_SUMMARY)"; continue; }
        [[ $line =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}\ [0-9:.]+\ \|\ (.*)$ ]] && line=${BASH_REMATCH[1]}
        printf -v now '%(%s)T' -1
        printf '[%s] +%02d:%02d %s\n' "$OOA_STEP" $(((now - start) / 60)) $(((now - start) % 60)) \
          "${line//"$ADMIN_PASSWORD"/********}" >&2
      done <"$STACK_SUMMARY"
      seen=$n
    fi
    [ -z "$ended" ] || return 0
    sleep "$PROGRESS_POLL" 9>&- # no lock descriptor: see run_stack
  done
}

# run_stack DIR : run DIR/stack.sh as `stack`, showing its progress (show_progress). Its own
# output (xtrace until its logging starts, the summary lines again, the closing banner with the
# password) is not shown: it is kept masked, for a failure before the log. On failure: the tail of
# $STACK_LOG (or of that output), then die.
# stack.sh runs in a session of its own: once it has ended, what it left running there (DevStack's
# background jobs, its log filters: they hold its output open) is stopped (end_session), so the
# step ends with stack.sh, whatever holds its output. The session is recorded in $STATE/session
# for a later run, should this one be killed meanwhile (stop_stack).
run_stack() {
  local dir=$1 rc=0 pid out filter ender i
  # The links to the previous run's log and summary go: stack.sh makes new ones once it logs.
  rm -f "$STACK_LOG" "$STACK_SUMMARY"
  log "running stack.sh (timeout $STACK_TIMEOUT); full log: $STACK_LOG"
  # The helpers keep no lock descriptor: should this run be killed, a later one gets the lock.
  exec {out}> >(exec 9>&-; mask >"$STATE/output")
  filter=$!
  # setsid: no terminal in the new session, so sudo runs the command without a pty, in it too.
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash (DIR as its argument)
  setsid timeout --kill-after=2m "$STACK_TIMEOUT" "${AS_STACK[@]}" bash -c 'cd "$1" && ./stack.sh' stack.sh "$dir" \
    </dev/null >&"$out" 2>&1 9>&- &
  pid=$!
  exec {out}>&-
  printf '%s %s %s\n' "$pid" "$(proc_start "$pid")" "$(cat /proc/sys/kernel/random/boot_id)" >"$STATE/session.tmp"
  mv "$STATE/session.tmp" "$STATE/session"
  (exec 9>&-; end_session "$pid") &
  ender=$!
  show_progress "$ender"
  wait "$ender" || true
  wait "$pid" || rc=$?
  rm -f "$STATE/session"
  # The filter ends with the last writer; one outside the session (a daemon that kept the output)
  # would hold it: bounded.
  for ((i = 0; i < 50; i++)); do kill -0 "$filter" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$filter" 2>/dev/null; then
    log "stack.sh's output is held open by a process outside its session: its end may be missing below"
    kill "$filter" 2>/dev/null || true
  fi
  if ((rc != 0)); then
    ((rc != 124)) || log "stack.sh did not finish within $STACK_TIMEOUT"
    if [ -e "$STACK_LOG" ]; then
      log "stack.sh failed ($rc); last $TAIL_LINES lines of $STACK_LOG:"
      tail -n "$TAIL_LINES" "$STACK_LOG" | mask >&2 || true
      rm -f "$STATE/output"
      die "DevStack install failed; see $STACK_LOG on the host"
    fi
    log "stack.sh failed ($rc) before it started its log; its last output:"
    tail -n "$TAIL_LINES" "$STATE/output" >&2
    rm -f "$STATE/output"
    die "DevStack install failed before it started its log"
  fi
  rm -f "$STATE/output"
}

# end_session SID : once the session's leader SID (stack.sh's) has ended and the rest has settled
# (settle_session), stop what is left of the session, naming it.
end_session() {
  local sid=$1 left
  while kill -0 "$sid" 2>/dev/null; do sleep 0.2; done
  settle_session "$sid"
  left=$(session_procs "$sid")
  [ -n "$left" ] || return 0
  log "stack.sh has ended; stopping what it left running: $left"
  kill_session "$sid"
}

# settle_session SID : wait for session SID to end by itself while stack.sh's logs still grow: its
# log filters end once they have written what it wrote last. At most 10 s, and 1 s of no growth.
settle_session() {
  local i quiet=0 sizes last=
  for ((i = 0; i < 100 && quiet < 10; i++)); do
    session_alive "$1" || return 0
    sizes=$(stat -L -c %s "$STACK_LOG" "$STACK_SUMMARY" "$STATE/output" 2>/dev/null) || true
    if [ "$sizes" = "$last" ]; then ((++quiet)); else quiet=0 last=$sizes; fi
    sleep 0.1
  done
}

# proc_start PID : when PID started (clock ticks since boot: field 22 of /proc/PID/stat).
proc_start() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  read -r -a fields <<<"${stat##*) }" # after the command name: fields 3 onwards
  echo "${fields[19]}"
}

# session_procs SID : the session's live processes (zombies are dead: not counted), as
# "name xCOUNT, ..."; nothing when none is left.
session_procs() {
  { ps -o stat=,comm= -s "$1" || true; } | awk '$1 !~ /^Z/ {n[$2]++} END {for (c in n) {printf "%s%s x%d", s, c, n[c]; s = ", "}}'
}
session_alive() { [ -n "$(session_procs "$1")" ]; }

# kill_session SID : SIGTERM to every process of session SID, SIGKILL to those left after
# STOP_GRACE seconds; returns once none is left (bounded: survivors are named).
kill_session() {
  local sid=$1 i
  pkill -TERM -s "$sid" || return 0
  for ((i = 0; i < STOP_GRACE * 10; i++)); do
    session_alive "$sid" || return 0
    sleep 0.1
  done
  pkill -KILL -s "$sid" || return 0
  for ((i = 0; i < 50; i++)); do
    session_alive "$sid" || return 0
    sleep 0.1
  done
  log "processes of stack.sh's session $sid survive SIGKILL: $(session_procs "$sid")"
}

# stop_stack WHY : stop the stack.sh session $STATE/session records, if it still runs (logs WHY).
# Only that session: same boot, and its leader gone or the one recorded (a number is not reused
# while a session has it, but once every process of a session ended it can be anyone's).
stop_stack() {
  local sid start boot
  read -r sid start boot 2>/dev/null <"$STATE/session" || return 0
  [[ $sid =~ ^[1-9][0-9]*$ && $boot == "$(cat /proc/sys/kernel/random/boot_id)" ]] || return 0
  [ ! -e "/proc/$sid" ] || [ "$(proc_start "$sid")" = "$start" ] || return 0
  session_alive "$sid" || return 0
  log "$1: stopping it (session $sid)"
  kill_session "$sid"
}

# lock_devstack : hold this step's lock ($STATE.lock, fd 9) for an install or a remove. The newer
# run wins: an engine killed mid-install leaves its apply (until it next writes to the gone SSH
# session) and stack.sh running on the host. While another run holds the lock, the stack.sh it
# runs is stopped (that run then fails and lets go); with the lock, a stack.sh still running from
# a run that is gone is stopped.
lock_devstack() {
  local waited=0
  install -d -m 0700 "$STATE"
  exec 9>"$STATE.lock"
  if ! flock -n 9; then
    log "another run of $OOA_STEP holds $STATE.lock: waiting for it (at most ${LOCK_WAIT}s), stopping its stack.sh"
    until flock -w 1 9; do
      stop_stack "the other run's stack.sh is running"
      ((++waited < LOCK_WAIT)) || die "another run of $OOA_STEP still holds $STATE.lock after ${LOCK_WAIT}s"
    done
  fi
  stop_stack "stack.sh of an interrupted run is still running"
  rm -f "$STATE/session"
}

# running_units UNIT... : those of the UNITs that are still active or changing state.
running_units() {
  local active i=0
  while IFS= read -r active; do
    ((++i))
    [[ $active =~ ^(active|activating|deactivating|reloading|refreshing)$ ]] && printf '%s\n' "${!i}"
  done < <(systemctl is-active "$@")
  return 0
}

# stop_devstack_units : stop DevStack's services (its devstack@ units) before unstack.sh does:
# all at once, while RabbitMQ and the database still run (clean.sh's unstack.sh --all stops those
# before Neutron, and the OVS agent then ignores SIGTERM for its whole 300 s stop timeout). What
# still runs after UNIT_GRACE seconds gets SIGKILL, and so do the processes KillMode=process leaves
# behind a unit's main process (nova-conductor's workers). unstack.sh then finds them stopped.
# Without systemd: nothing.
stop_devstack_units() {
  local units=() stuck='' i
  [ -d "$SYSTEMD_RUN_DIR" ] || return 0
  mapfile -t units < <(systemctl list-units --all --plain --no-legend --type=service 'devstack@*' | cut -d' ' -f1)
  ((${#units[@]})) || return 0
  log "stopping DevStack's services (${#units[@]} devstack@ units; SIGKILL after ${UNIT_GRACE}s)"
  systemctl stop --no-block "${units[@]}"
  for ((i = 0; i < UNIT_GRACE * 5; i++)); do
    stuck=$(running_units "${units[@]}")
    [ -n "$stuck" ] || break
    sleep 0.2
  done
  [ -z "$stuck" ] || log "still running after ${UNIT_GRACE}s, SIGKILL: ${stuck//$'\n'/ }"
  systemctl kill --kill-who=all --signal=SIGKILL "${units[@]}" >/dev/null 2>&1 || true
  for ((i = 0; i < 50; i++)); do
    [ -n "$(running_units "${units[@]}")" ] || break
    sleep 0.1
  done
  systemctl reset-failed "${units[@]}" >/dev/null 2>&1 || true
}

# devstack_script NAME : DevStack's NAME (unstack.sh, clean.sh) as `stack`, bounded; its errors are
# logged, not fatal (what it could not undo, the next install or remove meets again).
devstack_script() {
  timeout "$CLEAN_TIMEOUT" sudo -n -u stack -H bash -c "cd $DEVSTACK && ./$1" </dev/null >/dev/null 2>&1 ||
    log "$1 reported errors (continuing)"
}

# unstack_devstack WHY : logs WHY; DevStack's services stopped (stop_devstack_units), unstack.sh.
unstack_devstack() {
  log "$1"
  stop_devstack_units
  devstack_script unstack.sh
}

# clean_devstack : under the lock, DevStack's services stopped (stop_devstack_units), then its
# clean.sh (unstack + what stack.sh installed); then the clone, this step's state and its lock go
# (the step's `remove`).
clean_devstack() {
  lock_devstack
  if [ -x "$DEVSTACK/clean.sh" ]; then
    stop_devstack_units
    log "running DevStack's clean.sh"
    devstack_script clean.sh
  fi
  rm -rf "$DEVSTACK" "$STATE" "$STATE.lock"
  log "removed"
}
