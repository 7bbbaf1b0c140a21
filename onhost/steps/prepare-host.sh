#!/usr/bin/env bash
# prepare-host: the host side of the article's "provider interface without an IP address".
#
#   prepare-host.sh apply     waits for cloud-init; installs the packages this step (sysctl, ip,
#                             python3-yaml) and later steps use, first; finds the provider NIC by
#                             the provider ENI's MAC (Nitro names it ens6, never eth1); keeps it up
#                             with no address, no DHCP, no IPv6 - now and at every boot (cloud-init's
#                             network config disabled, its netplan stripped of that NIC, our netplan
#                             file matched by MAC); creates the `stack` user DevStack runs as; keeps
#                             the host name DevStack's services register under (pin_hostname).
#   prepare-host.sh remove    undoes the files, the user and the sudoers entry it created; the NIC
#                             gets DHCP again at the next boot. Packages stay installed.
#   prepare-host.sh config    only the file part of apply (netplan, cloud-init), under $OOA_ROOT;
#   prepare-host.sh unconfig  only the file part of remove. (apply/remove call them; tests run them.)
#
# Parameters (KEY=value lines on stdin, apply and config): PROVIDER_MAC.
# Sourced (tests/test_devstack_run.py), it only defines its settings and functions.
set -euo pipefail
OOA_STEP=prepare-host
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT=${OOA_ROOT:-} # the files are written under $ROOT (empty: the real root)
STATE=$OOA_STATE/prepare-host
NETPLAN_DIR=$ROOT/etc/netplan
OUR_NETPLAN=$NETPLAN_DIR/90-openstack-on-aws-provider.yaml
CLOUD_INIT_NETPLAN=$NETPLAN_DIR/50-cloud-init.yaml
CLOUD_INIT_CFG=$ROOT/etc/cloud/cloud.cfg.d/99-openstack-on-aws-network.cfg
HOSTNAME_CFG=$ROOT/etc/cloud/cloud.cfg.d/99-openstack-on-aws-hostname.cfg
HOSTNAME_FILE=$ROOT/etc/hostname
INSTANCE_ID_FILE=$ROOT/var/lib/cloud/data/instance-id # cloud-init's: which instance this disk runs as
CLOUD_ID=${CLOUD_ID:-$(cloud-id 2>/dev/null || true)}  # cloud-init's name of the cloud (aws on EC2)
PACKAGES=(git jq iproute2 iptables procps python3 python3-yaml sudo)
# What this step runs that a minimal image may lack, and the package that has it.
declare -A NEEDS=([ip]=iproute2 [sysctl]=procps [python3]=python3 [visudo]=sudo)

# read_params : PROVIDER_MAC from stdin, lower-cased and checked.
read_params() {
  load_params - PROVIDER_MAC
  PROVIDER_MAC=${PROVIDER_MAC,,}
  need is_mac PROVIDER_MAC
}

# write_config: the boot-time half; every file is rewritten whole, so twice = once.
write_config() {
  install -d -m 0700 "$STATE"
  install -d -m 0755 "$NETPLAN_DIR" "$(dirname "$CLOUD_INIT_CFG")"
  if [[ $CLOUD_ID == aws* ]]; then
    # On EC2 cloud-init renders the management NIC's netplan matched by its MAC, again at the first
    # boot of each new instance: a launch from an image of this disk gets its new ENI configured.
    printf '%s\n' \
      "# openstack-on-aws prepare-host: cloud-init configures the primary NIC only (DHCP), so the" \
      "# provider NIC gets no DHCP and no policy routing, also on a new instance of this disk." \
      "datasource: {Ec2: {apply_full_imds_network_config: false}}" >"$CLOUD_INIT_CFG"
  else
    printf '%s\n' \
      "# openstack-on-aws prepare-host: cloud-init must not configure the NICs again at boot" \
      "# (it would give the provider NIC DHCP and policy routing)." \
      "network: {config: disabled}" >"$CLOUD_INIT_CFG"
  fi
  printf '%s\n' \
    "# openstack-on-aws prepare-host: keep the host name Nova and Neutron know DevStack's services by," \
    "# also on a new instance of this disk (cloud-init would name it after its new metadata)." \
    "preserve_hostname: true" >"$HOSTNAME_CFG"
  # cloud-init's own netplan keeps the management NIC; the provider NIC's stanza goes.
  if [ -f "$CLOUD_INIT_NETPLAN" ]; then
    keep_original_netplan
    python3 - "$STATE/50-cloud-init.yaml.orig" "$CLOUD_INIT_NETPLAN" "$PROVIDER_MAC" <<'PY'
import sys, yaml
src, dst, mac = sys.argv[1:]
doc = yaml.safe_load(open(src)) or {}
eth = (doc.get("network") or {}).get("ethernets") or {}
for name in [n for n, e in eth.items() if str((e or {}).get("match", {}).get("macaddress", "")).lower() == mac]:
    del eth[name]
with open(dst + ".tmp", "w") as f:
    yaml.safe_dump(doc, f, default_flow_style=False)
PY
    chmod 0600 "$CLOUD_INIT_NETPLAN.tmp"
    mv "$CLOUD_INIT_NETPLAN.tmp" "$CLOUD_INIT_NETPLAN"
  fi
  (umask 077 && cat >"$OUR_NETPLAN.tmp" <<YAML)
# openstack-on-aws prepare-host: the provider NIC is a port of br-ex and carries no address.
network:
  version: 2
  ethernets:
    openstack-provider:
      match:
        macaddress: "$PROVIDER_MAC"
      dhcp4: false
      dhcp6: false
      accept-ra: false
      link-local: []
      optional: true
YAML
  mv "$OUR_NETPLAN.tmp" "$OUR_NETPLAN"
}

