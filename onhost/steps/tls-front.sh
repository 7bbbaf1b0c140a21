#!/usr/bin/env bash
# tls-front: Horizon, every OpenStack API and the noVNC console on https://<public address>/, with
# the stack's own certificate (components/tls.py), so that nothing crosses the internet in clear.
#
# Why an Apache mod_ssl virtual host: DevStack already runs Apache on the host, and every API
# (Keystone /identity, Nova /compute, Neutron /networking, Glance /image, Placement /placement,
# Cinder /volume) and Horizon (/dashboard) already answer under one origin, http://HOST_IP/<path>,
# through it. A vhost on 443 that proxies to that origin (BACKEND_URL, default http://127.0.0.1:80)
# needs no per-service knowledge, no new package and no new daemon, and survives DevStack adding or
# moving a service. (DevStack's own `tls-proxy` service was not chosen: it makes its own CA, puts
# TLS on the internal endpoints too and ties certificates to stack.sh; nginx/haproxy would be a
# second web server for the same job.) DevStack's server-wide `ProxyPass /<service> unix:…|uwsgi://`
# lines are inherited by this vhost and match first, so those APIs are reached straight through their
# uWSGI socket with HTTPS=on; the rest goes to BACKEND_URL with X-Forwarded-Proto: https.
# noVNC: /novnc/ is proxied (with WebSocket upgrade) to NOVNC_URL (nova-novncproxy, default
# http://127.0.0.1:6080), and so is the WebSocket that nova's console URLs open (wss://<host>/?token=…),
# so with nova's novncproxy_base_url = https://<public address>/novnc/vnc_lite.html (DevStack's
# NOVNCPROXY_URL) the console works over TLS and port 6080 need not be open.
# Horizon: a settings snippet (local_settings.d, which Horizon's settings.py executes) makes Django
# trust X-Forwarded-Proto from the front (CSRF origin check against https://<public address>) and
# Horizon call the APIs on their internal endpoints first (the public ones are https on the Elastic
# IP, which the host can neither reach nor verify). Port 80: no redirect.
# The host firewall: DevStack's plain-text ports listen on every address, and nothing in front of
# an existing machine closes them (on AWS the security group does; this holds there too). A chain
# of this step's own (OOA-PLAIN, jumped to from the top of INPUT, IPv4 and IPv6) refuses, with a TCP
# reset, new and open connections to PLAIN_PORTS from anywhere but the host itself (loopback: the
# host's own addresses too, the front's proxying included) and PLAIN_SOURCES (the compute nodes'
# subnet: they reach the APIs, RabbitMQ and MySQL there). Closed, as each carries secrets in clear:
# 80 (Apache: Keystone's passwords, every token, Horizon's login), 6080 (noVNC: console tokens and
# keystrokes; the front serves it on 443), 5672 (RabbitMQ: its password, and the request contexts
# with users' tokens), 3306 (MySQL: the rows, the cell mappings' passwords among them), 8775 (Nova's
# metadata API: instances' user data and keys; only the host's metadata agent calls it), 5900-5999
# (the controller's guests' VNC consoles, open to whoever connects; nova-novncproxy reaches them
# on the host). Left open: 22, the front's port, and what carries no secret (etcd's locks on
# HOST_IP, iSCSI and VXLAN, which the compute nodes use). Neutron's iptables_manager keeps chains
# not named neutron-* (see port-forwards.sh); a reboot loses them: a re-apply unit (lib.sh)
# restores the chain at boot before Apache starts, and every 10 s.
#
#   tls-front.sh apply     params on stdin; enables the Apache modules it needs (ssl, proxy,
#                          proxy_http, proxy_wstunnel, rewrite, headers: those not already enabled,
#                          and what a2enmod enables with them, are recorded), writes the
#                          files below (config), checks Apache's configuration (restoring the previous
#                          files if it fails) and reloads Apache when something changed
#                          the firewall chain set to PLAIN_SOURCES, and its re-apply unit installed
#   tls-front.sh remove    deletes exactly those files, disables the modules it enabled, reloads;
#                          deletes the chain, its jumps and the re-apply unit
#   tls-front.sh reapply   sets the chain again from the saved PLAIN_SOURCES (boot, the timer)
#   tls-front.sh config    only the file part of apply, under $OOA_ROOT (tests run it)
#   tls-front.sh unconfig  only the file part of remove
#
# Files: /etc/openstack-on-aws/tls/{server.crt,ca.crt} (0644), server.key (0600, root: Apache reads
# it before dropping privileges), /etc/apache2/sites-{available,enabled}/openstack-on-aws-tls.conf,
# Horizon's local_settings.d/_9000_openstack_on_aws_tls.py (only where Horizon is installed).
#
# Parameters (KEY=value lines on stdin): PUBLIC_ADDRESS (IPv4 clients use: the management Elastic
# IP), DNS_NAME (may be empty), SERVER_CERT, SERVER_KEY, CA_CERT (base64 of PEM: never on a command
# line), HTTPS_PORT (443), BACKEND_URL, NOVNC_URL (http://<ipv4>:<port>), PLAIN_SOURCES (IPv4 CIDRs,
# comma-separated, may be empty). The certificate must carry PUBLIC_ADDRESS (and DNS_NAME) as subject
# alternative names, match the key and be signed by CA_CERT. Prints one JSON line.
set -euo pipefail
OOA_STEP=tls-front
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=${OOA_ROOT:-} # the files are written under $ROOT (empty: the real root)
STATE=$OOA_STATE/tls-front
PARAMS=(PUBLIC_ADDRESS DNS_NAME SERVER_CERT SERVER_KEY CA_CERT HTTPS_PORT BACKEND_URL NOVNC_URL PLAIN_SOURCES)
TLS_DIR=/etc/openstack-on-aws/tls
SITE_NAME=openstack-on-aws-tls
SITE=$ROOT/etc/apache2/sites-available/$SITE_NAME.conf
SITE_LINK=$ROOT/etc/apache2/sites-enabled/$SITE_NAME.conf
HORIZON_LOCAL=$ROOT/opt/stack/horizon/openstack_dashboard/local
HORIZON_SNIPPET=$HORIZON_LOCAL/local_settings.d/_9000_openstack_on_aws_tls.py
MODULES=(ssl proxy proxy_http proxy_wstunnel rewrite headers)
CHAIN=OOA-PLAIN
PLAIN_PORTS=80,3306,5672,6080,8775,5900:5999 # why each: the header

