"""The step chain as data: one row per remote step, from which everything else is derived.

`OpenStack` (components/openstack.py) creates one `remote.Command` per row its mode selects,
`make render` (tools/render.py) writes each row's command and parameters, the policy pack checks
each row's secrecy, and the tests walk the same table. The first row, `scripts`, installs lib.sh
and the selected rows' scripts on the host (onhost/remote.py); every other row runs after it. A
row says: the script (`onhost/steps/<name>.sh`),
how its stdin parameters are built, which step it runs after, its timeouts, whether it carries a
secret, which `openstack.install` modes run it, the config switch that turns it on, which keys of
its JSON output later steps read, and which earlier steps' runs re-run it.

Adding a step is adding a row (and its script), as the `smoke` step after `public-endpoints` is:

    Step("smoke", _smoke, after="public-endpoints", timeout="25m", installs=frozenset({DEVSTACK}),
         switch="smokeTest", reruns_after=("gateway-mac", "port-forwards"))

Standard library only, so that the policy pack's own virtualenv can import it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from onhost.remote import UPLOAD

DEVSTACK = "devstack"
EXISTING = "existing"
INSTALL_MODES = frozenset({DEVSTACK, EXISTING})
# The smoke step's VM fetches this and must be seen as the provider's public IP (AWS's own echo service).
PROBE_URL = "http://checkip.amazonaws.com/"
# The tenant network external-gateway creates (or finds): where the smoke step's VM boots.
TENANT_NETWORK = "private"
# The TLS front (tls-front.sh): its port, and the local services it proxies to (components/tls.py).
HTTPS_PORT = 443
BACKEND_URL = "http://127.0.0.1:80"
"""DevStack's Apache, as the TLS front reaches it on the host."""
NOVNC_URL = "http://127.0.0.1:6080"
"""nova-novncproxy, as the TLS front reaches it on the host."""


@dataclass(frozen=True)
class StepInputs:
    """Everything a row's parameter builder may read. Values may be `pulumi.Output`s (the program)
    or `<placeholders>` (render): builders only place them, never inspect them."""

    provider_mac: object
    provider_cidr: IPv4Network
    provider_gateway: IPv4Address
    pool: list[IPv4Address]
    """The registered provider IPs in order: [0] is the router gateway's IP."""
    tenant_cidr: IPv4Network
    tenant_dns: IPv4Address
    forwards: list[str]
    cloud: str
    clouds_yaml: str
    external_network: str
    router: str
    physical_network: str
    external_bridge: str
    branch: str = ""
    local_conf: str = ""
    admin_password: object = None
    smoke_tenant_ip: IPv4Address | None = None
    """Where the smoke step's VM boots: a forward's tenant IP, or None to let Neutron choose."""
    provider_public_ip: object = None
    """The provider's public IP: the source the internet must see from a tenant VM (None: not known)."""
    emitted: Mapping[str, object] = field(default_factory=dict)
    """What earlier steps printed (their `emits` keys): router_id, gateway_port_id."""
    management_ip: IPv4Address | None = None
    """The host's management private IP: where DevStack's Apache serves the internal endpoints."""
    public_address: object = None
    """The IPv4 clients reach (the management Elastic IP): the TLS front's IP SAN."""
    public_dns_name: str = ""
    """Its optional DNS name (publicDnsName)."""
    public_base_url: object = None
    """`https://<DNS name or public address>`: the base of the public endpoints."""
    ca_certificate: object = None
    """The stack's CA certificate, base64 of its PEM (components.tls.TlsParts)."""
    server_certificate: object = None
    """The TLS front's certificate, base64 of its PEM."""
    server_private_key: object = None
    """Its private key, base64 of its PEM: a secret (the tls-front row is `secret`)."""
    plain_sources: tuple[IPv4Network, ...] = ()
    """Who besides the host may reach its plain-text services (tls-front's firewall): the compute nodes' subnet."""


Params = Callable[[StepInputs], dict[str, object]]


