#!/usr/bin/env bash
# compute-record: on the controller, one compute node's records - what `remove` takes out of the
# controller when the node goes (a lowered computeNodes.count, or a replaced node).
#
#   compute-record.sh apply   checks the admin cloud answers; records nothing (the node registers
#                             itself when its DevStack starts; discover-hosts maps it to the cell).
#   compute-record.sh remove  refuses while servers are still on NODE_HOSTNAME (migrate or delete
#                             them first); then deletes its Neutron agents and its nova-compute
#                             service (Nova drops its resource provider with it). Idempotent: what
#                             is already gone is skipped. Runs after the node's install-compute
#                             removal stopped its services, so nothing re-registers.
#
# Parameters (KEY=value lines on stdin): NODE_HOSTNAME CLOUD CLOUDS_YAML (the openstack CLI runs as
# cloud CLOUD of that clouds.yaml on the controller: DevStack's devstack-admin; no secret here).
# Entry points: apply, remove. State: $OOA_STATE/compute-record-<NODE_HOSTNAME>/params.
set -euo pipefail
OOA_STEP=compute-record
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# read_params: the parameters from stdin, checked before anything changes.
read_params() {
  load_params - NODE_HOSTNAME CLOUD CLOUDS_YAML
  [[ $NODE_HOSTNAME =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
    die "parameter NODE_HOSTNAME is not a host name: '$NODE_HOSTNAME'"
  [[ $CLOUD =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "parameter CLOUD is not a name: '$CLOUD'"
  [[ $CLOUDS_YAML =~ ^/[A-Za-z0-9_./-]{1,255}$ && $CLOUDS_YAML != *..* ]] ||
    die "parameter CLOUDS_YAML is not an absolute path: '$CLOUDS_YAML'"
  STATE=$OOA_STATE/compute-record-$NODE_HOSTNAME
}

# os ARGS... : the openstack CLI as cloud CLOUD of CLOUDS_YAML.
os() { OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" openstack --os-cloud "$CLOUD" "$@"; }

apply() {
  read_params
  os compute service list -f value -c Host >/dev/null || die "the admin cloud $CLOUD does not answer"
  save_params "$STATE/params" NODE_HOSTNAME CLOUD CLOUDS_YAML
  log "$NODE_HOSTNAME: its records are taken out of the controller when the node is removed"
}

remove() {
  read_params
  local servers id
  servers=$(os server list --all-projects --host "$NODE_HOSTNAME" -f value -c ID) ||
    die "cannot list the servers on $NODE_HOSTNAME"
  [ -z "$servers" ] ||
    die "servers still run on $NODE_HOSTNAME: $(echo "$servers" | tr '\n' ' ')- migrate or delete them, then retry"
  for id in $(os network agent list --host "$NODE_HOSTNAME" -f value -c ID); do
    log "deleting network agent $id of $NODE_HOSTNAME"
    os network agent delete "$id"
  done
  for id in $(os compute service list --service nova-compute --host "$NODE_HOSTNAME" -f value -c ID); do
    log "deleting compute service $id of $NODE_HOSTNAME"
    os compute service delete "$id"
  done
  rm -rf "$STATE"
  log "$NODE_HOSTNAME is out of the controller"
}

case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
