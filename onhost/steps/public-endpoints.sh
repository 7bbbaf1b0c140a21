#!/usr/bin/env bash
# public-endpoints: a service catalog that works from outside. Keystone's *public* endpoints that
# DevStack points at its own Apache (http://BACKEND_HOST/<path>, port 80) move to
# PUBLIC_BASE_URL/<path> (https://<management Elastic IP or DNS name>, the TLS front of
# tls-front.sh), while the services keep talking to each other on the management private IP
# through *internal* endpoints: where a service has no internal endpoint in that region (DevStack
# creates public ones only, except for Keystone), one is created with the original URL.
#
#   public-endpoints.sh apply   params on stdin; records each public endpoint's original URL the
#                               first time it changes it (a later apply with another base URL
#                               rewrites from the original), creates the missing internal endpoints;
#                               endpoints on another host or port are left alone and reported
#   public-endpoints.sh remove  restores the recorded public URLs and deletes the internal endpoints
#                               it created; nothing else
#
# Parameters (KEY=value lines on stdin): PUBLIC_BASE_URL (https://<ipv4 or DNS name>[:port], no
# path), BACKEND_HOST (the management private IP: DevStack's HOST_IP; `<ip>:<port>` when the
# services' Apache is not on port 80, as in tests). Runs the openstack CLI as
# DevStack's admin (cloud `devstack-admin` in /etc/openstack/clouds.yaml, on the internal URL of
# Keystone): no secret passes through this step. Prints one JSON line.
set -euo pipefail
OOA_STEP="public-endpoints"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$OOA_STATE/public-endpoints
ORIGINAL=$STATE/original # "<endpoint id> <original public URL>" lines
CREATED=$STATE/created   # "<endpoint id>" of the internal endpoints apply created
INTERFACE=$STATE/interface
CLOUD=devstack-admin

