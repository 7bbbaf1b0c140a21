#!/usr/bin/env bash
# discover-hosts: on the controller, maps the compute nodes to Nova's cell (DevStack's
# tools/discover_hosts.sh: `nova-manage cell_v2 discover_hosts`), after each node's nova-compute
# service has registered itself.
#
#   discover-hosts.sh apply   waits (up to WAIT_SECONDS) until every host in NODES has an `up`
#                             nova-compute service, runs `nova-manage cell_v2 discover_hosts
#                             --verbose` as `stack`, then waits until each is a hypervisor. Prints
#                             one JSON line: {"hosts": [...]}. Safe to repeat (discovery maps only
#                             unmapped hosts).
#   discover-hosts.sh remove  nothing to undo (each node's compute-record removes its records).
#
# Parameters (KEY=value lines on stdin): NODES (host names, comma-separated) CLOUD CLOUDS_YAML.
# Entry points: apply, remove. No state.
set -euo pipefail
OOA_STEP=discover-hosts
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WAIT_SECONDS=${WAIT_SECONDS:-600}
POLL_SECONDS=${POLL_SECONDS:-10}
NOVA_MANAGE_PATHS=(/opt/stack/data/venv/bin/nova-manage /usr/local/bin/nova-manage)

# read_params: the parameters from stdin, checked; sets the array HOSTS.
read_params() {
  load_params - NODES CLOUD CLOUDS_YAML
  [[ $NODES =~ ^[a-z0-9-]+(,[a-z0-9-]+)*$ ]] || die "parameter NODES is not a list of host names: '$NODES'"
  [[ $CLOUD =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "parameter CLOUD is not a name: '$CLOUD'"
  [[ $CLOUDS_YAML =~ ^/[A-Za-z0-9_./-]{1,255}$ && $CLOUDS_YAML != *..* ]] ||
    die "parameter CLOUDS_YAML is not an absolute path: '$CLOUDS_YAML'"
  IFS=, read -r -a HOSTS <<<"$NODES"
}

# os ARGS... : the openstack CLI as cloud CLOUD of CLOUDS_YAML.
os() { OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" openstack --os-cloud "$CLOUD" "$@"; }

# wait_until WHAT COMMAND... : run COMMAND until it succeeds or WAIT_SECONDS pass.
wait_until() {
  local what=$1 waited=0
  shift
  until "$@"; do
    ((waited < WAIT_SECONDS)) || die "gave up after ${WAIT_SECONDS}s waiting for $what"
    sleep "$POLL_SECONDS"
    waited=$((waited + POLL_SECONDS))
  done
}

# service_up HOST : HOST's nova-compute service is registered and up.
service_up() { [ "$(os compute service list --service nova-compute --host "$1" -f value -c State)" = up ]; }

# is_hypervisor HOST : HOST is a hypervisor of the cell (mapped).
is_hypervisor() { os hypervisor list -f value -c "Hypervisor Hostname" | grep -qE "^$1(\.|$)"; }

# nova_manage ARGS... : nova-manage as `stack` (it reads /etc/nova/nova.conf).
nova_manage() {
  local path bin=
  for path in "${NOVA_MANAGE_PATHS[@]}"; do [ -x "$path" ] && bin=$path && break; done
  [ -n "$bin" ] || bin=$(command -v nova-manage) || die "nova-manage not found: is DevStack installed here?"
  sudo -n -u stack -H "$bin" "$@"
}

apply() {
  read_params
  local host
  for host in "${HOSTS[@]}"; do
    log "waiting for the nova-compute service of $host"
    wait_until "nova-compute on $host to be up" service_up "$host"
  done
  log "nova-manage cell_v2 discover_hosts"
  nova_manage cell_v2 discover_hosts --verbose >&2
  for host in "${HOSTS[@]}"; do
    wait_until "$host to be a hypervisor" is_hypervisor "$host"
  done
  printf '{"hosts": [%s]}\n' "$(printf '"%s",' "${HOSTS[@]}" | sed 's/,$//')"
}

remove() {
  log "nothing to undo: each node's compute-record step removes its records"
}

case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
