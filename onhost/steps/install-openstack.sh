#!/usr/bin/env bash
# install-openstack: DevStack at a pinned branch with the local.conf rendered by
# components/localconf.py (ML2/OVS + the L3 agent, the provider NIC on br-ex).
#
#   install-openstack.sh apply   fills the local.conf placeholders (admin password from stdin,
#                                LIBVIRT_TYPE/_CPU_MODE where /dev/kvm exists or not, PUBLIC_INTERFACE =
#                                the NIC with PROVIDER_MAC), clones DevStack at BRANCH and runs
#                                stack.sh as `stack`. Progress: the phase lines stack.sh writes to its
#                                summary log, as they come, each with the time since the start; on
#                                failure the tail of the full log (password masked), as soon as stack.sh
#                                ends. Installs nothing when the branch and the local.conf (but for the
#                                NIC name and the public URL) are what the last successful run used:
#                                then it only points the installed DevStack at this instance's provider
#                                NIC and public URL (after a launch from an image of this disk: repoint).
#                                Unstacks first after a run with other settings, a failed or an
#                                interrupted one (lib.sh install_devstack).
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
NOVA_CPU_CONF=${NOVA_CPU_CONF:-/etc/nova/nova-cpu.conf} # DevStack's NOVA_CPU_CONF: nova-compute's options

apply() {
  load_params - BRANCH LOCAL_CONF ADMIN_PASSWORD PROVIDER_MAC PUBLIC_BASE_URL
  PROVIDER_MAC=${PROVIDER_MAC,,}
  check_devstack_params
  need is_mac PROVIDER_MAC
  [[ $PUBLIC_BASE_URL =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] ||
    die "parameter PUBLIC_BASE_URL is not https://<host>[:port] without a path: '$PUBLIC_BASE_URL'"
  local conf
  decode_local_conf conf
  need_placeholders "$conf" @ADMIN_PASSWORD@ @LIBVIRT_TYPE@ @LIBVIRT_CPU_MODE@ @PUBLIC_INTERFACE@ @PUBLIC_BASE_URL@
  id stack >/dev/null 2>&1 || die "no user 'stack': run prepare-host first"
  local nic libvirt
  nic=$(nic_by_mac "$PROVIDER_MAC") || die "no NIC with the provider ENI's MAC $PROVIDER_MAC"
  libvirt=$(libvirt_type)
  conf=${conf//@ADMIN_PASSWORD@/$ADMIN_PASSWORD}
  conf=$(fill_libvirt "$conf" "$libvirt")
  # What the install depends on: all but the provider NIC's name and the public URL, which a new
  # instance of this disk (launched from its image) may change and repoint follows.
  local key=$conf
  conf=${conf//@PUBLIC_INTERFACE@/$nic}
  conf=${conf//@PUBLIC_BASE_URL@/$PUBLIC_BASE_URL}

  lock_devstack # first: a run holding it may be unstacking the install the stamp names
  if devstack_is_current "$key" "$conf"; then
    log "DevStack $BRANCH is installed with this local.conf: nothing to install"
    repoint "$conf" "$nic"
    return 0
  fi
  log "DevStack $BRANCH (libvirt: $libvirt, provider NIC: $nic)"
  install_devstack "$conf" "$key"
  printf '%s\n' "$nic" >"$STATE/public-interface"
  log "DevStack is up"
}

# devstack_ini FUNCTION ARG... : DevStack's own inc/ini-config FUNCTION (iniget, iniset), as `stack`.
devstack_ini() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  "${AS_STACK[@]}" bash -c '. "$1/inc/ini-config" && "${@:2}"' devstack_ini "$DEVSTACK" "$@"
}

# repoint CONF NIC : the installed DevStack follows this instance: NIC is the port of CONF's
# PUBLIC_BRIDGE (the port of a NIC this instance does not have goes), nova-compute's noVNC URL is
# CONF's NOVNCPROXY_URL (restarted when it changes: a new public address), local.conf is CONF.
repoint() {
  local conf=$1 nic=$2 bridge url old
  bridge=$(sed -n 's/^PUBLIC_BRIDGE=//p' <<<"$conf")
  url=$(sed -n 's/^NOVNCPROXY_URL=//p' <<<"$conf")
  old=$(cat "$STATE/public-interface" 2>/dev/null) || old=$nic
  if [ "$old" != "$nic" ]; then
    log "provider NIC: $nic (was $old) as the port of $bridge"
    ovs-vsctl --no-wait --if-exists del-port "$bridge" "$old"
  fi
  ovs-vsctl --no-wait --may-exist add-port "$bridge" "$nic"
  ip link set dev "$nic" up
  printf '%s\n' "$nic" >"$STATE/public-interface"
  if [ -n "$url" ] && [ "$(devstack_ini iniget "$NOVA_CPU_CONF" vnc novncproxy_base_url)" != "$url" ]; then
    log "noVNC URL: $url (nova-compute restarted)"
    devstack_ini iniset "$NOVA_CPU_CONF" vnc novncproxy_base_url "$url"
    systemctl restart devstack@n-cpu.service
  fi
  if ! cmp -s "$DEVSTACK/local.conf" <(printf '%s\n' "$conf"); then
    (umask 077 && printf '%s\n' "$conf" >"$DEVSTACK/local.conf")
    chown stack: "$DEVSTACK/local.conf"
  fi
}

remove() { clean_devstack; }

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
