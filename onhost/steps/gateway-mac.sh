#!/usr/bin/env bash
# gateway-mac: the article's MAC fix. The VPC forwards a frame only if its source MAC and source IP
# are registered together on one ENI; the router's gateway device (qg-… in qrouter-<router id>)
# holds the provider ENI's registered IP, so it must also send with that ENI's MAC.
#
#   gateway-mac.sh apply    params on stdin; waits (lib.sh await_targets) for the L3 agent to make
#                           the router namespace and plug the gateway device, and for the external
#                           bridge; sets the qg- device's MAC to PROVIDER_MAC and pins the
#                           external bridge's MAC (other-config:hwaddr) to a random locally
#                           administered MAC, so the bridge never takes the ENI's MAC as its own;
#                           the provider NIC's own MAC is left alone (ENA cannot change it). In
#                           the same transaction it pins the bridge's datapath ID
#                           (other-config:datapath-id) to the one it has: Open vSwitch derives the
#                           ID from the bridge MAC, and Neutron's OVS agent, which addresses br-ex
#                           by that ID, would otherwise block on its next br-ex flow change until
#                           of_connect_timeout (300 s; seen in the lab as "unknown dpid").
#   gateway-mac.sh remove   restores the recorded originals and deletes this step's state.
#   gateway-mac.sh reapply  applies again from the saved parameters (boot / re-created namespace);
#                           waits quietly (exit 0) while the namespace or the bridge does not exist.
#                           If the recorded gateway device is gone while the namespace is there
#                           (the router's gateway was cleared and set: Neutron made a new port, so
#                           a new qg- name), it follows the router: waits up to OOA_GATEWAY_WAIT
#                           seconds (default 10) for exactly one qg- device in the namespace, records
#                           it as the target with its own MAC as the original (what remove
#                           restores), and fixes it; none or several after the wait: an error
#                           naming them, nothing changed.
#
# Parameters (KEY=value lines on stdin): ROUTER_ID GATEWAY_PORT_ID PROVIDER_MAC EXTERNAL_BRIDGE
# VPC_GATEWAY_IP. apply prints one JSON line; "gateway_reachable" is the result of a ping from the
# router namespace to the VPC router. It is reported, not enforced: the MAC fix is a local,
# verifiable change, while ICMP to the VPC router can be unavailable for reasons of its own, and a
# failed step would stop the stack on a check rather than on a fault.
set -euo pipefail
OOA_STEP=gateway-mac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/gateway-mac
PARAMS=(ROUTER_ID GATEWAY_PORT_ID PROVIDER_MAC EXTERNAL_BRIDGE VPC_GATEWAY_IP)
ORIGINALS=(TARGET ORIG_DEV_MAC ORIG_BRIDGE_HWADDR BRIDGE_MAC ORIG_BRIDGE_DPID_PIN BRIDGE_DPID)
# How long reapply waits for the router's one gateway device when the recorded one is gone.
GATEWAY_WAIT=$(seconds OOA_GATEWAY_WAIT 10)

