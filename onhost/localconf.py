"""DevStack's local.conf, rendered from the host's addresses: a pure function, unit-tested and shown
by render (`components.openstack.local_conf_for(contract)` feeds it the host contract).

Values left as placeholders are filled on the host by `install-openstack.sh`: `@ADMIN_PASSWORD@`
(the secret arrives only on the step's stdin), `@LIBVIRT_TYPE@` (`kvm` where `/dev/kvm` exists, else
`qemu`) with `@LIBVIRT_CPU_MODE@` (lib.sh `libvirt_cpu_mode`), `@PUBLIC_INTERFACE@` (the NIC with the
provider ENI's MAC) and `@PUBLIC_BASE_URL@`: only the booted machine knows the libvirt type and the NIC.

Every variable set here is one DevStack reads at the pinned branch; `tests/test_localconf.py`
checks that against a list extracted from DevStack's source (`tests/data/devstack_variables.txt`).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

PASSWORD_PLACEHOLDER = "@ADMIN_PASSWORD@"
LIBVIRT_PLACEHOLDER = "@LIBVIRT_TYPE@"
CPU_MODE_PLACEHOLDER = "@LIBVIRT_CPU_MODE@"
INTERFACE_PLACEHOLDER = "@PUBLIC_INTERFACE@"
# https://<public address or DNS name> of the TLS front (tls-front): the management Elastic IP is
# assigned at deploy time, so install-openstack fills it from its PUBLIC_BASE_URL parameter.
PUBLIC_URL_PLACEHOLDER = "@PUBLIC_BASE_URL@"
# The services' own calls go to the catalog's internal endpoints (public-endpoints creates them and
# moves the public ones to the public https address, neither routed nor trusted from the host):
# the options of the services that pick the public interface by default (docs/security-and-tls.md, checked in
# nova 34.0.0, neutron 29.0.0, cinder 29.0.0). Nova's clients of Neutron and Placement would try
# internal first, but DevStack sets their `interface = public` (lib/keystone configure_keystoneauth;
# keystoneauth's deprecated name of valid_interfaces): internal first, public while there is none.
INTERNAL_CATALOG_POST_CONFIG = (
    ("$NEUTRON_CONF", "nova", "endpoint_type", "internal"),  # VM-boot port events to Nova
    ("$NEUTRON_CONF", "placement", "endpoint_type", "internal"),
    ("$NOVA_CONF", "neutron", "valid_interfaces", "internal,public"),  # VM ports
    ("$NOVA_CONF", "placement", "valid_interfaces", "internal,public"),
    ("$NOVA_CONF", "cinder", "catalog_info", "volumev3::internalURL"),
    ("$CINDER_CONF", "nova", "interface", "internal"),
    ("$CINDER_CONF", "DEFAULT", "glance_catalog_info", "image:glance:internalURL"),
)
# A compute node runs only nova-compute of those services (its Neutron, Placement and Cinder
# clients; no API there, so no token validation).
COMPUTE_INTERNAL_CATALOG_POST_CONFIG = tuple(o for o in INTERNAL_CATALOG_POST_CONFIG if o[0] == "$NOVA_CONF")
# Token validation: every API's keystonemiddleware calls Keystone at the catalog's identity endpoint
# of its [keystone_authtoken] `interface`, which DevStack sets to `public` (lib/keystone
# configure_keystoneauth): once public-endpoints moves it to https://<public address>, every API
# call fails (seen in the lab: tests/lab/test_public_api.py). `internal` exists only while
# public-endpoints is applied (not during stack.sh); the identity *admin* endpoint that
# KEYSTONE_ADMIN_ENDPOINT=True makes DevStack create (http://HOST_IP/identity) always exists and
# public-endpoints never moves it. The API services of the all-in-one host, by their config file:
AUTHTOKEN_CONFS = ("$NEUTRON_CONF", "$NOVA_CONF", "$CINDER_CONF", "$GLANCE_API_CONF", "$PLACEMENT_CONF")
AUTHTOKEN_INTERFACE = "admin"
# Quota checks: oslo.limit finds Keystone in the catalog through its [oslo_limit] keystoneauth
# adapter, whose interface DevStack leaves unset: openstacksdk's default, public. Glance checks
# every image upload that way (DevStack's GLANCE_ENABLE_QUOTAS, on by default: use_keystone_limits),
# so after the move an upload failed with 500 "The identity service for <host>:None exists but does
# not have any supported versions". Nova does it with unified limits (NOVA_USE_UNIFIED_LIMITS; its
# default DbQuotaDriver is deprecated in nova 2026.1). The same identity endpoint as token validation.
OSLO_LIMIT_POST_CONFIG = (
    ("$GLANCE_API_CONF", "oslo_limit", "valid_interfaces", AUTHTOKEN_INTERFACE),
    ("$NOVA_CONF", "oslo_limit", "valid_interfaces", AUTHTOKEN_INTERFACE),
)


def catalog_post_config() -> tuple[tuple[str, str, str, str], ...]:
    """The post-config options above, each file's together (its [keystone_authtoken] first)."""
    others = INTERNAL_CATALOG_POST_CONFIG + OSLO_LIMIT_POST_CONFIG
    files = dict.fromkeys([*(o[0] for o in others), *AUTHTOKEN_CONFS])
    options: list[tuple[str, str, str, str]] = []
    for file in files:
        if file in AUTHTOKEN_CONFS:
            options.append((file, "keystone_authtoken", "interface", AUTHTOKEN_INTERFACE))
        options.extend(o for o in others if o[0] == file)
    return tuple(options)


