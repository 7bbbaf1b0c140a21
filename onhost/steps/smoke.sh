#!/usr/bin/env bash
# smoke: the cloud proves itself at the end of `up`. A CirrOS VM (the image DevStack uploads) boots
# on the tenant network, at a port forward's tenant IP when one is given; it must become ACTIVE,
# answer ping from the router namespace, and — through a user-data script whose output lands in its
# console log — reach the VPC router and the internet, where the internet must see the provider
# Elastic IP as its source. Everything it creates is deleted before it exits, pass or fail.
#
#   smoke.sh apply    params on stdin; deletes leftovers of an interrupted run, runs the test,
#                     deletes the VM, its port and its security group, prints one JSON line of
#                     evidence; exits 1 with "smoke test failed: <why>" when the cloud does not work
#   smoke.sh remove   deletes whatever a killed run left behind (nothing else; no state is kept)
#
# Parameters (KEY=value lines on stdin): ROUTER_ID TENANT_NETWORK TENANT_IP (may be empty)
# VPC_GATEWAY_IP PROBE_URL (an http:// URL that answers with the caller's IPv4 address, e.g.
# http://checkip.amazonaws.com/) EXPECTED_PUBLIC_IP (the provider's public IP: the Elastic IP on AWS;
# empty on an existing machine without host.providerPublicIp, where any answer of the internet
# passes and the address it saw is reported). Runs the openstack CLI
# as DevStack's admin (cloud `devstack-admin`), like external-gateway: no secret is passed to it (it
# reads the admin password from the CLI's clouds.yaml only to mask it in Nova's errors).
# The VPC router's answer to ping is evidence, not a verdict (it may ignore ICMP; gateway-mac says
# the same): the internet seen through it is the verdict.
set -euo pipefail
OOA_STEP=smoke
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PARAMS=(ROUTER_ID TENANT_NETWORK TENANT_IP VPC_GATEWAY_IP PROBE_URL EXPECTED_PUBLIC_IP)
NAME=openstack-on-aws-smoke # the server, its port and its security group: found again by name
CLOUD=devstack-admin        # DevStack's admin, in its clouds.yaml
FLAVORS=(cirros256 m1.nano m1.tiny)
POLL=3                # seconds between two calls to the cloud (each call starts the CLI: ~1 s of CPU)
ACTIVE_POLLS=100      # ~5 min for ACTIVE
PING_POLL=2           # seconds between pings from the router namespace (no call to the cloud)
PING_POLLS=120        # ~4 min for the first answer from the router namespace (DHCP after boot)
CONSOLE_POLLS=200     # ~10 min for the user-data script to finish (QEMU emulation is slow)
MARK=OOA-SMOKE        # the user-data script's console lines: "OOA-SMOKE key=value"
FAULT_BYTES=4096      # at most this much of why the server went to ERROR (server_error says why)