# keep_original_netplan : cloud-init's netplan as this instance had it, kept once per instance (a
# disk launched as a new instance, from an image, has the one cloud-init wrote for its new NICs).
keep_original_netplan() {
  local instance
  instance=$(cat "$INSTANCE_ID_FILE" 2>/dev/null) || instance=unknown
  if [ -f "$STATE/50-cloud-init.yaml.orig" ] && [ ! -f "$STATE/50-cloud-init.instance" ]; then
    printf '%s\n' "$instance" >"$STATE/50-cloud-init.instance" # kept by an earlier version, here
  fi
  if [ ! -f "$STATE/50-cloud-init.yaml.orig" ] || [ "$(cat "$STATE/50-cloud-init.instance")" != "$instance" ]; then
    cp -p "$CLOUD_INIT_NETPLAN" "$STATE/50-cloud-init.yaml.orig"
    printf '%s\n' "$instance" >"$STATE/50-cloud-init.instance"
  fi
}

# remove_config : the files of write_config gone, cloud-init's netplan restored.
remove_config() {
  rm -f "$OUR_NETPLAN" "$CLOUD_INIT_CFG" "$HOSTNAME_CFG"
  if [ -f "$STATE/50-cloud-init.yaml.orig" ]; then
    mv "$STATE/50-cloud-init.yaml.orig" "$CLOUD_INIT_NETPLAN"
  fi
}

# runtime_nic NIC : the NIC up, without addresses and IPv6, now (the files do it at boot).
runtime_nic() {
  local nic=$1
  # Stop networkd's DHCP on it now (it reads the new netplan), then clear what it had.
  if command -v netplan >/dev/null; then netplan generate; fi
  if command -v networkctl >/dev/null; then networkctl reload || true; fi
  ip link set dev "$nic" up
  ip -4 addr flush dev "$nic"
  sysctl -qw "net.ipv6.conf.$nic.disable_ipv6=1"
  ip -6 addr flush dev "$nic" 2>/dev/null || true
  [ -z "$(ip -o addr show dev "$nic")" ] || die "$nic still has addresses: $(ip -o addr show dev "$nic")"
}

# pin_hostname : the host name stays the first one this step saw: Nova's compute host and Neutron's
# agents are registered under it. write_config keeps it at boot; one changed since is set back.
pin_hostname() {
  local now pinned
  now=$(hostname)
  install -d -m 0700 "$STATE"
  [ -s "$STATE/hostname" ] || printf '%s\n' "$now" >"$STATE/hostname"
  pinned=$(head -n1 "$STATE/hostname")
  if [ "$now" != "$pinned" ]; then
    log "host name $now set back to $pinned (the name DevStack's services are registered under)"
    printf '%s\n' "$pinned" >"$HOSTNAME_FILE"
    hostname "$pinned"
  fi
  log "host name: $pinned"
}

# apply : the whole host preparation (see the header).
apply() {
  read_params
  [ -z "$ROOT" ] || die "apply changes the running host; OOA_ROOT is only for config/unconfig"
  wait_for_cloud_init
  install_packages
  local nic
  nic=$(nic_by_mac "$PROVIDER_MAC") || die "no NIC with the provider ENI's MAC $PROVIDER_MAC (is the ENI attached?)"
  log "provider NIC: $nic ($PROVIDER_MAC)"
  write_config
  pin_hostname
  runtime_nic "$nic"
  ensure_stack_user
  # shellcheck disable=SC2034 # saved by name
  PROVIDER_NIC=$nic
  save_params "$STATE/params" PROVIDER_MAC PROVIDER_NIC
  log "done"
}

# remove : undo apply (packages stay).
remove() {
  [ -z "$ROOT" ] || die "remove changes the running host; OOA_ROOT is only for config/unconfig"
  remove_config
  remove_stack_user
  rm -rf "$STATE"
  if command -v netplan >/dev/null; then netplan generate; fi
  log "removed; the provider NIC is configured by cloud-init again from the next boot"
}

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
prepare_main "$@"