# DevStack's names for the provider side (its defaults, spelled out so the steps agree).
PUBLIC_BRIDGE = "br-ex"
PHYSICAL_NETWORK = "public"
# Where stack.sh writes its full log; install-openstack.sh prints its tail on failure.
LOGFILE = "/opt/stack/logs/stack.sh.log"

# ML2/OVN services DevStack enables by default; ML2/OVS + the L3 agent replaces them
# (DevStack's own "neutron-ovs" job disables the same list).
OVN_SERVICES = (
    "ovn-northd",
    "ovn-controller",
    "ovs-vswitchd",
    "ovsdb-server",
    "q-ovn-metadata-agent",
    "q-ovn-agent",
)
OVS_SERVICES = ("q-svc", "q-agt", "q-dhcp", "q-l3", "q-meta")


# Every node's: the passwords from the one placeholder; the full log to a file and its phase lines
# to $LOGFILE.summary (the install steps show those); nested guests on KVM where the instance
# exposes it, else QEMU emulation.
PASSWORDS_LOGS_LIBVIRT = (
    f"ADMIN_PASSWORD={PASSWORD_PLACEHOLDER}",
    "DATABASE_PASSWORD=$ADMIN_PASSWORD",
    "RABBIT_PASSWORD=$ADMIN_PASSWORD",
    "SERVICE_PASSWORD=$ADMIN_PASSWORD",
    f"LOGFILE={LOGFILE}",
    "VERBOSE=False",
    "LOG_COLOR=False",
    f"LIBVIRT_TYPE={LIBVIRT_PLACEHOLDER}",
    "# The guests' CPU: host-passthrough with KVM. A nested host (an m8i with nested virtualization,",
    "# any VM that offers KVM) has a CPU no named model matches: with DevStack's default for KVM, the",
    "# Nehalem model, nova-compute refuses to start (not compatible with host CPU). With qemu",
    "# (emulation, no /dev/kvm) DevStack's Nehalem model stays: libvirt allows host-passthrough only",
    "# for accelerated guests, and Nova does not compare an emulated guest's model with the host.",
    f"LIBVIRT_CPU_MODE={CPU_MODE_PLACEHOLDER}",
)
# Neutron with ML2/OVS and VXLAN tenant networks, on the controller and the compute nodes alike.
ML2_OVS = (
    "Q_AGENT=openvswitch",
    "Q_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch",
    "Q_ML2_TENANT_NETWORK_TYPE=vxlan",
)


def render_local_conf(
    *,
    host_ip: IPv4Address,
    provider_cidr: IPv4Network,
    vpc_router_ip: IPv4Address,
    provider_ip: IPv4Address,
    floating_ips: list[IPv4Address],
) -> str:
    """local.conf for an all-in-one DevStack with ML2/OVS + the L3 agent on the provider NIC.

    The allocation pool is the provider ENI's registered IPs: its primary IP
    (the router gateway) and its secondary IPs (floating IPs), which are contiguous.
    """
    pool_end = floating_ips[-1] if floating_ips else provider_ip
    lines = [
        # Frozen text, its old module path included: install-openstack's stamp hashes the whole
        # local.conf, so any change here unstacks and re-installs DevStack on every deployed stack.
        "# Rendered by openstack-on-aws (components/localconf.py); do not edit on the host.",
        "[[local|localrc]]",
        f"HOST_IP={host_ip}",
        *PASSWORDS_LOGS_LIBVIRT,
        # ML2/OVS with the L3 agent: the qrouter namespaces the gateway-mac step works in.
        *ML2_OVS,
        "disable_service " + " ".join(OVN_SERVICES),
        "enable_service " + " ".join(OVS_SERVICES),
        "disable_service tempest",
        # The provider NIC (address-free, see prepare-host) becomes a port of br-ex.
        f"PUBLIC_INTERFACE={INTERFACE_PLACEHOLDER}",
        f"PUBLIC_BRIDGE={PUBLIC_BRIDGE}",
        f"OVS_PHYSICAL_BRIDGE={PUBLIC_BRIDGE}",
        f"PHYSICAL_NETWORK={PHYSICAL_NETWORK}",
        f"PUBLIC_PHYSICAL_NETWORK={PHYSICAL_NETWORK}",
        "Q_USE_PROVIDERNET_FOR_PUBLIC=True",
        # The VPC router owns the gateway IP: never put it on br-ex.
        "Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE=False",
        f"FLOATING_RANGE={provider_cidr}",
        f"PUBLIC_NETWORK_GATEWAY={vpc_router_ip}",
        f"Q_FLOATING_ALLOCATION_POOL=start={provider_ip},end={pool_end}",
        "IP_VERSION=4",
        # The external-gateway step creates (and removes) the networks and the router itself,
        # with the router gateway on the provider ENI's registered IP.
        "NEUTRON_CREATE_INITIAL_NETWORKS=False",
        # The console links nova hands out: noVNC through the TLS front (tls-front.sh's /novnc/).
        f"NOVNCPROXY_URL={PUBLIC_URL_PLACEHOLDER}/novnc/vnc_lite.html",
        # An identity endpoint on the interface the services validate tokens with (AUTHTOKEN_INTERFACE).
        "KEYSTONE_ADMIN_ENDPOINT=True",
    ]
    return "\n".join(lines + post_config_lines(catalog_post_config())) + "\n"


