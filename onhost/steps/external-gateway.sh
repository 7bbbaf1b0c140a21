#!/usr/bin/env bash
# external-gateway: the article's `router-gateway-set --fixed-ip`. The router's external gateway
# takes the provider NIC's registered private IP, the one address the cloud already knows on it.
#
#   external-gateway.sh apply   finds or creates: the external network EXTERNAL_NETWORK (flat,
#                               external, on PHYSICAL_NETWORK, the physnet bridged to the provider
#                               NIC) and its subnet PROVIDER_CIDR (gateway = the cloud's router,
#                               allocation pool = the registered IPs only, no DHCP); the router
#                               ROUTER, whose external gateway fixed IP becomes GATEWAY_IP; a
#                               tenant network and subnet attached to it. Creates only what is
#                               missing. Prints one JSON line: {"router_id": ..., "gateway_port_id": ...}.
#   external-gateway.sh remove  undoes what apply created or set (recorded in its state), newest
#                               first; objects it found already there stay.
#
# Parameters (KEY=value lines on stdin): CLOUD CLOUDS_YAML EXTERNAL_NETWORK ROUTER PHYSICAL_NETWORK
# PROVIDER_CIDR VPC_GATEWAY_IP POOL_START POOL_END GATEWAY_IP TENANT_CIDR TENANT_DNS. The openstack
# CLI runs as cloud CLOUD of the clouds.yaml at CLOUDS_YAML on the host (DevStack's: `devstack-admin`
# in /etc/openstack/clouds.yaml): no secret passes through this step.
#
# Entry points: apply, remove. State: $OOA_STATE/external-gateway/{params,created}.
set -euo pipefail
OOA_STEP=external-gateway
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/external-gateway
CREATED=$STATE/created # "<kind> <name>" lines, in creation order
PARAMS=(CLOUD CLOUDS_YAML EXTERNAL_NETWORK ROUTER PHYSICAL_NETWORK PROVIDER_CIDR VPC_GATEWAY_IP POOL_START POOL_END
  GATEWAY_IP TENANT_CIDR TENANT_DNS)
TENANT_NET=private
TENANT_SUBNET=private-subnet
NAME_RE='^[A-Za-z0-9_.-]{1,64}$'

# validate_params : every parameter well-formed and consistent, before anything changes.
validate_params() {
  local name
  for name in CLOUD EXTERNAL_NETWORK ROUTER PHYSICAL_NETWORK; do
    [[ ${!name} =~ $NAME_RE ]] || die "parameter $name is not a name (A-Z a-z 0-9 _ . -): '${!name}'"
  done
  [[ $CLOUDS_YAML =~ ^/[A-Za-z0-9_./-]{1,255}$ && $CLOUDS_YAML != *..* ]] ||
    die "parameter CLOUDS_YAML is not an absolute path: '$CLOUDS_YAML'"
  need is_cidr PROVIDER_CIDR
  need is_cidr TENANT_CIDR
  for name in VPC_GATEWAY_IP POOL_START POOL_END GATEWAY_IP; do
    need is_ipv4 "$name"
    in_cidr "${!name}" "$PROVIDER_CIDR" || die "parameter $name ${!name} is outside PROVIDER_CIDR $PROVIDER_CIDR"
  done
  need is_ipv4 TENANT_DNS
  local start end gw vpc_gw
  start=$(ip_to_int "$POOL_START") end=$(ip_to_int "$POOL_END")
  gw=$(ip_to_int "$GATEWAY_IP") vpc_gw=$(ip_to_int "$VPC_GATEWAY_IP")
  ((start <= end)) || die "POOL_START $POOL_START is after POOL_END $POOL_END"
  ((gw >= start && gw <= end)) ||
    die "GATEWAY_IP $GATEWAY_IP is not one of the ENI's registered IPs $POOL_START-$POOL_END"
  ((vpc_gw < start || vpc_gw > end)) || die "VPC_GATEWAY_IP $VPC_GATEWAY_IP must not be in the allocation pool"
  ! in_cidr "${TENANT_CIDR%/*}" "$PROVIDER_CIDR" || die "TENANT_CIDR $TENANT_CIDR overlaps PROVIDER_CIDR"
}