@dataclass(frozen=True)
class Step:
    """One remote step (docs/steps.md)."""

    name: str
    params: Params
    after: str | None
    timeout: str = "15m"
    """create and update timeout (pulumi CustomTimeouts)."""
    delete_timeout: str = "15m"
    secret: bool = False
    """Its stdin carries a secret: stdin, stdout and stderr are kept secret as a whole."""
    installs: frozenset[str] = INSTALL_MODES
    """The `openstack.install` modes that run it."""
    emits: tuple[str, ...] = ()
    """Keys of the JSON object on its last stdout line that later steps read (`StepInputs.emitted`)."""
    switch: str | None = None
    """A boolean config key that must be on for the row to run (`chain_for`'s `switches`); None: always."""
    reruns_after: tuple[str, ...] = ()
    """Earlier steps whose runs re-run this one: their stdout (known from state, so an unchanged
    stack shows no change) joins its triggers."""

    @property
    def script(self) -> str:
        return f"{self.name}.sh"


def no_params(i: object) -> dict[str, object]:
    return {}


def _prepare_host(i: StepInputs) -> dict[str, object]:
    return {"PROVIDER_MAC": i.provider_mac}


def devstack_params(branch: str, local_conf: str, admin_password: object) -> dict[str, object]:
    """What a DevStack install step (install-openstack, install-compute) gets: lib.sh's
    decode_local_conf reads LOCAL_CONF as base64."""
    return {
        "BRANCH": branch,
        "LOCAL_CONF": base64.b64encode(local_conf.encode()).decode(),
        "ADMIN_PASSWORD": admin_password,
    }


def _install_openstack(i: StepInputs) -> dict[str, object]:
    return {
        **devstack_params(i.branch, i.local_conf, i.admin_password),
        "PROVIDER_MAC": i.provider_mac,
        "PUBLIC_BASE_URL": i.public_base_url,
    }


def _external_gateway(i: StepInputs) -> dict[str, object]:
    return {
        "CLOUD": i.cloud,
        "CLOUDS_YAML": i.clouds_yaml,
        "EXTERNAL_NETWORK": i.external_network,
        "ROUTER": i.router,
        "PHYSICAL_NETWORK": i.physical_network,
        "PROVIDER_CIDR": i.provider_cidr,
        "VPC_GATEWAY_IP": i.provider_gateway,
        "POOL_START": i.pool[0],
        "POOL_END": i.pool[-1],
        "GATEWAY_IP": i.pool[0],
        "TENANT_CIDR": i.tenant_cidr,
        "TENANT_DNS": i.tenant_dns,
    }


def _gateway_mac(i: StepInputs) -> dict[str, object]:
    return {
        "ROUTER_ID": i.emitted["router_id"],
        "GATEWAY_PORT_ID": i.emitted["gateway_port_id"],
        "PROVIDER_MAC": i.provider_mac,
        "EXTERNAL_BRIDGE": i.external_bridge,
        "VPC_GATEWAY_IP": i.provider_gateway,
    }


def _port_forwards(i: StepInputs) -> dict[str, object]:
    return {"ROUTER_ID": i.emitted["router_id"], "GATEWAY_IP": i.pool[0], "FORWARDS": ",".join(i.forwards)}


def _smoke(i: StepInputs) -> dict[str, object]:
    return {
        "ROUTER_ID": i.emitted["router_id"],
        "TENANT_NETWORK": TENANT_NETWORK,
        "TENANT_IP": i.smoke_tenant_ip or "",
        "VPC_GATEWAY_IP": i.provider_gateway,
        "PROBE_URL": PROBE_URL,
        "EXPECTED_PUBLIC_IP": "" if i.provider_public_ip is None else i.provider_public_ip,
    }


def _tls_front(i: StepInputs) -> dict[str, object]:
    return {
        "PUBLIC_ADDRESS": i.public_address,
        "DNS_NAME": i.public_dns_name,
        "SERVER_CERT": i.server_certificate,
        "SERVER_KEY": i.server_private_key,
        "CA_CERT": i.ca_certificate,
        "HTTPS_PORT": str(HTTPS_PORT),
        "BACKEND_URL": BACKEND_URL,
        "NOVNC_URL": NOVNC_URL,
        "PLAIN_SOURCES": ",".join(str(c) for c in i.plain_sources),
    }


def _public_endpoints(i: StepInputs) -> dict[str, object]:
    return {"PUBLIC_BASE_URL": i.public_base_url, "BACKEND_HOST": i.management_ip}


