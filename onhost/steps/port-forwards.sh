#!/usr/bin/env bash
# port-forwards: the article's inbound access. Each forward proto:publicPort:tenantIp:tenantPort
# becomes a DNAT rule for the router gateway's registered IP (GATEWAY_IP, the provider ENI's primary
# private IP, reached from the internet through its Elastic IP) in the nat table of
# qrouter-<ROUTER_ID>, in a chain of our own (OOA-PORTFWD) jumped to from the top of PREROUTING.
#
#   port-forwards.sh apply    params on stdin; waits (lib.sh await_targets) for the L3 agent to put
#                             GATEWAY_IP in the router namespace; replaces the chain's rules atomically
#                             (one iptables-restore --noflush transaction) with exactly the configured ones
#   port-forwards.sh remove   deletes our jump and chain, and this step's state; nothing else
#   port-forwards.sh reapply  applies again from the saved parameters (boot / re-created namespace);
#                             waits quietly (exit 0) while the namespace or GATEWAY_IP is not there
#
# Why this coexists with Neutron: the L3 agent's iptables_manager (neutron/agent/linux/
# iptables_manager.py, _modify_rules) keeps every line of iptables-save that does not carry its
# wrap name ("neutron-l3-agent") and applies only the diff with iptables-restore -n, so a chain not
# named neutron-* and a jump into it survive its resyncs; only a re-created namespace loses them,
# which is what reapply (run by a systemd timer, see lib.sh) is for. The agent may put its own jump
# above ours; the order does not matter, as its PREROUTING rules never match GATEWAY_IP's ports
# (floating IPs are other addresses; the metadata redirect is for 169.254.169.254 on qr-).
# No jump from nat OUTPUT: the
# forwards are for traffic arriving from outside; nothing in the router namespace should use them.
#
# Parameters (KEY=value lines on stdin): ROUTER_ID GATEWAY_IP FORWARDS (comma-separated, may be
# empty, e.g. tcp:522:192.168.100.10:22,udp:5353:192.168.100.11:53). Prints one JSON line.
set -euo pipefail
OOA_STEP=port-forwards
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/port-forwards
PARAMS=(ROUTER_ID GATEWAY_IP FORWARDS)
CHAIN=OOA-PORTFWD
COMMENT=openstack-on-aws

validate_params() {
  local fwd proto pport tip tport extra
  local -A seen=()
  need is_uuid ROUTER_ID
  need is_ipv4 GATEWAY_IP
  NS=qrouter-$ROUTER_ID
  RULES=() JSON=()
  [ -z "$FORWARDS" ] && return 0
  local IFS=,
  for fwd in $FORWARDS; do
    IFS=: read -r proto pport tip tport extra <<<"$fwd"
    if [ -n "${extra:-}" ] || [ -z "${tport:-}" ]; then
      die "forward '$fwd' is not proto:publicPort:tenantIp:tenantPort"
    fi
    [[ $proto == tcp || $proto == udp ]] || die "forward '$fwd': protocol must be tcp or udp"
    is_port "$pport" || die "forward '$fwd': public port '$pport' is not a port (1-65535)"
    is_ipv4 "$tip" || die "forward '$fwd': tenant IP '$tip' is not an IPv4 address"
    is_port "$tport" || die "forward '$fwd': tenant port '$tport' is not a port (1-65535)"
    [ -z "${seen[$proto/$((10#$pport))]:-}" ] || die "forward '$fwd': $proto port $pport is forwarded twice"
    seen[$proto/$((10#$pport))]=1
    RULES+=("-A $CHAIN -d $GATEWAY_IP/32 -p $proto -m $proto --dport $((10#$pport)) -m comment --comment $COMMENT -j DNAT --to-destination $tip:$((10#$tport))")
    JSON+=("{\"proto\":\"$proto\",\"public_port\":$((10#$pport)),\"to\":\"$tip:$((10#$tport))\"}")
  done
}

# missing : what is not there (yet) of the router namespace with the gateway IP on one of its
# devices (the L3 agent adds it once the gateway device is plugged); nothing when both are.
missing() {
  if ! netns_exists "$NS"; then
    echo "router namespace $NS does not exist"
  elif [[ $(ip -n "$NS" -4 -o addr show) != *" inet $GATEWAY_IP/"* ]]; then
    echo "gateway IP $GATEWAY_IP is not on any device in namespace $NS"
  fi
}

nsipt() { ip netns exec "$NS" "$@"; }
has_jump() { nsipt iptables -w -t nat -C PREROUTING -j "$CHAIN" 2>/dev/null; }
has_chain() { nsipt iptables -w -t nat -S "$CHAIN" >/dev/null 2>&1; }

# Make the chain hold exactly RULES, with one jump at the top of PREROUTING, in one transaction.
converge() {
  local current wanted
  current=$(nsipt iptables -w -t nat -S "$CHAIN" 2>/dev/null | grep -v "^-N " || true)
  wanted=$(printf '%s\n' "${RULES[@]}" | grep -v '^$' || true)
  if has_chain && has_jump && [ "$current" = "$wanted" ]; then
    return 0
  fi
  {
    echo '*nat'
    echo ":$CHAIN - [0:0]" # --noflush: declares the chain, flushing it if it exists
    has_jump || echo "-I PREROUTING 1 -j $CHAIN"
    [ -n "$wanted" ] && printf '%s\n' "$wanted"
    echo COMMIT
  } | nsipt iptables-restore -w 10 --noflush
  log "$NS: $CHAIN set to ${#RULES[@]} forward(s)"
}

report() {
  local IFS=,
  printf '{"namespace":"%s","chain":"%s","gateway_ip":"%s","forwards":[%s]}\n' "$NS" "$CHAIN" "$GATEWAY_IP" "${JSON[*]}"
}

apply() {
  load_params - "${PARAMS[@]}"
  validate_params
  await_targets
  lock_step "$STATE"
  if [ -f "$STATE/params" ]; then
    local new_ns=$NS
    NS=qrouter-$(sed -n 's/^ROUTER_ID=//p' "$STATE/params")
    # The router changed: take our chain out of the old namespace first.
    if [ "$NS" != "$new_ns" ] && netns_exists "$NS"; then delete_chain; fi
    NS=$new_ns
  fi
  save_params "$STATE/params" "${PARAMS[@]}"
  converge
  install_reapply_units port-forwards
  report
}

reapply() {
  [ -f "$STATE/params" ] || { log "nothing applied: nothing to re-apply"; return 0; }
  lock_step "$STATE"
  load_params "$STATE/params" "${PARAMS[@]}"
  validate_params
  present || return 0
  converge
  report
}

delete_chain() {
  while has_jump; do nsipt iptables -w -t nat -D PREROUTING -j "$CHAIN"; done
  if has_chain; then
    nsipt iptables -w -t nat -F "$CHAIN"
    nsipt iptables -w -t nat -X "$CHAIN"
  fi
  log "$NS: $CHAIN and its jump deleted"
}

remove() {
  [ -f "$STATE/params" ] || { log "no state: nothing to remove"; return 0; }
  lock_step "$STATE"
  load_params "$STATE/params" "${PARAMS[@]}"
  validate_params
  if netns_exists "$NS"; then delete_chain; else log "$NS is gone: no rules to delete"; fi
  remove_reapply_units port-forwards
  rm -rf "$STATE" "$STATE.lock"
  printf '{"removed":true,"namespace":"%s","chain":"%s"}\n' "$NS" "$CHAIN"
}

case "${1:-}" in
  apply | remove | reapply) "$1" ;;
  *) die "usage: $0 apply|remove|reapply (parameters as KEY=value lines on stdin)" ;;
esac
