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
# Sourced (tests/test_compute_steps.py), it only defines its settings and functions.
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
PACKAGES=(git jq iproute2 procps python3 sudo) # procps: ps and pkill, for install-compute (lib.sh run_stack)
declare -A NEEDS=() # none of its commands checked after the install (lib.sh install_packages)

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

apply() {
  read_params
  [ -z "$ROOT" ] || die "apply changes the running host; OOA_ROOT is only for config/unconfig"
  ip -o -4 addr show | grep -qF " $NODE_IP/" || die "this machine does not hold NODE_IP $NODE_IP: wrong host?"
  wait_for_cloud_init
  write_config
  hostname "$NODE_HOSTNAME"
  log "host name: $NODE_HOSTNAME ($NODE_IP)"
  install_packages
  ensure_stack_user
  save_params "$STATE/params" NODE_HOSTNAME NODE_IP
  log "done"
}

remove() {
  [ -z "$ROOT" ] || die "remove changes the running host; OOA_ROOT is only for config/unconfig"
  if [ -s "$STATE/hostname.orig" ]; then hostname "$(head -n1 "$STATE/hostname.orig")"; fi
  remove_config
  remove_stack_user
  rm -rf "$STATE"
  log "removed"
}

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
prepare_main "$@"