CHAIN: tuple[Step, ...] = (
    # lib.sh and the scripts of the stack's steps, installed on the host: every other row runs them,
    # so it comes first on every host and install mode, and its remove comes last. No parameter. The
    # first SSH contact with a booting instance (its dials are retried): prepare-host's timeout.
    Step(UPLOAD, no_params, after=None, timeout="30m"),
    Step("prepare-host", _prepare_host, after=UPLOAD, timeout="30m", installs=frozenset({DEVSTACK})),
    # Its stdin holds the admin password; stack.sh's output and log tail are masked on the host,
    # but they are the one place a password could surface: all secret in the state.
    Step(
        "install-openstack",
        _install_openstack,
        after="prepare-host",
        timeout="90m",
        delete_timeout="30m",
        secret=True,
        installs=frozenset({DEVSTACK}),
    ),
    # Horizon, the APIs and noVNC on https://<public address>/ (443), proxied to DevStack's Apache.
    # Its stdin holds the server certificate's private key: secret. A new certificate (renewal, a
    # new DNS name or address) changes the stdin, so the step re-applies (idempotent, Apache reloaded).
    Step(
        "tls-front", _tls_front, after="install-openstack", timeout="10m", secret=True, installs=frozenset({DEVSTACK})
    ),
    Step("external-gateway", _external_gateway, after="tls-front", emits=("router_id", "gateway_port_id")),
    Step("gateway-mac", _gateway_mac, after="external-gateway"),
    Step("port-forwards", _port_forwards, after="gateway-mac"),
    # Keystone's public endpoints -> https://<public address>/<path>, internal endpoints on the
    # management IP for the services (local.conf points them there). From then on the host's own
    # `openstack` calls use the internal interface: lib.sh exports OS_INTERFACE=internal from this
    # step's state, so later steps and re-runs (smoke, external-gateway, discover-hosts) keep working.
    Step("public-endpoints", _public_endpoints, after="port-forwards", installs=frozenset({DEVSTACK})),
    # A CirrOS VM proves the cloud at the end of `up` (DevStack uploads CirrOS and its flavors; on an
    # OpenStack that is not ours the steps create no VM), after the catalog moved: its boot's port
    # events go from Neutron to Nova through the internal endpoints. It runs on create, when its parameters
    # change, and when gateway-mac or port-forwards ran again.
    Step(
        "smoke",
        _smoke,
        after="public-endpoints",
        timeout="25m",
        installs=frozenset({DEVSTACK}),
        switch="smokeTest",
        reruns_after=("gateway-mac", "port-forwards"),
    ),
)
STEPS = tuple(s.name for s in CHAIN)
BY_NAME = {s.name: s for s in CHAIN}


def chain_for(install: str, switches: Collection[str] = ()) -> list[Step]:
    """The rows an `openstack.install` mode runs, in order; a row with a `switch` only when that
    config key is in `switches` (the switches that are on)."""
    if install not in INSTALL_MODES:
        raise ValueError(f"unknown install mode {install!r}")
    return [s for s in CHAIN if install in s.installs and (s.switch is None or s.switch in switches)]


def scripts_of(names: Iterable[str]) -> list[str]:
    """The steps whose scripts a host's upload row installs: the host's rows (names) but that row."""
    return [n for n in names if n != UPLOAD]


def runs_after(step: Step, selected: list[Step]) -> Step | None:
    """The selected step this one waits for: its `after`, or theirs when that one is not selected."""
    names = {s.name for s in selected}
    after = step.after
    while after is not None and after not in names:
        after = BY_NAME[after].after
    return BY_NAME[after] if after is not None else None


def parse_emitted(step: Step, stdout: str) -> dict[str, str]:
    """The `emits` keys from the JSON object on the step's last non-empty stdout line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{step.name} printed nothing")
    out = json.loads(lines[-1])
    return {k: str(out[k]) for k in step.emits}


def placeholders(selected: list[Step]) -> dict[str, object]:
    """`<key from step>` for every emitted key: what render shows for values known after deploy."""
    return {k: f"<{k.replace('_', ' ')} from {s.name}>" for s in selected for k in s.emits}


def _check() -> None:
    """The table is consistent: unique names, `after` and `reruns_after` name rows before it, known modes."""
    seen: set[str] = set()
    for s in CHAIN:
        if (
            s.name in seen
            or (s.after is not None and s.after not in seen)
            or not set(s.reruns_after) <= seen
            or not s.installs <= INSTALL_MODES
        ):
            raise ValueError(f"step table: row {s.name!r} is a duplicate, runs after an unknown step or a bad mode")
        seen.add(s.name)


_check()