validate_params() {
  [[ $PUBLIC_BASE_URL =~ ^https://([A-Za-z0-9.-]+)(:([0-9]+))?$ ]] ||
    die "parameter PUBLIC_BASE_URL is not https://<host>[:port] without a path: '$PUBLIC_BASE_URL'"
  local host=${BASH_REMATCH[1]} port=${BASH_REMATCH[3]}
  if [[ $host =~ ^[0-9.]+$ ]]; then
    is_ipv4 "$host" || die "parameter PUBLIC_BASE_URL has a bad IPv4 address: '$host'"
  else
    [[ $host =~ ^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z][a-zA-Z0-9-]*$ ]] ||
      die "parameter PUBLIC_BASE_URL has a bad host name: '$host'"
  fi
  [ -z "$port" ] || is_port "$port" || die "parameter PUBLIC_BASE_URL has a bad port: '$port'"
  local backend_ip=${BACKEND_HOST%%:*} backend_port=${BACKEND_HOST#*:}
  [ "$backend_port" != "$BACKEND_HOST" ] || backend_port=80
  if ! is_ipv4 "$backend_ip" || ! is_port "$backend_port"; then
    die "parameter BACKEND_HOST is not <ipv4>[:<port>]: '$BACKEND_HOST'"
  fi
  # The URLs DevStack's Apache serves: http://<ip>[:<port>]/... (the port may be left out when 80).
  backend_ip=${backend_ip//./\\.}
  BACKEND_RE="^http://$backend_ip:$backend_port(/.*)?\$"
  [ "$backend_port" != 80 ] || BACKEND_RE="^http://$backend_ip(:80)?(/.*)?\$"
}

# The catalog interface our own CLI calls use. DevStack's catalog has public endpoints only (and
# internal ones for Keystone at most); once a public endpoint points at the Elastic IP, the host
# must go through the internal ones: from the host, the public https URL is neither routed (no
# hairpin to its own Elastic IP) nor trusted (the stack's CA is not in the host's bundles).
# Which one is in $INTERFACE: `internal` from the moment Keystone's own public endpoint is recorded
# for a move (its internal endpoint exists by then: apply creates it first), `public` before that
# and again once remove has restored it.
iface() { cat "$INTERFACE" 2>/dev/null || echo public; }
os() { os_via "$(iface)" "$@"; }
# os_via INTERFACE ARGS... : the CLI through that catalog interface.
os_via() { openstack --os-cloud "$CLOUD" --os-interface "$1" "${@:2}"; }
# workdir : a scratch folder for the output of calls run side by side, removed on exit.
workdir() {
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
}
# wait_all PID... : wait for each of these calls, started side by side (each CLI start-up at the
# same time); non-zero if any failed, once all have ended (none is left running).
wait_all() {
  local pid failed=0
  for pid in "$@"; do wait "$pid" || failed=1; done
  return "$failed"
}

# endpoints : every endpoint as "<id> <region> <service id> <interface> <url> <service type>" lines.
# Two listings side by side, not a show per endpoint (each CLI call costs a start-up and a token: a
# DevStack catalog has a score of endpoints); the endpoint listing names its service, the service
# listing gives the ID that `endpoint create` needs. A name and type that match several services
# stop here.
endpoints() {
  local services listing pid
  os service list -f json </dev/null >"$WORK/services" &
  pid=$!
  listing=$(os endpoint list -f json)
  wait "$pid" || die "openstack service list failed"
  services=$(cat "$WORK/services")
  jq -r --argjson services "$services" '.[] as $e
    | [$services[] | select(.Name == $e["Service Name"] and .Type == $e["Service Type"]) | .ID] as $ids
    | if ($ids | length) == 1 then [$e.ID, $e.Region, $ids[0], $e.Interface, $e.URL, $e["Service Type"]] | join(" ")
      else error("endpoint \($e.ID): \($ids | length) services named \($e["Service Name"]) of type \($e["Service Type"])")
      end' <<<"$listing"
}

# ours URL : is URL served by DevStack's Apache on BACKEND_HOST (port 80), so reachable through the front?
ours() { [[ $1 =~ $BACKEND_RE ]]; }
# path_of URL : the part after scheme://host[:port] (empty or starting with /).
path_of() {
  local rest=${1#*://}
  if [[ $rest == */* ]]; then echo "/${rest#*/}"; fi
}
original_of() { awk -v id="$1" '$1 == id { print $2; exit }' "$ORIGINAL"; }
# has_internal REGION SERVICE : the listing in $ALL has an internal endpoint for SERVICE in REGION.
has_internal() { awk -v r="$1" -v s="$2" '$2 == r && $3 == s && $4 == "internal" { f = 1 } END { exit !f }' <<<"$ALL"; }

apply() {
  load_params - PUBLIC_BASE_URL BACKEND_HOST
  validate_params
  command -v openstack >/dev/null || die "no openstack CLI: run install-openstack first"
  command -v jq >/dev/null || die "no jq: run prepare-host first"
  install -d -m 0700 "$STATE"
  touch "$ORIGINAL" "$CREATED"
  local id region service iface url original wanted new_id moves=() public=() skipped=() created=() todo=()
  local identity_moves=
  workdir
  ALL=$(endpoints)
  # Pass 1: which public endpoints are ours, and an internal endpoint for each (before any move).
  while read -r id region service iface url stype; do
    [ "$iface" = public ] || continue
    original=$(original_of "$id")
    if [ -z "$original" ]; then
      if ! ours "$url"; then
        skipped+=("\"$url\"")
        continue
      fi
      original=$url
    fi
    if ! has_internal "$region" "$service"; then
      todo+=("$region $service $original")
      ALL+=$'\n'"- $region $service internal $original $stype"
    fi
    [ -n "$(original_of "$id")" ] || printf '%s %s\n' "$id" "$original" >>"$ORIGINAL"
    [ "$stype" != identity ] || identity_moves=1
    moves+=("$id $url $PUBLIC_BASE_URL$(path_of "$original")")
  done <<<"$ALL"
  # The missing internal endpoints, created side by side through the interface our calls use now
  # (before any move; each id recorded, also when another create failed, so remove deletes it).
  local via pids=() n
  via=$(iface)
  for n in "${!todo[@]}"; do
    read -r region service original <<<"${todo[$n]}"
    os_via "$via" endpoint create --region "$region" "$service" internal "$original" -f value -c id \
      </dev/null >"$WORK/create.$n" &
    pids+=($!)
  done
  local failed=0
  wait_all "${pids[@]}" || failed=1
  for n in "${!todo[@]}"; do
    new_id=$(cat "$WORK/create.$n")
    [ -n "$new_id" ] || continue
    read -r region service original <<<"${todo[$n]}"
    echo "$new_id" >>"$CREATED"
    created+=("\"$original\"")
    log "internal endpoint $new_id: $original"
  done
  ((failed == 0)) || die "creating the internal endpoints failed: nothing moved"
  # Keystone's internal endpoint exists: our own calls go through the internal endpoints from here.
  [ -z "$identity_moves" ] || echo internal >"$INTERFACE"
  # Pass 2: the public endpoints move, side by side.
  pids=()
  for id in "${moves[@]}"; do
    read -r id url wanted <<<"$id"
    if [ "$url" != "$wanted" ]; then
      os endpoint set --url "$wanted" "$id" </dev/null &
      pids+=($!)
      log "public endpoint $id: $url -> $wanted"
    fi
    public+=("\"$wanted\"")
  done
  wait_all "${pids[@]}" || die "moving the public endpoints failed (apply again, or remove)"
  local IFS=,
  printf '{"public":[%s],"internal_created":[%s],"left_alone":[%s]}\n' "${public[*]}" "${created[*]}" "${skipped[*]}"
}

remove() {
  [ -d "$STATE" ] || { log "no state: nothing to remove"; return 0; }
  local id url existing restored=0 pids=() gone=()
  existing=$(os endpoint list -f json | jq -r '.[] | .ID')
  if [ -f "$ORIGINAL" ]; then
    while read -r id url; do
      if grep -qxF "$id" <<<"$existing"; then
        os endpoint set --url "$url" "$id" </dev/null &
        pids+=($!)
        restored=$((restored + 1))
      else
        log "endpoint $id is gone: not restored"
      fi
    done <"$ORIGINAL"
    wait_all "${pids[@]}" || die "restoring the public endpoints failed (remove again)"
    rm -f "$ORIGINAL" "$INTERFACE" # Keystone's public endpoint works from here again
  fi
  if [ -f "$CREATED" ]; then
    while read -r id; do
      if [ -n "$id" ] && grep -qxF "$id" <<<"$existing"; then gone+=("$id"); fi
    done <"$CREATED"
    # one call for all of them (the CLI takes several ids)
    if ((${#gone[@]})); then os endpoint delete "${gone[@]}"; fi
  fi
  rm -rf "$STATE"
  printf '{"removed":true,"restored":%d,"internal_deleted":%d}\n' "$restored" "${#gone[@]}"
}

case "${1:-}" in
  apply | remove) "$1" ;;
  *) die "usage: $0 apply|remove (parameters as KEY=value lines on stdin)" ;;
esac
