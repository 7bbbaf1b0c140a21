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

# os ARGS... : the openstack CLI as cloud CLOUD of CLOUDS_YAML. Each call starts the CLI (1-2 s):
# apply lists each kind once and reads ids from what create prints, instead of a show per object.
os() { OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" openstack --os-cloud "$CLOUD" "$@"; }
# tenant_side NET_ID SUBNET_ID : the tenant network and subnet, each made if its id is empty;
# prints "<network id> <subnet id> new|old" (new: the subnet was made now).
tenant_side() {
  local net=$1 subnet=$2 made=old
  if [ -z "$net" ]; then
    net=$(os network create "$TENANT_NET" -f value -c id)
    record network "$TENANT_NET"
  fi
  if [ -z "$subnet" ]; then
    subnet=$(os subnet create "$TENANT_SUBNET" --network "$net" --subnet-range "$TENANT_CIDR" \
      --dns-nameserver "$TENANT_DNS" -f value -c id)
    record subnet "$TENANT_SUBNET"
    made=new
  fi
  printf '%s %s %s\n' "$net" "$subnet" "$made"
}
# cleanup : the EXIT trap of apply: listings still running (apply stopped early) end; the tenant
# side, if still running, is waited for (it records what it makes, for remove); $WORK goes.
cleanup() {
  stop_listings
  if [ -n "${TENANT_JOB:-}" ]; then wait "$TENANT_JOB" || true; fi
  rm -rf "$WORK"
}
# record KIND NAME : remember that apply created (or set) it, for remove.
record() { grep -qxF "$1 $2" "$CREATED" || printf '%s %s\n' "$1" "$2" >>"$CREATED"; }
# recorded KIND NAME : apply created it.
recorded() { grep -qxF "$1 $2" "$CREATED" 2>/dev/null; }
# named KIND LISTING NAME : the id of the one object called NAME in LISTING (JSON of a `list -f
# json`), empty if none; more than one is an error (which one would be ours?).
named() {
  local ids
  ids=$(jq -r --arg n "$3" '.[] | select(.Name == $n) | .ID' <<<"$2")
  [ "$(wc -l <<<"$ids")" -le 1 ] || die "more than one $1 is named $3: rename or delete the others"
  printf '%s\n' "$ids"
}
# field LISTING ID KEY : the field KEY of object ID in LISTING.
field() { jq -r --arg i "$2" --arg k "$3" '.[] | select(.ID == $i) | .[$k] // empty' <<<"$1"; }
# saved NAME DEFAULT : a parameter saved by apply (remove runs with what apply had).
saved() {
  local line
  line=$(grep -m1 "^$1=" "$STATE/params" 2>/dev/null || true)
  if [ -n "$line" ]; then printf '%s\n' "${line#*=}"; else printf '%s\n' "$2"; fi
}

# check_subnet NAME ID CIDR : an existing subnet must be the one asked for (no silent drift).
check_subnet() {
  local cidr
  cidr=$(field "$SUBNET_LIST" "$2" Subnet)
  [ "$cidr" = "$3" ] || die "subnet $1 exists with $cidr, not $3: remove this step first"
}

# external_subnet NETWORK_ID : the id of that network's subnet PROVIDER_CIDR, created if missing.
external_subnet() {
  local id name=$EXTERNAL_NETWORK-subnet other
  id=$(jq -r --arg n "$1" --arg c "$PROVIDER_CIDR" \
    'first(.[] | select(.Network == $n and .Subnet == $c) | .ID) // empty' <<<"$SUBNET_LIST")
  if [ -z "$id" ]; then
    other=$(named subnet "$SUBNET_LIST" "$name")
    [ -z "$other" ] || check_subnet "$name" "$other" "$PROVIDER_CIDR"
    id=$(os subnet create "$name" --network "$1" --subnet-range "$PROVIDER_CIDR" \
      --gateway "$VPC_GATEWAY_IP" --allocation-pool "start=$POOL_START,end=$POOL_END" --no-dhcp -f value -c id)
    record subnet "$name"
  elif ! recorded subnet "$name"; then
    log "using the existing subnet $id of $EXTERNAL_NETWORK; only $POOL_START-$POOL_END are registered addresses"
  fi
  printf '%s\n' "$id"
}

# gateway_ips ROUTER_ID : the fixed IPs of the existing router's external gateway (space-separated).
gateway_ips() {
  jq -r --arg i "$1" '.[] | select(.ID == $i) | ."External gateway info"
    | (.external_fixed_ips? // []) | map(.ip_address) | join(" ")' <<<"$ROUTER_LIST"
}

# check_router ROUTER_ID : a router this step did not create is taken only without another gateway.
check_router() {
  local gw_ips
  gw_ips=$(gateway_ips "$1")
  [ -z "$gw_ips" ] || [ "$gw_ips" = "$GATEWAY_IP" ] || recorded router "$ROUTER" || recorded gateway "$ROUTER" ||
    die "router $ROUTER (not created by this step) has gateway IP $gw_ips, not $GATEWAY_IP: unset it, or name another router"
}

# router_gateway ROUTER_ID SUBNET_ID : the existing ROUTER's external gateway fixed IP becomes GATEWAY_IP.
router_gateway() {
  local gw_ips
  gw_ips=$(gateway_ips "$1")
  [ "$gw_ips" != "$GATEWAY_IP" ] || return 0
  [ -z "$gw_ips" ] || os router unset --external-gateway "$1"
  os router set "$1" --external-gateway "$EXTERNAL_NETWORK" --fixed-ip "subnet=$2,ip-address=$GATEWAY_IP"
  recorded router "$ROUTER" || record gateway "$ROUTER"
}

# apply : find or create the networks and the router (see the header); print their ids as JSON.
apply() {
  load_params - "${PARAMS[@]}"
  validate_params
  command -v openstack >/dev/null || die "no openstack CLI on the host (DevStack: run install-openstack first)"
  [ -r "$CLOUDS_YAML" ] || die "no $CLOUDS_YAML (DevStack: run install-openstack first)"
  WORK=$(mktemp -d)
  trap cleanup EXIT
  # the subnets and routers listed side by side with the networks (lib.sh listing), as os calls the CLI
  OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" listing subnet --os-cloud "$CLOUD" subnet list -f json -c ID -c Name -c Network -c Subnet
  OS_CLIENT_CONFIG_FILE="$CLOUDS_YAML" listing router --os-cloud "$CLOUD" router list --long -f json -c ID -c Name \
    -c "External gateway info"
  # Before anything is saved: a wrong cloud must leave the state of the last good apply as it was.
  NETWORK_LIST=$(os network list -f json -c ID -c Name) || die "cloud $CLOUD of $CLOUDS_YAML does not answer"
  listed subnet SUBNET_LIST || die "openstack subnet list failed"
  listed router ROUTER_LIST || die "openstack router list failed"
  install -d -m 0700 "$STATE"
  touch "$CREATED"
  save_params "$STATE/params" "${PARAMS[@]}"

  # Every name resolved, and an existing tenant subnet checked, before the first change.
  local net_id subnet_id router_id tenant_net_id tenant_subnet_id ports port_id
  net_id=$(named network "$NETWORK_LIST" "$EXTERNAL_NETWORK")
  router_id=$(named router "$ROUTER_LIST" "$ROUTER")
  tenant_net_id=$(named network "$NETWORK_LIST" "$TENANT_NET")
  tenant_subnet_id=$(named subnet "$SUBNET_LIST" "$TENANT_SUBNET")
  [ -z "$tenant_subnet_id" ] || check_subnet "$TENANT_SUBNET" "$tenant_subnet_id" "$TENANT_CIDR"
  [ -z "$router_id" ] || check_router "$router_id"

  # The tenant network and subnet are made beside the external side (independent objects: their
  # CLI start-ups overlap); each object recorded as soon as it exists.
  tenant_side "$tenant_net_id" "$tenant_subnet_id" </dev/null >"$WORK/tenant" &
  TENANT_JOB=$!
  if [ -z "$net_id" ]; then
    net_id=$(os network create "$EXTERNAL_NETWORK" --external --provider-network-type flat \
      --provider-physical-network "$PHYSICAL_NETWORK" -f value -c id)
    record network "$EXTERNAL_NETWORK"
  fi
  subnet_id=$(external_subnet "$net_id")
  if [ -z "$router_id" ]; then # created with its gateway: one call
    router_id=$(os router create "$ROUTER" --external-gateway "$net_id" \
      --fixed-ip "subnet=$subnet_id,ip-address=$GATEWAY_IP" -f value -c id)
    record router "$ROUTER"
  else
    router_gateway "$router_id" "$subnet_id"
  fi
  local rc=0 made
  wait "$TENANT_JOB" || rc=$?
  TENANT_JOB=
  ((rc == 0)) || die "the tenant network $TENANT_NET or its subnet $TENANT_SUBNET could not be made"
  read -r tenant_net_id tenant_subnet_id made <"$WORK/tenant"
  # The router's ports, once: its gateway port, and whether the tenant subnet is attached. A
  # subnet made just now is not: it is attached while the ports are listed.
  local list_ports=(os port list --router "$router_id" --long -f json -c ID -c "Device Owner" -c "Fixed IP Addresses")
  if [ "$made" = new ]; then
    os router add subnet "$router_id" "$tenant_subnet_id" </dev/null &
    ports=$("${list_ports[@]}")
    wait $! || die "attaching $TENANT_SUBNET to router $ROUTER failed"
    record interface "$ROUTER/$TENANT_SUBNET"
  else
    ports=$("${list_ports[@]}")
    if ! jq -e --arg s "$tenant_subnet_id" '[.[] | select(."Device Owner" == "network:router_interface")
      | ."Fixed IP Addresses"[]?.subnet_id] | index($s)' <<<"$ports" >/dev/null; then
      os router add subnet "$router_id" "$tenant_subnet_id"
      record interface "$ROUTER/$TENANT_SUBNET"
    fi
  fi

  port_id=$(jq -r '[.[] | select(."Device Owner" == "network:router_gateway") | .ID] | join(" ")' <<<"$ports")
  is_uuid "$router_id" || die "router $ROUTER has no id"
  is_uuid "$port_id" || die "router $ROUTER has no gateway port"
  jq -cn --arg r "$router_id" --arg p "$port_id" '{router_id: $r, gateway_port_id: $p}'
}

# network_of SUBNET : the network apply made SUBNET on ('' for a name it does not make).
network_of() {
  case $1 in
    "$TENANT_SUBNET") echo "$TENANT_NET" ;;
    "$EXTERNAL_NETWORK-subnet") echo "$EXTERNAL_NETWORK" ;;
  esac
}

