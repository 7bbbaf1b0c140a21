#!/usr/bin/env bash
# install-compute: DevStack as a compute node of the controller at CONTROLLER_IP (DevStack's
# multi-node guide): Nova's compute service, the placement client and Neutron's Open vSwitch agent
# only, with the local.conf rendered by onhost/localconf.py (render_compute_local_conf).
#
#   install-compute.sh apply   checks the controller's RabbitMQ and MySQL answer from here (the
#                              security group's cluster rule); fills the local.conf placeholders
#                              (admin password from stdin, LIBVIRT_TYPE/_CPU_MODE where /dev/kvm
#                              exists or not); clones DevStack at BRANCH and runs stack.sh as `stack`.
#                              Progress: stack.sh's summary lines as they come, with the time since
#                              the start; on failure the log's tail (password masked) - lib.sh's
#                              run_stack, as install-openstack. Does nothing when the filled
#                              local.conf and the branch are what the last successful run used;
#                              unstacks first after a run with other settings, a failed or an
#                              interrupted one.
#   install-compute.sh remove  stops the node's services (so they no longer report to the
#                              controller), runs DevStack's clean.sh, deletes the clone and state.
# One run at a time, as install-openstack (lib.sh lock_devstack).
#
# Parameters (KEY=value lines on stdin): BRANCH, LOCAL_CONF (base64), ADMIN_PASSWORD, CONTROLLER_IP.
# Environment: CONTROLLER_PORTS (default "5672 3306"), STACK_TIMEOUT, DEVSTACK_REPO.
# Entry points: apply, remove. State: $OOA_STATE/install-compute/stamp.
# Sourced (tests/test_devstack_run.py), it only defines its settings and functions.
set -euo pipefail
OOA_STEP=install-compute
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/install-compute
STACK_TIMEOUT=${STACK_TIMEOUT:-50m} # within the Pulumi step's 60-minute timeout
read -r -a CONTROLLER_PORTS <<<"${CONTROLLER_PORTS:-5672 3306}" # RabbitMQ, MySQL on the controller

# read_params: the parameters from stdin, checked before anything changes; sets `conf`.
read_params() {
  load_params - BRANCH LOCAL_CONF ADMIN_PASSWORD CONTROLLER_IP
  check_devstack_params
  need is_ipv4 CONTROLLER_IP
  decode_local_conf conf
  [[ $conf == *"SERVICE_HOST=$CONTROLLER_IP"* ]] || die "parameter LOCAL_CONF does not point at CONTROLLER_IP $CONTROLLER_IP"
  need_placeholders "$conf" @ADMIN_PASSWORD@ @LIBVIRT_TYPE@ @LIBVIRT_CPU_MODE@
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
  local libvirt
  libvirt=$(libvirt_type)
  conf=${conf//@ADMIN_PASSWORD@/$ADMIN_PASSWORD}
  conf=$(fill_libvirt "$conf" "$libvirt")

  lock_devstack # first: a run holding it may be unstacking the install the stamp names
  if devstack_is_current "$conf"; then
    log "DevStack $BRANCH (compute node) is installed with this local.conf: nothing to do"
    return 0
  fi
  log "DevStack $BRANCH as a compute node of $CONTROLLER_IP (libvirt: $libvirt)"
  install_devstack "$conf"
  log "the compute node is up; the controller's discover-hosts step maps it to the cell"
}

remove() { clean_devstack; }

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
