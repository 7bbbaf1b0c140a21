#!/usr/bin/env bash
# A stand-in for DevStack's stack.sh, for tests/test_steps.py: towards whoever runs it, it behaves
# as the real one does. Checked against openstack/devstack stable/2026.1 (da2f4d73), stack.sh and
# tools/outfilter.py (the logging set-up and outfilter.py are the same on master, 493835a6):
# - `set -o xtrace` from its first lines; stackrc (which sources local.conf's localrc, password
#   included) and friends run before logging starts, so thousands of xtrace lines come first;
# - with LOGFILE set: LOGFILE=$LOGFILE.<time>, SUMFILE=$LOGFILE.summary.<time>; fd 3 = the
#   original stdout; stdout and stderr -> outfilter -o LOGFILE; fd 6 (echo_summary) -> outfilter
#   -v -o SUMFILE >&3 (VERBOSE=False): each summary line, with outfilter's UTC timestamp in front,
#   goes to the summary file and to the original stdout. After the first echo_summary ("stack.sh
#   log ...") `ln -sf` links $LOGFILE and $LOGFILE.summary to this run's files. fd 3 is a pipe,
#   not a terminal, so echo_summary prints whole lines (no spinner);
# - an error: err_trap prints "stack.sh failed: full log in $LOGFILE" (to the log) and exits;
# - the end: stdout back to the console through `tee -a LOGFILE`, a banner with the password, then
#   echo_summary "stack.sh completed in $SECONDS seconds.".
# - background jobs (inc/async, DEVSTACK_PARALLEL=True): async_runfunc runs a job in a subshell of
#   stack.sh (`bash ./stack.sh`, all its descriptors: the log filters' pipes and the original
#   stdout) that then blocks on `cat $DEST/async/<job>.fifo` until async_wait writes to it. stack.sh
#   starts create_flavors with Nova and waits for it after Glance and the images: an error between
#   leaves that job blocked for good, holding stack.sh's output open (stand-in: started after
#   "Starting Keystone", waited for before "Starting Nova").
# FAKE_MODE: ok | fail (an error after "Starting Keystone") | early (an error before logging) |
# chatty (250 summary lines, one with the password). FAKE_STEP: seconds between phases.
# FAKE_LEAVE=1: an ok run that never waits for its job (it stays, as after a failure).
# For the tests: each run appends "stack.sh <pid>" to $CALLS, and "two stack.sh at once" when one
# of another run's processes still runs (a lock every process of a run holds).
set -o xtrace
MODE=${FAKE_MODE:-ok}
STEP=${FAKE_STEP:-1}
DEST=$(cd .. && pwd) # /opt/stack, where DevStack is /opt/stack/devstack
exec 8>>"$DEST/fake-stack.lock"
flock -n 8 || echo "two stack.sh at once" >>"${CALLS:-/dev/null}"
echo "stack.sh $$" >>"${CALLS:-/dev/null}"

# stackrc and functions-common, then local.conf's localrc sourced under xtrace (the password
# shows in the trace).
for i in $(seq 1 1500); do
  : "stackrc:source:$i"
done
LOGFILE=$(sed -n 's/^LOGFILE=//p' local.conf)
ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' local.conf)
if [ "$MODE" = early ]; then
  echo "ERROR: stackrc: cannot use this local.conf"
  exit 1
fi

outfilter() { # outfilter [-v] -o FILE : tools/outfilter.py's behaviour (a Python process: no xtrace)
  { set +o xtrace; } 2>/dev/null
  local verbose='' line ts
  [ "$1" = -v ] && { verbose=1; shift; }
  while IFS= read -r line; do
    [[ $line =~ (set \+o|xtrace) ]] && continue
    ts=$(date -u '+%F %T.%3N')
    printf '%s | %s\n' "$ts" "$line" >>"$2"
    [ -z "$verbose" ] || printf '%s | %s\n' "$ts" "$line"
  done
}

CURRENT_LOG_TIME=$(date "+%F-%H%M%S")
LOGFILE_DIR="${LOGFILE%/*}"
LOGFILE_NAME="${LOGFILE##*/}"
mkdir -p "$LOGFILE_DIR"
LOGFILE=$LOGFILE.${CURRENT_LOG_TIME}
SUMFILE=$LOGFILE.summary.${CURRENT_LOG_TIME}
exec 3>&1
exec 1> >(outfilter -o "$LOGFILE") 2>&1
exec 6> >(outfilter -v -o "$SUMFILE" >&3)
echo_summary() { echo -e "$@" >&6; }
echo_summary "stack.sh log $LOGFILE"
ln -sf "$LOGFILE" "$LOGFILE_DIR/$LOGFILE_NAME"
ln -sf "$SUMFILE" "$LOGFILE_DIR/$LOGFILE_NAME.summary"

rm -rf "$DEST/async" # async_init
mkdir -p "$DEST/async"
async_runfunc() {
  local name=$1 fifo=$DEST/async/$1.fifo
  mkfifo "$fifo"
  { "$name" >"$DEST/async/$name.log" 2>&1; cat "$fifo"; } &
  printf '[job]\npid = %s\n' $! >"$DEST/async/$name.ini"
  echo "[$BASHPID Async $name:$!]: running: $name"
}
async_wait() {
  local pid
  pid=$(sed -n 's/^pid = //p' "$DEST/async/$1.ini")
  echo WAKEUP >"$DEST/async/$1.fifo"
  wait "$pid"
  rm -f "$DEST/async/$1.fifo" "$DEST/async/$1.ini"
}
create_flavors() { echo "flavors m1.tiny ... created"; }

err_trap() {
  local r=$?
  set +o xtrace
  echo "${0##*/} failed: full log in $LOGFILE"
  exit $r
}
trap err_trap ERR
set -o errexit

if [ "$MODE" = chatty ]; then
  echo_summary "A plugin says: the admin password is $ADMIN_PASSWORD"
  for i in $(seq 1 250); do echo_summary "plugin phase $i"; done
fi
echo_summary "Installing package prerequisites"
sleep "$STEP"
echo_summary "Installing OpenStack project source"
sleep "$STEP"
echo_summary "Starting Keystone"
async_runfunc create_flavors
if [ "$MODE" = fail ]; then
  mysql_cmd="mysql -uroot -p$ADMIN_PASSWORD -h 127.0.0.1"
  echo "$mysql_cmd: ERROR 2002 (HY000): Can't connect to server"
  false
fi
sleep "$STEP"
[ -n "${FAKE_LEAVE:-}" ] || async_wait create_flavors
echo_summary "Starting Nova"

set +o xtrace
exec 1>&3
exec 1> >(tee -a "${LOGFILE}") 2>&1
echo "This is your host IP address: 10.42.0.10"
echo "The default users are: admin and demo"
echo "The password: $ADMIN_PASSWORD"
echo_summary "stack.sh completed in $SECONDS seconds."
exec 1>&3
exec 2>&3
exec 3>&-
exec 6>&-