# remove : undo what apply recorded, newest first, with the cloud apply used.
remove() {
  [ -f "$CREATED" ] || { log "nothing recorded: nothing to remove"; return 0; }
  CLOUD=$(saved CLOUD devstack-admin)
  CLOUDS_YAML=$(saved CLOUDS_YAML /etc/openstack/clouds.yaml)
  EXTERNAL_NETWORK=$(saved EXTERNAL_NETWORK public)
  local kind name owner subnets=() networks=()
  while read -r kind name; do
    case $kind in
      interface)
        owner=router1 # records made before ROUTER was a parameter name only the subnet
        [[ $name == */* ]] && owner=${name%%/*} name=${name#*/}
        log "deleting interface $owner/$name"
        os router remove subnet "$owner" "$name" || true
        ;;
      gateway) log "unsetting the gateway of router $name" && { os router unset --external-gateway "$name" || true; } ;;
      router) log "deleting router $name" && os router delete "$name" ;; # its gateway port goes with it
      subnet) subnets+=("$name") ;;
      network) networks+=("$name") ;;
    esac
  done < <(tac "$CREATED")
  # Subnets and networks once no router uses them: one CLI start-up per kind (it takes several
  # names). Neutron deletes a network's subnets with it: a subnet goes on its own only when its
  # network stays (one start-up less when apply made both sides).
  local alone=()
  for name in "${subnets[@]}"; do
    owner=$(network_of "$name")
    [ -n "$owner" ] && [[ " ${networks[*]} " == *" $owner "* ]] || alone+=("$name")
  done
  if ((${#alone[@]})); then log "deleting subnets ${alone[*]}" && os subnet delete "${alone[@]}"; fi
  if ((${#networks[@]})); then
    log "deleting networks ${networks[*]} (with their subnets)" && os network delete "${networks[@]}"
  fi
  rm -rf "$STATE"
}

case ${1:-} in
  apply) apply ;;
  remove) remove ;;
  *) die "usage: $0 apply|remove (parameters on stdin)" ;;
esac
