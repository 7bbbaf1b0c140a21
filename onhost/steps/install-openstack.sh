#!/usr/bin/env bash
# install-openstack: DevStack at a pinned branch with the local.conf rendered by
# components/localconf.py (ML2/OVS + the L3 agent, the provider NIC on br-ex).
#
#   install-openstack.sh apply   fills the local.conf placeholders (admin password from stdin,
#                                LIBVIRT_TYPE kvm where /dev/kvm exists else qemu, PUBLIC_INTERFACE =
#                                the NIC with PROVIDER_MAC), clones DevStack at BRANCH and runs
#                                stack.sh as `stack`. Progress: the phase lines stack.sh writes to its
#                                summary log, as they come, each with the time since the start; on
#                                failure the tail of the full log (password masked), as soon as stack.sh
#                                ends. Does nothing when the filled local.conf and the branch are what the
#                                last successful run used; unstacks first after a run with other
#                                settings, a failed or an interrupted one (lib.sh install_devstack).
#   install-openstack.sh remove  stops DevStack's services, runs DevStack's clean.sh (unstack + remove
#                                what stack.sh installed) and deletes the clone and this step's state.
# One run at a time: a newer apply or remove stops a stack.sh still running (lib.sh lock_devstack).
#
# Parameters (KEY=value lines on stdin): BRANCH, LOCAL_CONF (base64), ADMIN_PASSWORD, PROVIDER_MAC,
# PUBLIC_BASE_URL (https://<public address>[:port] of the TLS front: fills @PUBLIC_BASE_URL@).
# Sourced (tests/test_devstack_run.py), it only defines its settings and functions.
set -euo pipefail
OOA_STEP=install-openstack
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/install-openstack
STACK_TIMEOUT=${STACK_TIMEOUT:-80m} # within the Pulumi step's 90-minute timeout

apply() {
  load_params - BRANCH LOCAL_CONF ADMIN_PASSWORD PROVIDER_MAC PUBLIC_BASE_URL
  PROVIDER_MAC=${PROVIDER_MAC,,}
  check_devstack_params
  need is_mac PROVIDER_MAC
  [[ $PUBLIC_BASE_URL =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] ||
    die "parameter PUBLIC_BASE_URL is not https://<host>[:port] without a path: '$PUBLIC_BASE_URL'"
  local conf
  decode_local_conf conf
  need_placeholders "$conf" @ADMIN_PASSWORD@ @LIBVIRT_TYPE@ @PUBLIC_INTERFACE@ @PUBLIC_BASE_URL@
  id stack >/dev/null 2>&1 || die "no user 'stack': run prepare-host first"
  local nic libvirt
  nic=$(nic_by_mac "$PROVIDER_MAC") || die "no NIC with the provider ENI's MAC $PROVIDER_MAC"
  libvirt=$(libvirt_type)
  conf=${conf//@ADMIN_PASSWORD@/$ADMIN_PASSWORD}
  conf=${conf//@LIBVIRT_TYPE@/$libvirt}
  conf=${conf//@PUBLIC_INTERFACE@/$nic}
  conf=${conf//@PUBLIC_BASE_URL@/$PUBLIC_BASE_URL}

  if devstack_is_current "$conf"; then
    log "DevStack $BRANCH is installed with this local.conf: nothing to do"
    return 0
  fi
  log "DevStack $BRANCH (libvirt: $libvirt, provider NIC: $nic)"
  install_devstack "$conf"
  log "DevStack is up"
}

remove() { clean_devstack; }

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
