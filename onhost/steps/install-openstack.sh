#!/usr/bin/env bash
# install-openstack: DevStack at a pinned branch with the local.conf rendered by
# components/localconf.py (ML2/OVS + the L3 agent, the provider NIC on br-ex).
#
#   install-openstack.sh apply   fills the local.conf placeholders (admin password from stdin,
#                                LIBVIRT_TYPE kvm where /dev/kvm exists else qemu, PUBLIC_INTERFACE =
#                                the NIC with PROVIDER_MAC), clones DevStack at BRANCH and runs
#                                stack.sh as `stack`. Progress: stack.sh's summary lines; on failure
#                                the tail of the full log (passwords masked). Does nothing when the
#                                filled local.conf and the branch are what the last successful run used.
#   install-openstack.sh remove  runs DevStack's clean.sh (unstack + remove what stack.sh installed)
#                                and deletes the clone and this step's state.
#
# Parameters (KEY=value lines on stdin): BRANCH, LOCAL_CONF (base64), ADMIN_PASSWORD, PROVIDER_MAC.
set -euo pipefail
OOA_STEP=install-openstack
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/install-openstack
DEVSTACK_REPO=${DEVSTACK_REPO:-https://opendev.org/openstack/devstack}
DEVSTACK=/opt/stack/devstack
STACK_LOG=/opt/stack/logs/stack.sh.log # LOGFILE in local.conf (a link to the newest log)
STACK_TIMEOUT=${STACK_TIMEOUT:-80m}    # within the Pulumi step's 90-minute timeout
PROGRESS_LINES=400                     # stack.sh summary lines streamed at most
TAIL_LINES=80

mask() { # mask: stdin to stdout with the admin password replaced
  local line
  while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "${line//"$ADMIN_PASSWORD"/********}"; done
}

apply() {
  load_params - BRANCH LOCAL_CONF ADMIN_PASSWORD PROVIDER_MAC
  PROVIDER_MAC=${PROVIDER_MAC,,}
  [[ $BRANCH =~ ^(master|stable/20[0-9]{2}\.[12])$ ]] || die "parameter BRANCH is not a DevStack branch: '$BRANCH'"
  # DevStack puts the password unquoted into URLs and config files: letters, digits, _ and - only.
  [[ $ADMIN_PASSWORD =~ ^[A-Za-z0-9_-]{12,128}$ ]] ||
    die "parameter ADMIN_PASSWORD must be 12-128 letters, digits, '_' or '-' (value not shown)"
  need is_mac PROVIDER_MAC
  local conf
  conf=$(printf '%s' "$LOCAL_CONF" | base64 -d 2>/dev/null) || die "parameter LOCAL_CONF is not base64"
  [[ $conf == *"[[local|localrc]]"* ]] || die "parameter LOCAL_CONF is not a DevStack local.conf"
  local placeholder
  for placeholder in @ADMIN_PASSWORD@ @LIBVIRT_TYPE@ @PUBLIC_INTERFACE@; do
    [[ $conf == *"$placeholder"* ]] || die "parameter LOCAL_CONF lacks the placeholder $placeholder"
  done
  id stack >/dev/null 2>&1 || die "no user 'stack': run prepare-host first"
  local nic libvirt=qemu
  nic=$(nic_by_mac "$PROVIDER_MAC") || die "no network device has the provider ENI's MAC $PROVIDER_MAC"
  [ -e /dev/kvm ] && libvirt=kvm
  conf=${conf//@ADMIN_PASSWORD@/$ADMIN_PASSWORD}
  conf=${conf//@LIBVIRT_TYPE@/$libvirt}
  conf=${conf//@PUBLIC_INTERFACE@/$nic}

  local stamp
  stamp=$(printf '%s\n%s\n' "$BRANCH" "$conf" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$STATE/stamp" 2>/dev/null)" = "$stamp" ]; then
    log "DevStack $BRANCH is installed with this local.conf: nothing to do"
    return 0
  fi
  install -d -m 0700 "$STATE"

  log "DevStack $BRANCH (libvirt: $libvirt, provider NIC: $nic)"
  if [ -d "$DEVSTACK/.git" ]; then
    if [ -f "$STATE/stamp" ]; then
      log "settings changed: unstacking the previous run first"
      sudo -n -u stack -H bash -c "cd $DEVSTACK && ./unstack.sh" </dev/null >/dev/null 2>&1 || true
    fi
    sudo -n -u stack -H git -C "$DEVSTACK" fetch -q origin "$BRANCH"
    sudo -n -u stack -H git -C "$DEVSTACK" checkout -q --force FETCH_HEAD
  else
    sudo -n -u stack -H git clone -q --branch "$BRANCH" "$DEVSTACK_REPO" "$DEVSTACK"
  fi
  (umask 077 && printf '%s\n' "$conf" >"$DEVSTACK/local.conf")
  chown stack: "$DEVSTACK/local.conf"
  rm -f "$STATE/stamp"

  log "running stack.sh (timeout $STACK_TIMEOUT); full log: $STACK_LOG"
  # stack.sh's stdout carries only its summary lines (VERBOSE=False, LOGFILE set): stream them,
  # masked and bounded; the rest is read and dropped so stack.sh never blocks on the pipe.
  local rc
  {
    rc=0
    timeout --kill-after=2m "$STACK_TIMEOUT" \
      sudo -n -u stack -H bash -c "cd $DEVSTACK && ./stack.sh" </dev/null 2>&1 || rc=$?
    echo "$rc" >"$STATE/rc"
  } | mask | awk -v max="$PROGRESS_LINES" \
    'NR <= max { print; fflush() } NR == max + 1 { print "[install-openstack] (more in the log)" }' >&2
  rc=$(cat "$STATE/rc")
  rm -f "$STATE/rc"
  if ((rc != 0)); then
    ((rc == 124)) && log "stack.sh did not finish within $STACK_TIMEOUT"
    log "stack.sh failed ($rc); last $TAIL_LINES lines of $STACK_LOG:"
    tail -n "$TAIL_LINES" "$STACK_LOG" 2>/dev/null | mask >&2 || true
    die "DevStack install failed; see $STACK_LOG on the host"
  fi
  printf '%s\n' "$stamp" >"$STATE/stamp"
  log "DevStack is up"
}

remove() {
  if [ -x "$DEVSTACK/clean.sh" ]; then
    log "running DevStack's clean.sh"
    sudo -n -u stack -H bash -c "cd $DEVSTACK && ./clean.sh" </dev/null >/dev/null 2>&1 ||
      log "clean.sh reported errors (continuing)"
  fi
  rm -rf "$DEVSTACK" "$STATE"
  log "removed"
}

case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
