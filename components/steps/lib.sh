# shellcheck shell=bash
# Helpers shared by the remote steps; sourced, never run. Installed beside the step scripts.

# Where steps keep their state: saved parameters and what `remove` must undo (root only).
OOA_STATE=${OOA_STATE:-/var/lib/openstack-on-aws}

log() { printf '[%s] %s\n' "${OOA_STEP:-step}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${OOA_STEP:-step}" "$*" >&2; exit 1; }

# load_params FILE NAME... : read KEY=value lines from FILE (- for stdin); accept only NAMEs.
# Values are taken literally (never evaluated). Every NAME must be given.
load_params() {
  local file=$1 line key value name
  shift
  local -A wanted=()
  for name in "$@"; do wanted[$name]=1; done
  [ "$file" = - ] && file=/dev/stdin
  while IFS= read -r line || [ -n "$line" ]; do
    [ -z "$line" ] && continue
    key=${line%%=*}
    value=${line#*=}
    [ "$key" != "$line" ] || die "parameter line without '=': ${key:0:40}"
    [ -n "${wanted[$key]:-}" ] || die "unknown parameter $key"
    printf -v "$key" '%s' "$value"
    unset "wanted[$key]"
  done <"$file"
  for name in "${!wanted[@]}"; do die "missing parameter $name"; done
}

# save_params FILE NAME... : write the named variables as KEY=value lines, readable by root only.
save_params() {
  local file=$1 name
  shift
  install -d -m 0700 "$(dirname "$file")"
  (umask 077 && for name in "$@"; do printf '%s=%s\n' "$name" "${!name}"; done >"$file.tmp")
  mv "$file.tmp" "$file"
}

is_mac() { [[ $1 =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]]; }
is_ipv4() {
  local IFS=. part
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  # shellcheck disable=SC2086 # split on dots on purpose
  for part in $1; do ((10#$part <= 255)) || return 1; done
}
is_cidr() { [[ $1 == */* ]] && is_ipv4 "${1%/*}" && [[ ${1#*/} =~ ^[0-9]{1,2}$ ]] && ((${1#*/} <= 32)); }
is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }
is_uuid() { [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; }

# need VALIDATOR NAME : die unless the variable NAME passes VALIDATOR (is_mac, is_ipv4, ...).
need() { "$1" "${!2}" || die "parameter $2 is not a valid ${1#is_}: '${!2}'"; }