# is_backend URL : http://<ipv4>:<port>, nothing else (it is written into Apache's config).
is_backend() {
  [[ $1 =~ ^http://([0-9.]+):([0-9]+)$ ]] || return 1
  local host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  is_ipv4 "$host" && is_port "$port"
}
# is_dns_name NAME : letters, digits, hyphens in dot-separated labels; not all-numeric at the end.
is_dns_name() {
  [[ ${#1} -le 253 && $1 =~ ^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$ ]]
}
# b64_pem NAME KIND : decode base64 parameter NAME into $WORK/NAME; die unless it is a PEM of KIND.
b64_pem() {
  local name=$1 kind=$2
  base64 -d <<<"${!name}" >"$WORK/$name" 2>/dev/null || die "parameter $name is not base64"
  grep -Eq -- "^-----BEGIN ($kind)-----\$" "$WORK/$name" || die "parameter $name is not a PEM ${kind%%|*}"
}

# read_params : load and check every parameter; the PEMs land in $WORK (0700, removed at exit).
read_params() {
  load_params - "${PARAMS[@]}"
  need is_ipv4 PUBLIC_ADDRESS
  [ -z "$DNS_NAME" ] || is_dns_name "$DNS_NAME" || die "parameter DNS_NAME is not a DNS name: '$DNS_NAME'"
  need is_port HTTPS_PORT
  HTTPS_PORT=$((10#$HTTPS_PORT))
  PORT_SUFFIX=:$HTTPS_PORT
  [ "$HTTPS_PORT" != 443 ] || PORT_SUFFIX=
  is_backend "$BACKEND_URL" || die "parameter BACKEND_URL is not http://<ipv4>:<port>: '$BACKEND_URL'"
  is_backend "$NOVNC_URL" || die "parameter NOVNC_URL is not http://<ipv4>:<port>: '$NOVNC_URL'"
  check_sources
  WORK=$(umask 077 && mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  b64_pem SERVER_CERT CERTIFICATE
  b64_pem CA_CERT CERTIFICATE
  b64_pem SERVER_KEY 'PRIVATE KEY|EC PRIVATE KEY|RSA PRIVATE KEY'
  check_certificate
}

# check_sources : PLAIN_SOURCES is a comma-separated list of IPv4 CIDRs (or empty).
check_sources() {
  local src
  local -a sources
  IFS=, read -r -a sources <<<"$PLAIN_SOURCES"
  for src in "${sources[@]}"; do
    is_cidr "$src" || die "parameter PLAIN_SOURCES is not a list of IPv4 CIDRs: '$PLAIN_SOURCES'"
  done
}

# check_certificate : the certificate names the public address (and DNS name), is signed by the
# CA and matches the key; a wrong input fails here, before any change.
check_certificate() {
  local names
  names=$(openssl x509 -in "$WORK/SERVER_CERT" -noout -ext subjectAltName 2>/dev/null) ||
    die "SERVER_CERT has no subject alternative names"
  [[ "$names"$'\n' =~ IP\ Address:${PUBLIC_ADDRESS//./\\.}[,[:space:]] ]] ||
    die "SERVER_CERT does not name PUBLIC_ADDRESS $PUBLIC_ADDRESS (subject alternative names: ${names//$'\n'/ })"
  if [ -n "$DNS_NAME" ] && [[ ! "$names"$'\n' =~ DNS:${DNS_NAME//./\\.}[,[:space:]] ]]; then
    die "SERVER_CERT does not name DNS_NAME $DNS_NAME"
  fi
  openssl verify -CAfile "$WORK/CA_CERT" -purpose sslserver "$WORK/SERVER_CERT" >/dev/null 2>&1 ||
    die "SERVER_CERT is not a server certificate signed by CA_CERT"
  [ "$(openssl x509 -in "$WORK/SERVER_CERT" -noout -pubkey)" = "$(openssl pkey -in "$WORK/SERVER_KEY" -pubout 2>/dev/null)" ] ||
    die "SERVER_KEY is not the key of SERVER_CERT"
}

# site : the virtual host, on stdout.
site() {
  cat <<SITE
# openstack-on-aws tls-front (onhost/steps/tls-front.sh): the TLS front of Horizon, the APIs
# and noVNC. Written by \`tls-front.sh apply\`, deleted by \`tls-front.sh remove\`.
<VirtualHost *:$HTTPS_PORT>
    ServerName $PUBLIC_ADDRESS${DNS_NAME:+
    ServerAlias $DNS_NAME}
    SSLEngine on
    SSLCertificateFile $ROOT$TLS_DIR/server.crt
    SSLCertificateKeyFile $ROOT$TLS_DIR/server.key
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLSessionTickets off

    ProxyRequests off
    ProxyPreserveHost on
    ProxyTimeout 600
    RequestHeader set X-Forwarded-Proto "https"
    RequestHeader set X-Forwarded-Port "$HTTPS_PORT"
    # nova-novncproxy: its pages under /novnc/, and its WebSocket. Nova's console URL is
    # <novncproxy_base_url>?path=%3Ftoken%3D<token>, so noVNC opens wss://<host>/?token=<token>:
    # a WebSocket upgrade of / with a token goes to nova-novncproxy, anything else on / does not.
    ProxyPass /novnc/ $NOVNC_URL/ upgrade=websocket
    ProxyPassReverse /novnc/ $NOVNC_URL/
    RewriteEngine on
    RewriteCond %{HTTP:Upgrade} =websocket [NC]
    RewriteCond %{QUERY_STRING} (^|&)token=
    RewriteRule ^/(websockify)?\$ ws://${NOVNC_URL#http://}/\$1 [P,L]
    # everything else: DevStack's own Apache (Horizon, and the APIs not matched by its uwsgi lines)
    ProxyPass / $BACKEND_URL/
    ProxyPassReverse / $BACKEND_URL/
    ProxyPassReverse / http://$PUBLIC_ADDRESS/${DNS_NAME:+
    ProxyPassReverse / http://$DNS_NAME/}
</VirtualHost>
SITE
}

# horizon_snippet : Django settings for Horizon behind the front, on stdout.
horizon_snippet() {
  local origins="\"https://$PUBLIC_ADDRESS$PORT_SUFFIX\""
  [ -z "$DNS_NAME" ] || origins+=", \"https://$DNS_NAME$PORT_SUFFIX\""
  cat <<PY
# openstack-on-aws tls-front: Horizon is served at https://<public address>/dashboard through the
# TLS front, which sets X-Forwarded-Proto. Deleted by \`tls-front.sh remove\`.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = [$origins]
# Horizon runs on the host: it calls the APIs on their internal endpoints (public-endpoints.sh
# keeps those on the private IP), falling back to the public ones where there is none.
OPENSTACK_ENDPOINT_TYPE = "internalURL"
SECONDARY_ENDPOINT_TYPE = "publicURL"
PY
}

# put FILE MODE : write stdin to FILE with MODE unless FILE already holds exactly that; sets CHANGED
# (so never at the end of a pipeline: redirect into it).
put() {
  local file=$1 mode=$2
  install -d -m 0755 "$(dirname "$file")"
  (umask 077 && cat >"$file.tmp")
  if [ -f "$file" ] && cmp -s "$file.tmp" "$file" && [ "$(stat -c %a "$file")" = "${mode#0}" ]; then
    rm -f "$file.tmp"
    return 0
  fi
  chmod "$mode" "$file.tmp"
  mv "$file.tmp" "$file"
  CHANGED=1
}

# write_config : every file of this step (rewritten only when different: twice = once).
write_config() {
  CHANGED=0
  put "$ROOT$TLS_DIR/server.key" 0600 <"$WORK/SERVER_KEY"
  put "$ROOT$TLS_DIR/server.crt" 0644 <"$WORK/SERVER_CERT"
  put "$ROOT$TLS_DIR/ca.crt" 0644 <"$WORK/CA_CERT"
  put "$SITE" 0644 < <(site)
  if [ "$(readlink "$SITE_LINK" 2>/dev/null)" != "../sites-available/$SITE_NAME.conf" ]; then
    install -d -m 0755 "$(dirname "$SITE_LINK")"
    ln -sfn "../sites-available/$SITE_NAME.conf" "$SITE_LINK"
    CHANGED=1
  fi
  if [ -d "$HORIZON_LOCAL" ]; then
    put "$HORIZON_SNIPPET" 0644 < <(horizon_snippet)
  else
    log "no Horizon at ${HORIZON_LOCAL#"$ROOT"}: no settings snippet"
  fi
}

# remove_config : delete every file write_config may have written, nothing else.
remove_config() {
  rm -f "$SITE_LINK" "$SITE" "$HORIZON_SNIPPET" "$ROOT$TLS_DIR/server.key" "$ROOT$TLS_DIR/server.crt" \
    "$ROOT$TLS_DIR/ca.crt"
  rmdir "$ROOT$TLS_DIR" 2>/dev/null || true
  rmdir "$(dirname "$ROOT$TLS_DIR")" 2>/dev/null || true
}

fingerprint() { openssl x509 -in "$WORK/SERVER_CERT" -noout -fingerprint -sha256 | sed 's/.*=//'; }

report() {
  printf '{"url":"https://%s%s/","changed":%s,"sha256":"%s","plain_ports":"%s","plain_sources":"%s"}\n' \
    "${DNS_NAME:-$PUBLIC_ADDRESS}" "$PORT_SUFFIX" "$([ "$CHANGED" = 1 ] && echo true || echo false)" \
    "$(fingerprint)" "$PLAIN_PORTS" "$PLAIN_SOURCES"
}

# backup / restore : the files as they were before this apply, for a failed configuration test.
backup() {
  local f
  rm -rf "$STATE/backup" && install -d -m 0700 "$STATE/backup"
  for f in "$SITE" "$HORIZON_SNIPPET" "$ROOT$TLS_DIR/server.key" "$ROOT$TLS_DIR/server.crt" "$ROOT$TLS_DIR/ca.crt"; do
    [ -f "$f" ] && install -D -m 0600 "$f" "$STATE/backup$f"
  done
  return 0
}
restore() {
  local f
  remove_config
  while IFS= read -r -d '' f; do
    install -D -m "$([[ $f == */server.key ]] && echo 0600 || echo 0644)" "$f" "${f#"$STATE/backup"}"
  done < <(find "$STATE/backup" -type f -print0)
  [ ! -f "$SITE" ] || ln -sfn "../sites-available/$SITE_NAME.conf" "$SITE_LINK"
}

# enabled_modules : the modules enabled now (mods-enabled/*.load), one per line, sorted.
enabled_modules() {
  local f
  for f in "$ROOT/etc/apache2/mods-enabled/"*.load; do
    if [ -e "$f" ] || [ -L "$f" ]; then basename "$f" .load; fi
  done | sort
}

# enable_modules : a2enmod what is missing, recording every module that became enabled: the one
# asked for and the dependencies a2enmod enabled with it (Debian's ssl brings socache_shmcb), so
# that remove disables exactly those.
enable_modules() {
  local mod before new
  for mod in "${MODULES[@]}"; do
    before=$(enabled_modules)
    ! grep -qxF "$mod" <<<"$before" || continue
    a2enmod -q "$mod" >/dev/null
    new=$(comm -13 <(printf '%s\n' "$before") <(enabled_modules))
    printf '%s\n' "${new:-$mod}" >>"$STATE/enabled-modules"
    CHANGED=1
  done
}

# --- the host firewall (see the header) ---

# families : the iptables commands to set: IPv4, and IPv6 where the kernel has it.
families() { echo iptables; [ ! -e /proc/net/if_inet6 ] || echo ip6tables; }

# chain_rules IPTABLES : the chain's rules for that family, one per line, as `-S` prints them.
chain_rules() {
  local src
  local -a sources=()
  echo "-A $CHAIN -i lo -j RETURN"
  [ "$1" != iptables ] || IFS=, read -r -a sources <<<"$PLAIN_SOURCES"
  for src in "${sources[@]}"; do echo "-A $CHAIN -s $src -j RETURN"; done
  echo "-A $CHAIN -p tcp -m multiport --dports $PLAIN_PORTS -j REJECT --reject-with tcp-reset"
}

# set_firewall : the chain holds exactly its rules, with one jump at the top of INPUT, in each
# family (one iptables-restore transaction each; nothing rewritten when nothing differs).
set_firewall() {
  local ipt wanted
  for ipt in $(families); do
    wanted=$(chain_rules "$ipt")
    if [ "$("$ipt" -w -S "$CHAIN" 2>/dev/null | grep -v "^-N ")" = "$wanted" ] &&
      "$ipt" -w -C INPUT -j "$CHAIN" 2>/dev/null; then
      continue
    fi
    {
      echo '*filter'
      echo ":$CHAIN - [0:0]" # --noflush: declares the chain, flushing it if it exists
      "$ipt" -w -C INPUT -j "$CHAIN" 2>/dev/null || echo "-I INPUT 1 -j $CHAIN"
      echo "$wanted"
      echo COMMIT
    } | "$ipt-restore" -w 10 --noflush
    log "$ipt: $CHAIN closes tcp $PLAIN_PORTS to all but $(chain_rules "$ipt" | awk '$4 == "-s" {printf "%s, ", $5}')the host"
    CHANGED=1
  done
}

# delete_firewall : the chain and every jump to it, in each family (nothing when there is none).
delete_firewall() {
  local ipt
  for ipt in $(families); do
    while "$ipt" -w -C INPUT -j "$CHAIN" 2>/dev/null; do "$ipt" -w -D INPUT -j "$CHAIN"; done
    if "$ipt" -w -S "$CHAIN" >/dev/null 2>&1; then
      "$ipt" -w -F "$CHAIN"
      "$ipt" -w -X "$CHAIN"
    fi
  done
}

# firewall : apply's part: the chain from this run's PLAIN_SOURCES, saved for reapply, and the
# re-apply unit (at boot before Apache answers; lib.sh), under the step's lock. The lock goes before
# Apache is reloaded: systemd makes a reload of Apache wait for a running reapply (the unit is
# ordered before Apache), and a reapply waits for this lock.
firewall() {
  lock_step "$STATE"
  save_params "$STATE/firewall" PLAIN_SOURCES
  set_firewall
  install_reapply_units tls-front apache2.service
  exec 9>&-
}

reapply() {
  [ -f "$STATE/firewall" ] || { log "nothing applied: nothing to re-apply"; return 0; }
  lock_step "$STATE"
  load_params "$STATE/firewall" PLAIN_SOURCES
  check_sources
  CHANGED=0
  set_firewall
}

reload_apache() {
  if [ -d "$SYSTEMD_RUN_DIR" ]; then systemctl reload apache2; else apache2ctl graceful; fi
}

apply() {
  read_params
  command -v apache2ctl >/dev/null || die "Apache is not installed (DevStack installs it)"
  CHANGED=0
  firewall # first: plain text is refused before anything else changes
  local firewall_changed=$CHANGED
  backup
  write_config
  local changed=$CHANGED
  enable_modules
  CHANGED=$((changed | CHANGED))
  if ! apache2ctl -t >"$WORK/configtest" 2>&1; then
    restore
    die "Apache refuses the configuration (previous files restored): $(tail -n 5 "$WORK/configtest")"
  fi
  if [ "$CHANGED" = 1 ] && ! reload_apache; then
    restore # a later apply writes them again, and reloads
    rm -rf "$STATE/backup"
    die "Apache did not reload: the new configuration is not served (previous files restored)"
  fi
  rm -rf "$STATE/backup"
  [ "$CHANGED" = 0 ] || log "Apache reloaded"
  CHANGED=$((firewall_changed | CHANGED))
  report
}

remove() {
  [ -d "$STATE" ] || { log "no state: nothing to remove"; return 0; }
  local mod
  lock_step "$STATE"
  delete_firewall
  remove_reapply_units tls-front
  remove_config
  if [ -f "$STATE/enabled-modules" ]; then # last enabled first
    while read -r mod; do a2dismod -q -f "$mod" >/dev/null || true; done < <(tac "$STATE/enabled-modules")
  fi
  if command -v apache2ctl >/dev/null && apache2ctl -t >/dev/null 2>&1; then reload_apache; fi
  rm -rf "$STATE" "$STATE.lock"
  printf '{"removed":true,"site":"%s","chain":"%s"}\n' "$SITE_NAME" "$CHAIN"
}

case "${1:-}" in
  apply | remove | reapply) "$1" ;;
  config) read_params && write_config && report ;;
  unconfig) remove_config ;;
  *) die "usage: $0 apply|remove|reapply|config|unconfig (parameters as KEY=value lines on stdin)" ;;
esac
