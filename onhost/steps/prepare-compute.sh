#!/usr/bin/env bash
# prepare-compute: a compute node before DevStack (no provider NIC: only the controller has one).
#
#   prepare-compute.sh apply     checks the node holds NODE_IP; waits for cloud-init; names the host
#                                NODE_HOSTNAME (Nova's compute host, Neutron's agent host) now and after
#                                reboots (cloud-init's preserve_hostname, an /etc/hosts line); installs
#                                the packages later steps use; creates the `stack` user DevStack runs as.
#   prepare-compute.sh remove    undoes the files, the user and the sudoers entry it created.
#   prepare-compute.sh config    only the file part of apply (hostname files) under $OOA_ROOT;
#   prepare-compute.sh unconfig  only the file part of remove. (apply/remove call them; tests run them.)
#
# Parameters (KEY=value lines on stdin, apply and config): NODE_HOSTNAME NODE_IP.
# Entry points: apply, remove, config, unconfig. State: $OOA_STATE/prepare-compute/.
set -euo pipefail
OOA_STEP=prepare-compute
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=${OOA_ROOT:-} # the files are written under $ROOT (empty: the real root)
STATE=$OOA_STATE/prepare-compute
HOSTS=$ROOT/etc/hosts
HOSTNAME_FILE=$ROOT/etc/hostname
CLOUD_INIT_CFG=$ROOT/etc/cloud/cloud.cfg.d/99-openstack-on-aws-hostname.cfg
MARK="# openstack-on-aws compute node"
SUDOERS=/etc/sudoers.d/50-openstack-on-aws-stack
STACK_HOME=/opt/stack
PACKAGES=(git jq iproute2 python3 sudo)

# read_params: NODE_HOSTNAME and NODE_IP from stdin, checked.
read_params() {
  load_params - NODE_HOSTNAME NODE_IP
  [[ $NODE_HOSTNAME =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
    die "parameter NODE_HOSTNAME is not a host name: '$NODE_HOSTNAME'"
  need is_ipv4 NODE_IP
}

# write_config: the host name files; each rewritten whole, so twice = once.
write_config() {
  install -d -m 0700 "$STATE"
  install -d -m 0755 "$(dirname "$CLOUD_INIT_CFG")"
  if [ ! -e "$STATE/hostname.orig" ] && [ ! -e "$STATE/hostname.absent" ]; then
    if [ -f "$HOSTNAME_FILE" ]; then cp -p "$HOSTNAME_FILE" "$STATE/hostname.orig"; else touch "$STATE/hostname.absent"; fi
  fi
  printf '%s\n' "$MARK: keep the host name Nova and Neutron know this node by" \
    "preserve_hostname: true" >"$CLOUD_INIT_CFG"
  printf '%s\n' "$NODE_HOSTNAME" >"$HOSTNAME_FILE"
  { grep -vF "$MARK" "$HOSTS" 2>/dev/null || true; printf '%s %s %s\n' "$NODE_IP" "$NODE_HOSTNAME" "$MARK"; } >"$HOSTS.tmp"
  chmod 0644 "$HOSTS.tmp"
  mv "$HOSTS.tmp" "$HOSTS"
}

# remove_config: the host name files back as they were.
remove_config() {
  rm -f "$CLOUD_INIT_CFG"
  if [ -f "$HOSTS" ]; then
    { grep -vF "$MARK" "$HOSTS" || true; } >"$HOSTS.tmp"
    chmod 0644 "$HOSTS.tmp"
    mv "$HOSTS.tmp" "$HOSTS"
  fi
  if [ -f "$STATE/hostname.orig" ]; then
    cp -p "$STATE/hostname.orig" "$HOSTNAME_FILE"
  elif [ -f "$STATE/hostname.absent" ]; then
    rm -f "$HOSTNAME_FILE"
  fi
}

# wait_for_cloud_init: the instance has finished its first boot.
wait_for_cloud_init() {
  command -v cloud-init >/dev/null || return 0
  log "waiting for cloud-init to finish"
  local rc=0
  cloud-init status --wait >/dev/null || rc=$?
  ((rc == 0 || rc == 2)) || die "cloud-init failed (status $rc): see /var/log/cloud-init.log"
}

# ensure_stack_user: the `stack` user with password-less sudo (DevStack's requirement).
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

apply() {
  read_params
  [ -z "$ROOT" ] || die "apply changes the running host; OOA_ROOT is only for config/unconfig"
  ip -o -4 addr show | grep -qF " $NODE_IP/" || die "this machine does not hold NODE_IP $NODE_IP: wrong host?"
  wait_for_cloud_init
  write_config
  hostname "$NODE_HOSTNAME"
  log "host name: $NODE_HOSTNAME ($NODE_IP)"
  log "installing packages: ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -qq -o DPkg::Lock::Timeout=600 update
  apt-get -qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null
  ensure_stack_user
  save_params "$STATE/params" NODE_HOSTNAME NODE_IP
  log "done"
}

remove() {
  [ -z "$ROOT" ] || die "remove changes the running host; OOA_ROOT is only for config/unconfig"
  if [ -s "$STATE/hostname.orig" ]; then hostname "$(head -n1 "$STATE/hostname.orig")"; fi
  remove_config
  rm -f "$SUDOERS"
  if [ -f "$STATE/created-user" ]; then
    pkill -u stack || true
    userdel --remove stack 2>/dev/null || userdel stack
  fi
  rm -rf "$STATE"
  log "removed"
}

case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  config) read_params && write_config ;;
  unconfig) remove_config && rm -rf "$STATE" ;;
  *) die "usage: $0 apply|remove|config|unconfig (parameters on stdin)" ;;
esac
