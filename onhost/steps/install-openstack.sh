#!/usr/bin/env bash
# install-openstack: DevStack at a pinned branch with the local.conf rendered by
# components/localconf.py (ML2/OVS + the L3 agent, the provider NIC on br-ex).
#
#   install-openstack.sh apply   fills the local.conf placeholders (admin password from stdin,
#                                LIBVIRT_TYPE kvm where /dev/kvm exists else qemu, PUBLIC_INTERFACE =
#                                the NIC with PROVIDER_MAC), clones DevStack at BRANCH and runs
#                                stack.sh as `stack`. Progress: the phase lines stack.sh writes to its
#                                summary log, as they come, each with the time since the start; on
#                                failure the tail of the full log (password masked). Does nothing when
#                                the filled local.conf and the branch are what the last successful run used.
#   install-openstack.sh remove  runs DevStack's clean.sh (unstack + remove what stack.sh installed)
#                                and deletes the clone and this step's state.
#
# Parameters (KEY=value lines on stdin): BRANCH, LOCAL_CONF (base64), ADMIN_PASSWORD, PROVIDER_MAC,
# PUBLIC_BASE_URL (https://<public address>[:port] of the TLS front: fills @PUBLIC_BASE_URL@).
# Sourced (tests/test_devstack_run.py), it only defines its settings and functions.
set -euo pipefail
OOA_STEP=install-openstack
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/install-openstack
DEVSTACK_REPO=${DEVSTACK_REPO:-https://opendev.org/openstack/devstack}
DEVSTACK=/opt/stack/devstack
# stack.sh (stable/2026.1 and master) with LOGFILE set logs to $LOGFILE.<time>, its phase lines
# (echo_summary) to $LOGFILE.<time>.summary.<time> through tools/outfilter.py, which puts
# "YYYY-mm-dd HH:MM:SS.mmm | " in front, and links $LOGFILE and $LOGFILE.summary to this run's files.
STACK_LOG=/opt/stack/logs/stack.sh.log # LOGFILE in local.conf (a link to the newest log)
STACK_SUMMARY=$STACK_LOG.summary       # the link to the newest summary log
STACK_TIMEOUT=${STACK_TIMEOUT:-80m}    # within the Pulumi step's 90-minute timeout
AS_STACK=(sudo -n -u stack -H)         # how stack.sh is run (as the `stack` user)
PROGRESS_LINES=200                     # summary lines shown at most (a run writes about 30)
PROGRESS_POLL=2                        # seconds between looks at the summary log
TAIL_LINES=80

mask() { # mask: stdin to stdout with the admin password replaced
  local line
  while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "${line//"$ADMIN_PASSWORD"/********}"; done
}

# show_progress PID : until PID ends, show each new complete line of $STACK_SUMMARY as
# "[install-openstack] +MM:SS <line>" (time since the call; DevStack's own timestamp dropped),
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
    sleep "$PROGRESS_POLL"
  done
}

# run_stack DIR : run DIR/stack.sh as `stack`, showing its progress (show_progress). Its own
# output (xtrace until its logging starts, the summary lines again, the closing banner with the
# password) is not shown: its last TAIL_LINES lines are kept, masked, for a failure before the log.
# On failure: the tail of $STACK_LOG (or of that output), then die.
run_stack() {
  local dir=$1 rc pid
  # The links to the previous run's log and summary go: stack.sh makes new ones once it logs.
  rm -f "$STACK_LOG" "$STACK_SUMMARY" "$STATE/rc"
  log "running stack.sh (timeout $STACK_TIMEOUT); full log: $STACK_LOG"
  {
    rc=0
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash (DIR as its argument)
    timeout --kill-after=2m "$STACK_TIMEOUT" "${AS_STACK[@]}" bash -c 'cd "$1" && ./stack.sh' stack.sh "$dir" \
      </dev/null 2>&1 || rc=$?
    echo "$rc" >"$STATE/rc"
  } | mask | tail -n "$TAIL_LINES" >"$STATE/output" &
  pid=$!
  show_progress "$pid"
  wait "$pid" || true
  rc=$(cat "$STATE/rc")
  rm -f "$STATE/rc"
  if ((rc != 0)); then
    ((rc != 124)) || log "stack.sh did not finish within $STACK_TIMEOUT"
    if [ -e "$STACK_LOG" ]; then
      log "stack.sh failed ($rc); last $TAIL_LINES lines of $STACK_LOG:"
      tail -n "$TAIL_LINES" "$STACK_LOG" | mask >&2 || true
      rm -f "$STATE/output"
      die "DevStack install failed; see $STACK_LOG on the host"
    fi
    log "stack.sh failed ($rc) before it started its log; its last output:"
    cat "$STATE/output" >&2
    rm -f "$STATE/output"
    die "DevStack install failed before it started its log"
  fi
  rm -f "$STATE/output"
}

apply() {
  load_params - BRANCH LOCAL_CONF ADMIN_PASSWORD PROVIDER_MAC PUBLIC_BASE_URL
  PROVIDER_MAC=${PROVIDER_MAC,,}
  [[ $BRANCH =~ ^(master|stable/20[0-9]{2}\.[12])$ ]] || die "parameter BRANCH is not a DevStack branch: '$BRANCH'"
  # DevStack puts the password unquoted into URLs and config files: letters, digits, _ and - only.
  [[ $ADMIN_PASSWORD =~ ^[A-Za-z0-9_-]{12,128}$ ]] ||
    die "parameter ADMIN_PASSWORD must be 12-128 letters, digits, '_' or '-' (value not shown)"
  need is_mac PROVIDER_MAC
  [[ $PUBLIC_BASE_URL =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] ||
    die "parameter PUBLIC_BASE_URL is not https://<host>[:port] without a path: '$PUBLIC_BASE_URL'"
  local conf
  conf=$(printf '%s' "$LOCAL_CONF" | base64 -d 2>/dev/null) || die "parameter LOCAL_CONF is not base64"
  [[ $conf == *"[[local|localrc]]"* ]] || die "parameter LOCAL_CONF is not a DevStack local.conf"
  local placeholder
  for placeholder in @ADMIN_PASSWORD@ @LIBVIRT_TYPE@ @PUBLIC_INTERFACE@ @PUBLIC_BASE_URL@; do
    [[ $conf == *"$placeholder"* ]] || die "parameter LOCAL_CONF lacks the placeholder $placeholder"
  done
  id stack >/dev/null 2>&1 || die "no user 'stack': run prepare-host first"
  local nic libvirt=qemu
  nic=$(nic_by_mac "$PROVIDER_MAC") || die "no NIC with the provider ENI's MAC $PROVIDER_MAC"
  [ -e /dev/kvm ] && libvirt=kvm
  conf=${conf//@ADMIN_PASSWORD@/$ADMIN_PASSWORD}
  conf=${conf//@LIBVIRT_TYPE@/$libvirt}
  conf=${conf//@PUBLIC_INTERFACE@/$nic}
  conf=${conf//@PUBLIC_BASE_URL@/$PUBLIC_BASE_URL}

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

  run_stack "$DEVSTACK"
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

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