validate_params() {
  PROVIDER_MAC=${PROVIDER_MAC,,}
  need is_uuid ROUTER_ID
  need is_uuid GATEWAY_PORT_ID
  need is_mac PROVIDER_MAC
  (((0x${PROVIDER_MAC:0:2} & 1) == 0)) || die "parameter PROVIDER_MAC is a multicast MAC: $PROVIDER_MAC"
  [[ $EXTERNAL_BRIDGE =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "parameter EXTERNAL_BRIDGE is not a valid bridge name: '$EXTERNAL_BRIDGE'"
  need is_ipv4 VPC_GATEWAY_IP
  NS=qrouter-$ROUTER_ID
  DEV=qg-${GATEWAY_PORT_ID:0:11}
}

# missing : what of the targets is not there (yet); nothing when all are. The L3 agent sets the
# gateway device up once it has plugged it (with Neutron's MAC): a MAC set before that could be
# overwritten by the agent.
missing() {
  if ! netns_exists "$NS"; then
    echo "router namespace $NS does not exist"
  elif ! dev_exists "$DEV"; then
    echo "gateway device $DEV does not exist in namespace $NS"
  elif ! dev_up "$DEV"; then
    echo "gateway device $DEV in namespace $NS is not up"
  elif ! ovs-vsctl br-exists "$EXTERNAL_BRIDGE" 2>/dev/null; then
    echo "Open vSwitch bridge $EXTERNAL_BRIDGE does not exist"
  fi
}

current_dev_mac() { ip -n "$NS" -o link show dev "$DEV" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2; }
# dev_exists DEV : the device is in the router namespace.
dev_exists() { ip -n "$NS" link show dev "$1" >/dev/null 2>&1; }
# dev_up DEV : the device is administratively up (UP among its flags).
dev_up() {
  local flags
  flags=$(ip -n "$NS" -o link show dev "$1" 2>/dev/null) || return 1
  flags=${flags#*<}
  [[ ,${flags%%>*}, == *,UP,* ]]
}

# gateway_devs : the qg- devices in the router namespace, one a line (the L3 agent names the
# router's gateway device qg-<first 11 characters of its port id>).
gateway_devs() {
  local name
  ip -n "$NS" -o link show | while IFS=': ' read -r _ name _; do
    name=${name%%@*}
    [[ $name =~ ^qg-[A-Za-z0-9_.-]{1,12}$ ]] && printf '%s\n' "$name"
  done
  return 0
}

# target_dev : the device the recorded TARGET (namespace/device/bridge) names: the one this step
# changed, which reapply may have moved to a re-created gateway port (so not always the
# GATEWAY_PORT_ID parameter's).
target_dev() {
  local dev=${TARGET#*/}
  dev=${dev%%/*}
  [[ $dev =~ ^qg-[A-Za-z0-9_.-]{1,12}$ ]] || die "state $STATE/originals: TARGET names no gateway device: '$TARGET'"
  printf '%s\n' "$dev"
}

# follow_gateway : the recorded device DEV is gone but the namespace is there; wait (bounded) for
# exactly one qg- device, then make it DEV and record it, with its own MAC as the original. Returns
# 1 if the namespace goes away meanwhile (the caller waits for it); dies on none or several.
follow_gateway() {
  local devs=() waited=0
  while :; do
    netns_exists "$NS" || { log "waiting: router namespace $NS does not exist"; return 1; }
    mapfile -t devs < <(gateway_devs)
    ((${#devs[@]} != 1 && waited < GATEWAY_WAIT)) || break
    sleep 1
    waited=$((waited + 1))
  done
  if ((${#devs[@]} == 0)); then
    die "gateway device $DEV is gone and namespace $NS has no qg- device after ${GATEWAY_WAIT} s" \
      "(router gateway cleared?): nothing to fix"
  elif ((${#devs[@]} > 1)); then
    die "gateway device $DEV is gone and namespace $NS has several qg- devices: ${devs[*]}; not guessing"
  fi
  log "gateway device $DEV is gone (gateway port re-created): following the router's ${devs[0]}"
  DEV=${devs[0]}
  TARGET=$NS/$DEV/$EXTERNAL_BRIDGE ORIG_DEV_MAC=$(current_dev_mac)
  save_params "$STATE/originals" "${ORIGINALS[@]}"
}

bridge_hwaddr() { ovs-vsctl --if-exists get bridge "$EXTERNAL_BRIDGE" other-config:hwaddr | tr -d '"'; }
bridge_dpid_pin() { ovs-vsctl --if-exists get bridge "$EXTERNAL_BRIDGE" other-config:datapath-id | tr -d '"'; }
bridge_dpid() { ovs-vsctl get bridge "$EXTERNAL_BRIDGE" datapath_id | tr -d '"'; }

# Set the qg- MAC and the bridge MAC where they differ from the wanted ones (idempotent).
converge() {
  if [ "$(current_dev_mac)" != "$PROVIDER_MAC" ]; then
    ip -n "$NS" link set dev "$DEV" address "$PROVIDER_MAC"
    log "$NS $DEV: MAC set to $PROVIDER_MAC"
  fi
  if [ "$(bridge_hwaddr)" != "$BRIDGE_MAC" ] || [ "$(bridge_dpid_pin)" != "$BRIDGE_DPID" ]; then
    ovs-vsctl set bridge "$EXTERNAL_BRIDGE" "other-config:datapath-id=\"$BRIDGE_DPID\"" \
      "other-config:hwaddr=\"$BRIDGE_MAC\""
    log "bridge $EXTERNAL_BRIDGE: MAC pinned to $BRIDGE_MAC, datapath ID kept at $BRIDGE_DPID"
  fi
}

report() {
  printf '{"namespace":"%s","device":"%s","mac":"%s","bridge":"%s","bridge_mac":"%s","gateway_ip":"%s","gateway_reachable":%s}\n' \
    "$NS" "$DEV" "$(current_dev_mac)" "$EXTERNAL_BRIDGE" "$(bridge_hwaddr)" "$VPC_GATEWAY_IP" "$1"
}

# The originals, recorded once per target (router, device, bridge): what remove restores.
load_originals() {
  ORIG_DEV_MAC='' ORIG_BRIDGE_HWADDR='' BRIDGE_MAC='' TARGET='' ORIG_BRIDGE_DPID_PIN='' BRIDGE_DPID=''
  [ -f "$STATE/originals" ] && load_params "$STATE/originals" "${ORIGINALS[@]}"
  return 0
}

restore_originals() {
  if netns_exists "$NS" && ip -n "$NS" link show dev "$DEV" >/dev/null 2>&1; then
    if [ "$(current_dev_mac)" != "$ORIG_DEV_MAC" ]; then
      ip -n "$NS" link set dev "$DEV" address "$ORIG_DEV_MAC"
      log "$NS $DEV: MAC restored to $ORIG_DEV_MAC"
    fi
  else
    log "$NS/$DEV is gone: no MAC to restore"
  fi
  if ovs-vsctl br-exists "$EXTERNAL_BRIDGE" 2>/dev/null; then
    # one transaction: the MAC and the datapath ID go back together (the ID stays the same)
    local args=(-- remove bridge "$EXTERNAL_BRIDGE" other-config hwaddr
      -- remove bridge "$EXTERNAL_BRIDGE" other-config datapath-id)
    [ -z "$ORIG_BRIDGE_HWADDR" ] ||
      args+=(-- set bridge "$EXTERNAL_BRIDGE" "other-config:hwaddr=\"$ORIG_BRIDGE_HWADDR\"")
    [ -z "$ORIG_BRIDGE_DPID_PIN" ] ||
      args+=(-- set bridge "$EXTERNAL_BRIDGE" "other-config:datapath-id=\"$ORIG_BRIDGE_DPID_PIN\"")
    ovs-vsctl "${args[@]}"
    log "bridge $EXTERNAL_BRIDGE: other-config:hwaddr restored to '${ORIG_BRIDGE_HWADDR:-<unset>}'," \
      "datapath-id to '${ORIG_BRIDGE_DPID_PIN:-<unset>}'"
  fi
}

apply() {
  load_params - "${PARAMS[@]}"
  validate_params
  await_targets
  lock_step "$STATE"
  local target=$NS/$DEV/$EXTERNAL_BRIDGE new_params=("${PARAMS[@]}")
  load_originals
  if [ -n "$TARGET" ] && [ "$TARGET" != "$target" ]; then
    # The router, port or bridge changed: undo what we did to the old ones first.
    local saved=() name
    for name in "${new_params[@]}"; do saved+=("$name=${!name}"); done
    load_params "$STATE/params" "${PARAMS[@]}"
    validate_params
    DEV=$(target_dev)
    restore_originals
    for name in "${saved[@]}"; do printf -v "${name%%=*}" '%s' "${name#*=}"; done
    validate_params
    TARGET=''
  fi
  if [ -z "$TARGET" ]; then
    TARGET=$target ORIG_DEV_MAC=$(current_dev_mac) ORIG_BRIDGE_HWADDR=$(bridge_hwaddr)
    ORIG_BRIDGE_DPID_PIN=$(bridge_dpid_pin) BRIDGE_DPID=$(bridge_dpid)
    [[ $BRIDGE_DPID =~ ^[0-9a-f]{16}$ ]] || die "bridge $EXTERNAL_BRIDGE has no datapath ID yet: '$BRIDGE_DPID'"
    BRIDGE_MAC=$(random_local_mac)
    save_params "$STATE/originals" "${ORIGINALS[@]}"
  fi
  save_params "$STATE/params" "${PARAMS[@]}"
  converge
  install_reapply_units gateway-mac
  local reachable=false
  if ip netns exec "$NS" ping -n -q -c 1 -w 3 "$VPC_GATEWAY_IP" >/dev/null 2>&1; then
    reachable=true
  else
    log "warning: VPC gateway $VPC_GATEWAY_IP does not answer ping from $NS"
  fi
  report "$reachable"
}

# The state of the last apply, under the step's lock: its parameters, the originals, the device it targets.
load_applied() {
  lock_step "$STATE"
  load_params "$STATE/params" "${PARAMS[@]}"
  validate_params
  load_originals
  [ -z "$TARGET" ] || DEV=$(target_dev)
}

reapply() {
  [ -f "$STATE/params" ] || { log "nothing applied: nothing to re-apply"; return 0; }
  load_applied
  if netns_exists "$NS" && ! dev_exists "$DEV"; then
    follow_gateway || return 0
  fi
  present || return 0
  converge
  report null
}

remove() {
  [ -f "$STATE/params" ] || { log "no state: nothing to remove"; return 0; }
  load_applied
  restore_originals
  remove_reapply_units gateway-mac
  rm -rf "$STATE" "$STATE.lock"
  printf '{"removed":true,"namespace":"%s","device":"%s"}\n' "$NS" "$DEV"
}

case "${1:-}" in
  apply | remove | reapply) "$1" ;;
  *) die "usage: $0 apply|remove|reapply (parameters as KEY=value lines on stdin)" ;;
esac