# os ARGS... : the openstack CLI as cloud CLOUD of CLOUDS_YAML.
os() { OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" openstack --os-cloud "$CLOUD" "$@"; }
# record KIND NAME : remember that apply created (or set) it, for remove.
record() { grep -qxF "$1 $2" "$CREATED" || printf '%s %s\n' "$1" "$2" >>"$CREATED"; }
# recorded KIND NAME : apply created it.
recorded() { grep -qxF "$1 $2" "$CREATED" 2>/dev/null; }
# id_of KIND NAME : its id, empty if absent.
id_of() { os "$1" show "$2" -f value -c id 2>/dev/null; }
# saved NAME DEFAULT : a parameter saved by apply (remove runs with what apply had).
saved() {
  local line
  line=$(grep -m1 "^$1=" "$STATE/params" 2>/dev/null || true)
  if [ -n "$line" ]; then printf '%s\n' "${line#*=}"; else printf '%s\n' "$2"; fi
}

# check_subnet NAME CIDR : an existing subnet must be the one asked for (no silent drift).
check_subnet() {
  local cidr
  cidr=$(os subnet show "$1" -f value -c cidr)
  [ "$cidr" = "$2" ] || die "subnet $1 exists with $cidr, not $2: remove this step first"
}

# external_subnet : the id of EXTERNAL_NETWORK's subnet PROVIDER_CIDR, created if missing.
external_subnet() {
  local id name=$EXTERNAL_NETWORK-subnet
  id=$(os subnet list --network "$EXTERNAL_NETWORK" --subnet-range "$PROVIDER_CIDR" -f value -c ID | head -n1)
  if [ -z "$id" ]; then
    [ -z "$(id_of subnet "$name")" ] || check_subnet "$name" "$PROVIDER_CIDR"
    os subnet create "$name" --network "$EXTERNAL_NETWORK" --subnet-range "$PROVIDER_CIDR" \
      --gateway "$VPC_GATEWAY_IP" --allocation-pool "start=$POOL_START,end=$POOL_END" --no-dhcp >/dev/null
    record subnet "$name"
    id=$(id_of subnet "$name")
  elif ! recorded subnet "$name"; then
    log "using the existing subnet $id of $EXTERNAL_NETWORK; only $POOL_START-$POOL_END are registered addresses"
  fi
  printf '%s\n' "$id"
}

# router_gateway SUBNET_ID : ROUTER's external gateway fixed IP becomes GATEWAY_IP.
router_gateway() {
  local gw_ips
  gw_ips=$(os router show "$ROUTER" -f json -c external_gateway_info |
    jq -r '.external_gateway_info.external_fixed_ips // [] | map(.ip_address) | join(" ")')
  [ "$gw_ips" != "$GATEWAY_IP" ] || return 0
  if [ -n "$gw_ips" ]; then
    recorded router "$ROUTER" || recorded gateway "$ROUTER" ||
      die "router $ROUTER (not created by this step) has gateway IP $gw_ips, not $GATEWAY_IP: unset it, or name another router"
    os router unset --external-gateway "$ROUTER"
  fi
  os router set "$ROUTER" --external-gateway "$EXTERNAL_NETWORK" --fixed-ip "subnet=$1,ip-address=$GATEWAY_IP"
  recorded router "$ROUTER" || record gateway "$ROUTER"
}

# apply : find or create the networks and the router (see the header); print their ids as JSON.
apply() {
  load_params - "${PARAMS[@]}"
  validate_params
  command -v openstack >/dev/null || die "no openstack CLI on the host (DevStack: run install-openstack first)"
  [ -r "$CLOUDS_YAML" ] || die "no $CLOUDS_YAML (DevStack: run install-openstack first)"
  # Before anything is saved: a wrong cloud must leave the state of the last good apply as it was.
  os network list -f value -c ID >/dev/null || die "cloud $CLOUD of $CLOUDS_YAML does not answer"
  install -d -m 0700 "$STATE"
  touch "$CREATED"
  save_params "$STATE/params" "${PARAMS[@]}"

  if [ -z "$(id_of network "$EXTERNAL_NETWORK")" ]; then
    os network create "$EXTERNAL_NETWORK" --external --provider-network-type flat \
      --provider-physical-network "$PHYSICAL_NETWORK" >/dev/null
    record network "$EXTERNAL_NETWORK"
  fi
  local subnet_id
  subnet_id=$(external_subnet)
  if [ -z "$(id_of router "$ROUTER")" ]; then
    os router create "$ROUTER" >/dev/null
    record router "$ROUTER"
  fi
  router_gateway "$subnet_id"
  if [ -z "$(id_of network "$TENANT_NET")" ]; then
    os network create "$TENANT_NET" >/dev/null
    record network "$TENANT_NET"
  fi
  if [ -z "$(id_of subnet "$TENANT_SUBNET")" ]; then
    os subnet create "$TENANT_SUBNET" --network "$TENANT_NET" --subnet-range "$TENANT_CIDR" \
      --dns-nameserver "$TENANT_DNS" >/dev/null
    record subnet "$TENANT_SUBNET"
  fi
  check_subnet "$TENANT_SUBNET" "$TENANT_CIDR"
  local tenant_subnet_id
  tenant_subnet_id=$(id_of subnet "$TENANT_SUBNET")
  if ! os port list --router "$ROUTER" --device-owner network:router_interface -f json -c "Fixed IP Addresses" |
    jq -e --arg s "$tenant_subnet_id" '[.[]."Fixed IP Addresses"[]?.subnet_id] | index($s)' >/dev/null; then
    os router add subnet "$ROUTER" "$TENANT_SUBNET"
    record interface "$ROUTER/$TENANT_SUBNET"
  fi

  local router_id port_id
  router_id=$(id_of router "$ROUTER")
  port_id=$(os port list --router "$ROUTER" --device-owner network:router_gateway -f value -c ID)
  is_uuid "$router_id" || die "router $ROUTER has no id"
  is_uuid "$port_id" || die "router $ROUTER has no gateway port"
  jq -cn --arg r "$router_id" --arg p "$port_id" '{router_id: $r, gateway_port_id: $p}'
}

# remove : undo what apply recorded, newest first, with the cloud apply used.
remove() {
  [ -f "$CREATED" ] || { log "nothing recorded: nothing to remove"; return 0; }
  CLOUD=$(saved CLOUD devstack-admin)
  CLOUDS_YAML=$(saved CLOUDS_YAML /etc/openstack/clouds.yaml)
  local kind name owner
  while read -r kind name; do
    log "deleting $kind $name"
    case $kind in
      interface)
        owner=router1 # records made before ROUTER was a parameter name only the subnet
        [[ $name == */* ]] && owner=${name%%/*} name=${name#*/}
        os router remove subnet "$owner" "$name" || true
        ;;
      gateway) os router unset --external-gateway "$name" || true ;;
      router)
        os router unset --external-gateway "$name" || true
        os router delete "$name"
        ;;
      network | subnet) os "$kind" delete "$name" ;;
    esac
  done < <(tac "$CREATED")
  rm -rf "$STATE"
}

case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