def post_config_lines(options: tuple[tuple[str, str, str, str], ...]) -> list[str]:
    """`[[post-config|$FILE]]` meta-sections of local.conf, grouped by file then section, in order."""
    lines: list[str] = []
    current: tuple[str, str] | None = None
    for file, section, option, value in options:
        if current is None or current[0] != file:
            lines.append(f"[[post-config|{file}]]")
            current = None
        if current != (file, section):
            lines.append(f"[{section}]")
            current = (file, section)
        lines.append(f"{option} = {value}")
    return lines


def post_config_files(text: str) -> list[str]:
    """The DevStack variables naming the files of a local.conf's post-config sections (`$NOVA_CONF` -> NOVA_CONF)."""
    return [line[len("[[post-config|$") : -2] for line in text.splitlines() if line.startswith("[[post-config|$")]


def local_conf_variables(text: str) -> list[str]:
    """The variable names a local.conf assigns (NAME=...), in order."""
    names = []
    for line in text.splitlines():
        head, sep, _ = line.partition("=")
        if sep and head.isidentifier() and head.upper() == head:
            names.append(head)
    return names


# What a compute node runs (DevStack's multi-node guide and its multinode jobs, ML2/OVS flavour):
# Nova's compute service, the placement client and Neutron's Open vSwitch agent.
COMPUTE_SERVICES = ("n-cpu", "placement-client", "q-agt")


def render_compute_local_conf(*, host_ip: IPv4Address, service_host: IPv4Address) -> str:
    """local.conf for a compute node of the controller at `service_host` (the all-in-one above).

    The controller's local.conf needs no change: DevStack's tenant tunnels are on by default
    (ENABLE_TENANT_TUNNELS), its Q_ML2_TENANT_NETWORK_TYPE is vxlan and its tunnel endpoint is
    its HOST_IP, the management IP. Each node's VXLAN endpoint is its own management IP.
    """
    lines = [
        "# Rendered by openstack-on-aws (onhost/localconf.py): a compute node; do not edit on the host.",
        "[[local|localrc]]",
        f"HOST_IP={host_ip}",
        f"SERVICE_HOST={service_host}",
        # The controller's database, message queue, image and network APIs.
        "DATABASE_TYPE=mysql",
        "DATABASE_HOST=$SERVICE_HOST",
        "RABBIT_HOST=$SERVICE_HOST",
        "GLANCE_HOSTPORT=$SERVICE_HOST:9292",
        "Q_HOST=$SERVICE_HOST",
        *PASSWORDS_LOGS_LIBVIRT,
        "ENABLED_SERVICES=" + ",".join(COMPUTE_SERVICES),
        # The controller's Neutron: ML2/OVS, VXLAN tenant networks tunnelled over the management subnet.
        *ML2_OVS,
        "TUNNEL_ENDPOINT_IP=$HOST_IP",
        f"PHYSICAL_NETWORK={PHYSICAL_NETWORK}",
        # Consoles: the controller's noVNC proxy reaches the node's VNC server on its management IP.
        "NOVA_VNC_ENABLED=True",
        "VNCSERVER_LISTEN=$HOST_IP",
        "VNCSERVER_PROXYCLIENT_ADDRESS=$HOST_IP",
        "IP_VERSION=4",
    ]
    return "\n".join(lines + post_config_lines(COMPUTE_INTERNAL_CATALOG_POST_CONFIG)) + "\n"
