#!/usr/bin/env bash
# external-gateway: the article's `router-gateway-set --fixed-ip`. The router's external gateway
# takes the provider ENI's primary private IP, the one address the VPC already knows on that ENI.
#
#   external-gateway.sh apply   finds or creates: the provider network (flat, external, on the
#                               physnet bridged to br-ex) and its subnet (= the VPC subnet, gateway =
#                               the VPC router, allocation pool = the ENI's registered IPs only, no
#                               DHCP); a router whose external gateway fixed IP is GATEWAY_IP; a
#                               tenant network and subnet attached to it. Prints one JSON line:
#                               {"router_id": ..., "gateway_port_id": ...}.
#   external-gateway.sh remove  deletes what apply created (recorded in its state), newest first.
#
# Parameters (KEY=value lines on stdin): PHYSICAL_NETWORK PROVIDER_CIDR VPC_GATEWAY_IP POOL_START
# POOL_END GATEWAY_IP TENANT_CIDR TENANT_DNS CLOUD CLOUDS_YAML. Runs the openstack CLI as the cloud
# CLOUD of the clouds.yaml file CLOUDS_YAML (DevStack's: `devstack-admin` in
# /etc/openstack/clouds.yaml): no secret passes through this step. remove uses the saved ones.
set -euo pipefail
OOA_STEP=external-gateway
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/external-gateway
CREATED=$STATE/created # "<kind> <name>" lines, in creation order
PARAMS=(PHYSICAL_NETWORK PROVIDER_CIDR VPC_GATEWAY_IP POOL_START POOL_END GATEWAY_IP TENANT_CIDR TENANT_DNS
  CLOUD CLOUDS_YAML)
PUBLIC_NET=public
PUBLIC_SUBNET=public-subnet
ROUTER=router1
TENANT_NET=private
TENANT_SUBNET=private-subnet

validate_params() {
  [[ $CLOUD =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "parameter CLOUD is not a cloud name: '$CLOUD'"
  [[ $CLOUDS_YAML =~ ^/[A-Za-z0-9_./-]+$ ]] || die "parameter CLOUDS_YAML is not an absolute path: '$CLOUDS_YAML'"
  [[ $PHYSICAL_NETWORK =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "parameter PHYSICAL_NETWORK is not a physnet name: '$PHYSICAL_NETWORK'"
  need is_cidr PROVIDER_CIDR
  need is_cidr TENANT_CIDR
  local name
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

os() { OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" openstack --os-cloud "$CLOUD" "$@"; }
record() { printf '%s %s\n' "$1" "$2" >>"$CREATED"; }
id_of() { os "$1" show "$2" -f value -c id 2>/dev/null; } # id_of KIND NAME (empty if absent)

# check_subnet NAME CIDR : an existing subnet must be the one asked for (no silent drift).
check_subnet() {
  local cidr
  cidr=$(os subnet show "$1" -f value -c cidr)
  [ "$cidr" = "$2" ] || die "subnet $1 exists with $cidr, not $2: remove this step first"
}

apply() {
  load_params - "${PARAMS[@]}"
  validate_params
  command -v openstack >/dev/null || die "no openstack CLI: run install-openstack first"
  [ -r "$CLOUDS_YAML" ] || die "no $CLOUDS_YAML: run install-openstack first"
  os network list -f value -c ID >/dev/null || die "cloud $CLOUD of $CLOUDS_YAML does not answer"
  install -d -m 0700 "$STATE"
  touch "$CREATED"
  save_params "$STATE/params" "${PARAMS[@]}" # remove needs CLOUD and CLOUDS_YAML, even after a failure

  if [ -z "$(id_of network "$PUBLIC_NET")" ]; then
    os network create "$PUBLIC_NET" --external --provider-network-type flat \
      --provider-physical-network "$PHYSICAL_NETWORK" >/dev/null
    record network "$PUBLIC_NET"
  fi
  if [ -z "$(id_of subnet "$PUBLIC_SUBNET")" ]; then
    os subnet create "$PUBLIC_SUBNET" --network "$PUBLIC_NET" --subnet-range "$PROVIDER_CIDR" \
      --gateway "$VPC_GATEWAY_IP" --allocation-pool "start=$POOL_START,end=$POOL_END" --no-dhcp >/dev/null
    record subnet "$PUBLIC_SUBNET"
  fi
  check_subnet "$PUBLIC_SUBNET" "$PROVIDER_CIDR"
  if [ -z "$(id_of router "$ROUTER")" ]; then
    os router create "$ROUTER" >/dev/null
    record router "$ROUTER"
  fi
  local gw_ips
  gw_ips=$(os router show "$ROUTER" -f json -c external_gateway_info |
    jq -r '.external_gateway_info.external_fixed_ips // [] | map(.ip_address) | join(" ")')
  if [ "$gw_ips" != "$GATEWAY_IP" ]; then
    [ -z "$gw_ips" ] || os router unset --external-gateway "$ROUTER"
    os router set "$ROUTER" --external-gateway "$PUBLIC_NET" \
      --fixed-ip "subnet=$PUBLIC_SUBNET,ip-address=$GATEWAY_IP"
  fi
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
    record interface "$TENANT_SUBNET"
  fi

  local router_id port_id
  router_id=$(id_of router "$ROUTER")
  port_id=$(os port list --router "$ROUTER" --device-owner network:router_gateway -f value -c ID)
  is_uuid "$router_id" || die "router $ROUTER has no id"
  is_uuid "$port_id" || die "router $ROUTER has no gateway port"
  save_params "$STATE/params" "${PARAMS[@]}"
  jq -cn --arg r "$router_id" --arg p "$port_id" '{router_id: $r, gateway_port_id: $p}'
}

remove() {
  [ -f "$CREATED" ] || { log "nothing recorded: nothing to remove"; return 0; }
  load_params "$STATE/params" "${PARAMS[@]}"
  local kind name
  while read -r kind name; do
    log "deleting $kind $name"
    case $kind in
      interface) os router remove subnet "$ROUTER" "$name" || true ;;
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
