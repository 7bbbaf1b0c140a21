#!/usr/bin/env bash
# install-compute: DevStack as a compute node of the controller at CONTROLLER_IP (DevStack's
# multi-node guide): Nova's compute service, the placement client and Neutron's Open vSwitch agent
# only, with the local.conf rendered by onhost/localconf.py (render_compute_local_conf).
#
#   install-compute.sh apply   checks the controller's RabbitMQ and MySQL answer from here (the
#                              security group's cluster rule); fills the local.conf placeholders
#                              (admin password from stdin, LIBVIRT_TYPE kvm where /dev/kvm exists
#                              else qemu); clones DevStack at BRANCH and runs stack.sh as `stack`.
#                              Progress: stack.sh's summary lines; on failure the log's tail
#                              (password masked). Does nothing when the filled local.conf and the
#                              branch are what the last successful run used.
#   install-compute.sh remove  runs DevStack's clean.sh (stops the node's services first, so they
#                              no longer report to the controller) and deletes the clone and state.
#
# Parameters (KEY=value lines on stdin): BRANCH, LOCAL_CONF (base64), ADMIN_PASSWORD, CONTROLLER_IP.
# Environment: CONTROLLER_PORTS (default "5672 3306"), STACK_TIMEOUT, DEVSTACK_REPO.
# Entry points: apply, remove. State: $OOA_STATE/install-compute/stamp.
set -euo pipefail
OOA_STEP=install-compute
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/install-compute
DEVSTACK_REPO=${DEVSTACK_REPO:-https://opendev.org/openstack/devstack}
DEVSTACK=/opt/stack/devstack
STACK_LOG=/opt/stack/logs/stack.sh.log # LOGFILE in local.conf
STACK_TIMEOUT=${STACK_TIMEOUT:-50m}    # within the Pulumi step's 60-minute timeout
read -r -a CONTROLLER_PORTS <<<"${CONTROLLER_PORTS:-5672 3306}" # RabbitMQ, MySQL on the controller
PROGRESS_LINES=400
TAIL_LINES=80

mask() { # mask: stdin to stdout with the admin password replaced
  local line
  while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "${line//"$ADMIN_PASSWORD"/********}"; done
}

# read_params: the parameters from stdin, checked before anything changes; sets `conf`.
read_params() {
  load_params - BRANCH LOCAL_CONF ADMIN_PASSWORD CONTROLLER_IP
  [[ $BRANCH =~ ^(master|stable/20[0-9]{2}\.[12])$ ]] || die "parameter BRANCH is not a DevStack branch: '$BRANCH'"
  [[ $ADMIN_PASSWORD =~ ^[A-Za-z0-9_-]{12,128}$ ]] ||
    die "parameter ADMIN_PASSWORD must be 12-128 letters, digits, '_' or '-' (value not shown)"
  need is_ipv4 CONTROLLER_IP
  conf=$(printf '%s' "$LOCAL_CONF" | base64 -d 2>/dev/null) || die "parameter LOCAL_CONF is not base64"
  [[ $conf == *"[[local|localrc]]"* ]] || die "parameter LOCAL_CONF is not a DevStack local.conf"
  [[ $conf == *"SERVICE_HOST=$CONTROLLER_IP"* ]] || die "parameter LOCAL_CONF does not point at CONTROLLER_IP $CONTROLLER_IP"
  local placeholder
  for placeholder in @ADMIN_PASSWORD@ @LIBVIRT_TYPE@; do
    [[ $conf == *"$placeholder"* ]] || die "parameter LOCAL_CONF lacks the placeholder $placeholder"
  done
}

# check_controller: the controller's message queue and database answer (else: the cluster rule).
check_controller() {
  local port
  for port in "${CONTROLLER_PORTS[@]}"; do
    timeout 10 bash -c "exec 3<>/dev/tcp/$CONTROLLER_IP/$port" 2>/dev/null ||
      die "the controller $CONTROLLER_IP does not answer on port $port (security group, or its DevStack is down)"
  done
}

apply() {
  local conf
  read_params
  check_controller
  id stack >/dev/null 2>&1 || die "no user 'stack': run prepare-compute first"
  local libvirt=qemu
  [ -e /dev/kvm ] && libvirt=kvm
  conf=${conf//@ADMIN_PASSWORD@/$ADMIN_PASSWORD}
  conf=${conf//@LIBVIRT_TYPE@/$libvirt}

  local stamp
  stamp=$(printf '%s\n%s\n' "$BRANCH" "$conf" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$STATE/stamp" 2>/dev/null)" = "$stamp" ]; then
    log "DevStack $BRANCH (compute node) is installed with this local.conf: nothing to do"
    return 0
  fi
  install -d -m 0700 "$STATE"
  log "DevStack $BRANCH as a compute node of $CONTROLLER_IP (libvirt: $libvirt)"
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
  local rc
  {
    rc=0
    timeout --kill-after=2m "$STACK_TIMEOUT" \
      sudo -n -u stack -H bash -c "cd $DEVSTACK && ./stack.sh" </dev/null 2>&1 || rc=$?
    echo "$rc" >"$STATE/rc"
  } | mask | awk -v max="$PROGRESS_LINES" \
    'NR <= max { print; fflush() } NR == max + 1 { print "[install-compute] (more in the log)" }' >&2
  rc=$(cat "$STATE/rc")
  rm -f "$STATE/rc"
  if ((rc != 0)); then
    ((rc == 124)) && log "stack.sh did not finish within $STACK_TIMEOUT"
    log "stack.sh failed ($rc); last $TAIL_LINES lines of $STACK_LOG:"
    tail -n "$TAIL_LINES" "$STACK_LOG" 2>/dev/null | mask >&2 || true
    die "DevStack install failed; see $STACK_LOG on the node"
  fi
  printf '%s\n' "$stamp" >"$STATE/stamp"
  log "the compute node is up; the controller's discover-hosts step maps it to the cell"
}

remove() {
  if [ -x "$DEVSTACK/clean.sh" ]; then
    log "running DevStack's clean.sh (stops nova-compute and the OVS agent first)"
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