# validate_params : refuse bad parameters before any call to the cloud; sets NS.
validate_params() {
  need is_uuid ROUTER_ID
  [[ $TENANT_NETWORK =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "parameter TENANT_NETWORK is not a network name: '$TENANT_NETWORK'"
  [ -z "$TENANT_IP" ] || need is_ipv4 TENANT_IP
  need is_ipv4 VPC_GATEWAY_IP
  [ -z "$EXPECTED_PUBLIC_IP" ] || need is_ipv4 EXPECTED_PUBLIC_IP
  [[ $PROBE_URL =~ ^http://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$ ]] ||
    die "parameter PROBE_URL is not a plain http:// URL: '$PROBE_URL'"
  NS=qrouter-$ROUTER_ID
}

# os ARGS... : the openstack CLI as DevStack's admin (project admin). A failure returns its status
# to the caller (rather than exiting inside), so the ERR trap names the caller's command.
os() {
  local rc=0
  openstack --os-cloud "$CLOUD" "$@" || rc=$?
  return "$rc"
}

# json_str TEXT : TEXT as a JSON string (quotes, backslashes and control characters escaped).
json_str() { jq -Rn --arg v "$1" '$v'; }

# user_data : the script CirrOS runs at boot (busybox sh); its output goes to the serial console.
# It pings the VPC router, resolves the probe's name (the tenant subnet's DNS is the VPC resolver,
# reached through the VPC router) and fetches the probe URL, which answers with the caller's address.
user_data() {
  local PROBE_HOST=${PROBE_URL#http://} unresolved=''
  PROBE_HOST=${PROBE_HOST%%[:/]*}
  # a name the VPC resolver did not resolve is not fetched (an address needs no resolver: one try)
  ! is_ipv4 "$PROBE_HOST" || unresolved=1
  cat <<EOF
#!/bin/sh
[ -w /dev/console ] && exec >/dev/console 2>&1
say() { echo "$MARK \$*"; }
say begin
if ping -c 3 -W 2 $VPC_GATEWAY_IP >/dev/null 2>&1; then say vpc_router_ping=ok; else say vpc_router_ping=fail; fi
tries="1 2 3 4 5 6"
if nslookup ${PROBE_HOST} >/dev/null 2>&1; then say vpc_dns=ok; else say vpc_dns=fail; tries="$unresolved"; fi
seen=
for try in \$tries; do
  seen=\$(curl -s -m 10 $PROBE_URL 2>/dev/null || wget -q -T 10 -O - $PROBE_URL 2>/dev/null)
  [ -n "\$seen" ] && break
  sleep 5
done
say internet_seen_as=\$(echo "\$seen" | tr -cd '0-9.')
say end
EOF
}

# leftovers : list, side by side (lib.sh listing), what an interrupted run may have left: servers,
# the tenant network's ports (JSON, with their addresses: the tenant IP's check reads them too) and
# admin's security groups (the admin sees every project's).
leftovers() {
  local cloud=(--os-cloud "$CLOUD")
  listing servers "${cloud[@]}" server list --name "^$NAME\$" -f value -c ID
  listing ports "${cloud[@]}" port list --network "$TENANT_NETWORK" -f json -c ID -c Name -c "Fixed IP Addresses"
  listing groups "${cloud[@]}" security group list --project admin -f value -c ID -c Name
}

# delete_listed : delete what leftovers found named NAME: the server (waiting until it is gone),
# then the port, then the security group; sets PORTS (the network's ports but those). Status 1
# when a listing failed (the cloud does not answer).
delete_listed() {
  local id servers ports groups
  listed servers servers || return 1
  listed ports PORTS || return 1
  listed groups groups || return 1
  for id in $servers; do
    log "deleting server $id"
    os server delete --wait "$id" || log "warning: server $id not deleted"
  done
  ports=$(jq -r --arg n "$NAME" '.[] | select(.Name == $n) | .ID' <<<"$PORTS")
  for id in $ports; do
    log "deleting port $id"
    os port delete "$id" || log "warning: port $id not deleted"
  done
  PORTS=$(jq -c --arg n "$NAME" 'map(select(.Name != $n))' <<<"$PORTS")
  groups=$(awk -v n="$NAME" '$2 == n {print $1}' <<<"$groups")
  for id in $groups; do
    log "deleting security group $id"
    os security group delete "$id" || log "warning: security group $id not deleted"
  done
}

# cleanup : delete whatever a run left (listed by name: a call that failed may still have made something).
cleanup() {
  leftovers
  delete_listed
}

# delete_made : the passing run's clean-up: what it made, by ID (three calls fewer than cleanup's
# listings; a failed run lists by name instead, as a call that failed may still have made something).
delete_made() {
  os server delete --wait "$SERVER" || log "warning: server $SERVER not deleted"
  os port delete "$PORT" || log "warning: port $PORT not deleted"
  os security group delete "$GROUP" || log "warning: security group $GROUP not deleted"
}

# count_left : set LEFT to the servers still there (what the evidence reports).
count_left() { LEFT=$(os server list --name "^$NAME\$" -f value -c ID | awk 'NF' | wc -l); }

# server_error : why the server went to ERROR, as Nova tells it: its fault (message, then details:
# a traceback for an unexpected error), then each failed event of its actions with its host and its
# traceback's last exception. A build that ran out of hosts to retry on has a fault that says only
# that ("Exceeded maximum number of retries. Exhausted all hosts ..."): the compute host's reason is
# in its event. At most FAULT_BYTES: tracebacks can run to tens of KB, and this text becomes the
# step's error, which Pulumi prints and keeps in the stack's state, so DevStack's admin password is
# masked in it: DevStack gives it to the database, RabbitMQ and the service users too (the program's
# local.conf), and a fault or a traceback can carry a connection URL. The password is the CLI's own
# (clouds.yaml, as it reads it; no call to the cloud), read only on this path.
server_error() {
  local req secret
  secret=$(os configuration show --unmask -f value -c auth.password 2>/dev/null || true)
  {
    os server show "$SERVER" -f json -c fault | jq -r '.fault // {} | (.message // ""), (.details // "") | select(. != "")'
    for req in $(os server event list "$SERVER" -f value -c "Request ID" || true); do
      os server event show "$SERVER" "$req" -f json | jq -r '.events[]? | select(.result == "Error") |
        "\(.event) on \(.host // "?"): " + ((.traceback // "") | split("\n") | map(select(length > 0)) |
        (map(startswith(" ")) | indices(true) | last // -1) as $i | .[$i + 1:] | join("\n") |
        if . == "" then "Error" else . end)' || true
    done
  } | mask "$secret" | head -c "$FAULT_BYTES"
}

# since_start : the seconds since apply started, for the progress lines (QEMU emulation makes a boot
# take minutes: the log says what the step waits for).
since_start() { echo "$((SECONDS - START)) s in"; }

# fail WHY : record why the cloud does not work and stop (the EXIT trap cleans up and reports).
fail() { FAILURE=$1; exit 1; }

# on_error LINE : the ERR trap: an unexpected failure, named by that line of this script (BASH_COMMAND
# would name `return` when os returns a failure).
on_error() {
  local text
  text=$(sed -n "${1}p" "${BASH_SOURCE[0]}" | sed 's/^ *//' | cut -c1-200)
  FAILURE=${FAILURE:-"command failed (line $1): $text"}
}

# console_value KEY : the last "OOA-SMOKE KEY=value" of the console log read last.
console_value() { grep -a "^$MARK $1=" <<<"$CONSOLE" | tail -n 1 | cut -d= -f2- | tr -d '\r' || true; }

# report true|false : the one JSON line of evidence.
report() {
  printf '{"ok":%s,"failure":%s,"image":%s,"flavor":%s,"server":%s,"tenant_ip":%s,"tenant_ip_in_use":%s,"status":%s,"answers_from_router":%s,"user_data_ran":%s,"vpc_router_ping":%s,"vpc_dns":%s,"internet_seen_as":%s,"expected_public_ip":%s,"servers_left":%s}\n' \
    "$1" "$(json_str "${FAILURE:-}")" "$(json_str "$IMAGE")" "$(json_str "$FLAVOR")" "$(json_str "$SERVER")" \
    "$(json_str "$VM_IP")" "$IP_IN_USE" "$(json_str "$STATUS")" "$ANSWERS" "$USER_DATA_RAN" \
    "$(json_str "$VPC_PING")" "$(json_str "$VPC_DNS")" "$(json_str "$SEEN_AS")" "$(json_str "$EXPECTED_PUBLIC_IP")" "${LEFT:-null}"
}

# finish : the EXIT trap of apply: clean up, print the evidence, and exit with a clear message.
finish() {
  local rc=$?
  trap - EXIT ERR
  set +e
  stop_listings
  [ -z "$SERVER" ] || log "deleting what the test made ($(since_start))"
  if [ "$rc" -eq 0 ]; then delete_made; else cleanup; fi
  count_left
  [ "$rc" -ne 0 ] || FAILURE=''
  if [ "$rc" -eq 0 ] && [ "${LEFT:-0}" -ne 0 ]; then FAILURE="server $NAME could not be deleted" rc=1; fi
  if [ "$rc" -eq 0 ]; then report true; else report false; fi
  if [ "$rc" -ne 0 ]; then
    [ -z "$CONSOLE" ] || { log "console log (last 25 lines):"; tail -n 25 <<<"$CONSOLE" >&2; }
    log "error: smoke test failed: ${FAILURE:-unexpected error}"
  else
    log "passed: the internet sees the VM as ${SEEN_AS} ($(since_start))"
  fi
  rm -rf "$WORK"
  exit "$rc"
}

# smoke : the test itself; each way the cloud can fail calls fail with the reason.
smoke() {
  local port port_args=() i images flavors userdata=$WORK/user-data
  listed images images
  IMAGE=$(grep -i -m 1 cirros <<<"$images" || true)
  [ -n "$IMAGE" ] || fail "no CirrOS image in Glance (DevStack uploads one)"
  listed flavors flavors
  for i in "${FLAVORS[@]}"; do grep -qx "$i" <<<"$flavors" && { FLAVOR=$i; break; }; done
  [ -n "$FLAVOR" ] || fail "none of the flavors ${FLAVORS[*]} exists"

  GROUP=$(os security group create "$NAME" --description "openstack-on-aws smoke test (deleted after it)" -f value -c id)
  os security group rule create --ingress --protocol icmp "$GROUP" >/dev/null # ping from the router
  if [ -n "$TENANT_IP" ]; then
    if jq -e --arg ip "$TENANT_IP" 'any(.[]; any(."Fixed IP Addresses"[]?; .ip_address == $ip))' <<<"$PORTS" >/dev/null; then
      IP_IN_USE=true
      log "tenant IP $TENANT_IP is in use: the VM takes another address"
    else
      port_args=(--fixed-ip "ip-address=$TENANT_IP")
    fi
  fi
  port=$(os port create "$NAME" --network "$TENANT_NETWORK" "${port_args[@]}" --security-group "$GROUP" -f json -c id -c fixed_ips)
  VM_IP=$(jq -r '.fixed_ips[0].ip_address // empty' <<<"$port")
  PORT=$(jq -r .id <<<"$port")
  is_ipv4 "$VM_IP" || fail "port $PORT has no IPv4 address"

  user_data >"$userdata"
  SERVER=$(os server create "$NAME" --image "$IMAGE" --flavor "$FLAVOR" --port "$PORT" --user-data "$userdata" -f value -c id)
  log "booting server $SERVER ($IMAGE, $FLAVOR) at $VM_IP on $TENANT_NETWORK ($(since_start)); waiting up to $((ACTIVE_POLLS * POLL)) s for ACTIVE"
  for ((i = 0; i < ACTIVE_POLLS; i++)); do
    STATUS=$(os server show "$SERVER" -f value -c status)
    [ "$STATUS" = ACTIVE ] && break
    [ "$STATUS" != ERROR ] || fail "server went to ERROR: $(server_error)"
    sleep "$POLL"
  done
  [ "$STATUS" = ACTIVE ] || fail "server not ACTIVE after $((ACTIVE_POLLS * POLL)) s (status $STATUS)"

  log "server ACTIVE ($(since_start)); waiting up to $((PING_POLLS * PING_POLL)) s for its answer to ping from $NS"
  for ((i = 0; i < PING_POLLS; i++)); do
    if ip netns exec "$NS" ping -n -q -c 1 -w 2 "$VM_IP" >/dev/null 2>&1; then ANSWERS=true; break; fi
    sleep "$PING_POLL"
  done
  [ "$ANSWERS" = true ] || fail "the VM at $VM_IP does not answer ping from $NS"

  log "the VM answers ping ($(since_start)); waiting up to $((CONSOLE_POLLS * POLL)) s for its user-data script's end in its console log"
  for ((i = 0; i < CONSOLE_POLLS; i++)); do
    CONSOLE=$(os console log show "$SERVER" 2>/dev/null || true)
    grep -aq "^$MARK end" <<<"$CONSOLE" && break
    sleep "$POLL"
  done
  grep -aq "^$MARK begin" <<<"$CONSOLE" && USER_DATA_RAN=true
  VPC_PING=$(console_value vpc_router_ping)
  VPC_DNS=$(console_value vpc_dns)
  SEEN_AS=$(console_value internet_seen_as)
  [ "$USER_DATA_RAN" = true ] || fail "the VM's user-data script left no output in its console log (metadata service?)"
  grep -aq "^$MARK end" <<<"$CONSOLE" || fail "the VM's user-data script did not finish in $((CONSOLE_POLLS * POLL)) s"
  [ -n "$SEEN_AS" ] ||
    fail "the VM did not reach the internet ($PROBE_URL); VPC router ping: ${VPC_PING:-unknown}, VPC DNS: ${VPC_DNS:-unknown}"
  is_ipv4 "$SEEN_AS" || fail "the probe $PROBE_URL did not answer with an IPv4 address: '$SEEN_AS'"
  [ -z "$EXPECTED_PUBLIC_IP" ] || [ "$SEEN_AS" = "$EXPECTED_PUBLIC_IP" ] ||
    fail "the internet sees the VM as $SEEN_AS, not as the provider Elastic IP $EXPECTED_PUBLIC_IP"
}

# apply : run the smoke test (see the header); the EXIT trap cleans up and reports on every path.
apply() {
  load_params - "${PARAMS[@]}"
  validate_params
  command -v openstack >/dev/null || die "no openstack CLI: run install-openstack first"
  netns_exists "$NS" || die "router namespace $NS does not exist: run external-gateway first"
  IMAGE='' FLAVOR='' SERVER='' VM_IP='' STATUS='' VPC_PING='' VPC_DNS='' SEEN_AS='' CONSOLE='' FAILURE=''
  IP_IN_USE=false ANSWERS=false USER_DATA_RAN=false LEFT='' START=$SECONDS PORT='' GROUP='' PORTS='[]'
  WORK=$(mktemp -d)
  set -E # the ERR trap below also fires inside functions
  trap finish EXIT
  trap 'on_error "$LINENO"' ERR
  # the first calls side by side: what an interrupted earlier run left, the images, the flavors
  leftovers
  listing images --os-cloud "$CLOUD" image list -f value -c Name
  listing flavors --os-cloud "$CLOUD" flavor list -f value -c Name
  delete_listed
  smoke
}

# remove : delete what an interrupted apply left; nothing else.
remove() {
  load_params - "${PARAMS[@]}" # pulumi-command's delete sends the stdin that apply had
  validate_params
  command -v openstack >/dev/null || { log "no openstack CLI: nothing to remove"; return 0; }
  WORK=$(mktemp -d)
  trap 'stop_listings; rm -rf "$WORK"' EXIT
  # A VM left inside the host costs nothing on AWS: a cloud that cannot answer must not block remove.
  { cleanup && count_left; } || log "warning: the cloud did not answer every clean-up call"
  printf '{"removed":true,"servers_left":%s}\n' "${LEFT:-null}"
}

case "${1:-}" in
  apply | remove) "$1" ;;
  *) die "usage: $0 apply|remove (parameters as KEY=value lines on stdin)" ;;
esac
