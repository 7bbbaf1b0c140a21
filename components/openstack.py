"""The article's steps on the host: DevStack and the networking fix, as dependent remote commands.

`OpenStack` consumes a `HostContract` (components/contract.py) and nothing else of the host, and
creates one `pulumi_command.remote.Command` per row of the step table (onhost/chain.py) that its
`openstack.install` mode selects: scripts -> prepare-host -> install-openstack -> tls-front ->
external-gateway -> gateway-mac -> port-forwards -> public-endpoints (-> smoke, with `smokeTest`)
for DevStack, scripts -> external-gateway -> gateway-mac -> port-forwards for an OpenStack already
on the host. `scripts` installs the steps' scripts (onhost/remote.py); each other step's command is
one short line that runs its script.
With DevStack, `tls` (`TlsParts`: the `Tls` component's certificates, made in __main__.py) feeds
tls-front and the https outputs (keystone_auth_url, horizon_url, clouds_yaml, ca_certificate).
Parameters travel on stdin only: pulumi-command v1.2.1 puts the whole command string into its
error message, and `environment` needs sshd's AcceptEnv. A Command's delete runs with the stdin,
connection and command stored in state, so `remove` always gets the parameters its `apply` had.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

import pulumi
import pulumi_random as random
from pulumi_command import remote

from components.clouds import clouds_yaml
from components.contract import HostContract, NodeContract
from onhost import localconf
from onhost.chain import DEVSTACK, Step, StepInputs, chain_for, parse_emitted, runs_after, scripts_of
from onhost.compute_chain import CONTROLLER_SCRIPTS
from onhost.remote import UPLOAD, params, texts, upload

if TYPE_CHECKING:
    from collections.abc import Sequence

    from config.settings import Settings
    from onhost.compute_chain import NodeStep

# SSH to an instance that is still booting: refused / timed-out dials are retried (about 5 s apart
# after the first few) until the limit; 120 dials of at most 30 s cover a slow first boot.
DIAL_ERROR_LIMIT = 120
PER_DIAL_TIMEOUT = 30


@dataclass
class OpenStackArgs:
    """Inputs of `OpenStack`: the host contract plus the OpenStack side of the settings."""

    host: HostContract
    """The host the steps run on (its SSH connection, addresses, what to wait for)."""
    tenant_cidr: IPv4Network
    """The tenant network behind the router."""
    install: str = DEVSTACK
    """`devstack` (the steps install it) or `existing` (Neutron ML2/OVS + L3 agent already there)."""
    branch: str = ""
    """DevStack branch (install devstack)."""
    forwards: list[str] = field(default_factory=list)
    """Port forwards as `proto:publicPort:tenantIp:tenantPort`."""
    admin_password: pulumi.Input[str] | None = None
    """OpenStack admin password (secret, install devstack): A-Z a-z 0-9 _ - only; None generates one."""
    cloud: str = "devstack-admin"
    """The admin cloud's name in `clouds_yaml` on the host."""
    clouds_yaml: str = "/etc/openstack/clouds.yaml"
    """clouds.yaml's path on the host."""
    external_network: str = "public"
    """External network's name: used if it exists, else created (and removed with the step)."""
    router: str = "router1"
    """Router's name: used if it exists, else created (and removed with the step)."""
    physical_network: str = localconf.PHYSICAL_NETWORK
    """Physnet of a created external network."""
    external_bridge: str = localconf.PUBLIC_BRIDGE
    """The OVS bridge on the provider NIC."""
    smoke_test: bool = True
    """Run the `smoke` step after port-forwards (config key smokeTest; DevStack only)."""
    smoke_tenant_ip: IPv4Address | None = None
    """Where the smoke test's VM boots: a forward's tenant IP, or None to let Neutron choose."""
    tls: TlsParts | None = None
    """The TLS front's certificates (install devstack: required; components.tls `Tls`)."""
    compute_nodes: bool = False
    """Compute nodes join this host: its upload row also installs their steps that run here."""


@dataclass(frozen=True)
class TlsParts:
    """What the tls-front step installs and the outputs hand out (PEM text; `Tls`'s outputs, or
    render's placeholders). The public address is the contract's `public_address`."""

    public_ip: pulumi.Input[str]
    """The IPv4 the certificate names (`tls_names`)."""
    ca_certificate: pulumi.Input[str]
    server_certificate: pulumi.Input[str]
    server_private_key: pulumi.Input[str]
    """Secret."""
    dns_name: str | None = None
    """publicDnsName: the name in the public URLs instead of the address."""
    encode: bool = True
    """Base64 the PEMs for the step's stdin (the program); False: placeholders shown as they are (render)."""


def tls_names(host: HostContract, dns_name: str | None) -> tuple[pulumi.Input[str], str | None]:
    """(IPv4, DNS name) of the TLS front's certificate: the contract's public address and
    publicDnsName. An existing machine whose public address is a DNS name: that name (unless
    publicDnsName is set) and, as the IP, its management IP (the only address it surely has)."""
    address = host.public_address
    # A string that is not an IPv4: a DNS name (render's `<management Elastic IP>` stands for an IP).
    if isinstance(address, str) and not address.startswith("<"):
        try:
            IPv4Address(address)
        except ValueError:
            return str(host.management_ip), dns_name or address
    return address, dns_name


def public_base_url(parts: TlsParts) -> pulumi.Output[str]:
    """`https://<DNS name or public address>`: the public endpoints', keystoneAuthUrl's and horizonUrl's base."""
    return pulumi.Output.concat("https://", parts.dns_name or parts.public_ip)


def selected_steps(args: OpenStackArgs) -> list[Step]:
    """The step-table rows this stack runs, in order: its install mode's, and the switched-on ones."""
    return chain_for(args.install, {"smokeTest"} if args.smoke_test else set())


def host_scripts(args: OpenStackArgs) -> list[str]:
    """The steps whose scripts the host's upload row installs: its rows', and the compute nodes'
    steps that run on it (onhost/compute_chain.py) when nodes join it."""
    return scripts_of(s.name for s in selected_steps(args)) + (CONTROLLER_SCRIPTS if args.compute_nodes else [])


def local_conf_for(host: HostContract) -> str:
    """DevStack's local.conf for a host (its addresses; the on-host placeholders stay)."""
    return localconf.render_local_conf(
        host_ip=host.management_ip,
        provider_cidr=host.provider_cidr,
        vpc_router_ip=host.provider_gateway,
        provider_ip=host.provider_ip,
        floating_ips=sorted(host.floating_ips),
    )


def _b64(pem: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.from_input(pem).apply(lambda text: base64.b64encode(text.encode()).decode())


def _tls_inputs(args: OpenStackArgs) -> dict[str, object]:
    """The TLS fields of `StepInputs` (none for an OpenStack that is not ours)."""
    parts = args.tls
    if args.install != DEVSTACK:
        return {}
    if parts is None:
        raise ValueError("OpenStackArgs.tls is required with install devstack (the tls-front step)")
    host = args.host
    pems = (parts.ca_certificate, parts.server_certificate, parts.server_private_key)
    ca, cert, key = (_b64(p) for p in pems) if parts.encode else pems
    return {
        "management_ip": host.management_ip,
        "public_address": parts.public_ip,
        "public_dns_name": parts.dns_name or "",
        # Render shows the URL with its placeholder: a plain string there.
        "public_base_url": public_base_url(parts) if parts.encode else f"https://{parts.dns_name or parts.public_ip}",
        "ca_certificate": ca,
        "server_certificate": cert,
        "server_private_key": pulumi.Output.secret(key) if parts.encode else key,
        "plain_sources": (host.cluster_cidr,) if host.cluster_cidr else (),
    }


def step_inputs(args: OpenStackArgs, emitted: dict[str, object]) -> StepInputs:
    """What the step table's parameter builders read, from the contract and the OpenStack settings."""
    host = args.host
    return StepInputs(
        **_tls_inputs(args),  # type: ignore[arg-type]
        provider_mac=host.provider_mac,
        provider_cidr=host.provider_cidr,
        provider_gateway=host.provider_gateway,
        pool=host.pool,
        tenant_cidr=args.tenant_cidr,
        tenant_dns=host.dns_server,
        forwards=args.forwards,
        cloud=args.cloud,
        clouds_yaml=args.clouds_yaml,
        external_network=args.external_network,
        router=args.router,
        physical_network=args.physical_network,
        external_bridge=args.external_bridge,
        branch=args.branch,
        local_conf=local_conf_for(host) if args.install == DEVSTACK else "",
        admin_password=args.admin_password,
        smoke_tenant_ip=args.smoke_tenant_ip,
        provider_public_ip=host.provider_public_ip,
        emitted=emitted,
    )


def connection_args(host: HostContract | NodeContract) -> remote.ConnectionArgs:
    """pulumi-command's connection from a contract's SSH part (the private key kept secret)."""
    ssh = host.ssh
    key = pulumi.Output.secret(ssh.private_key)
    proxy = None
    if ssh.jump_host is not None:
        proxy = remote.ProxyConnectionArgs(
            host=ssh.jump_host.host,
            port=ssh.jump_host.port,
            user=ssh.jump_host.user,
            private_key=key,
            dial_error_limit=DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT,
        )
    return remote.ConnectionArgs(
        host=ssh.host,
        port=ssh.port,
        user=ssh.user,
        private_key=key,
        host_key=ssh.host_key,
        proxy=proxy,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT,
    )


def step_stdin(values: dict[str, object], secret: bool = False) -> pulumi.Output[str]:
    """A step's stdin: its parameters as `KEY=value` lines (onhost/remote.py), secret as a whole if `secret`."""
    # Output.all() of nothing is a list: a row without parameters gets "".
    text: pulumi.Output[str] = pulumi.Output.all(**values).apply(params) if values else pulumi.Output.from_input("")  # type: ignore[arg-type]
    return pulumi.Output.secret(text) if secret else text  # type: ignore[arg-type]


def row_stdin(step: Step | NodeStep, values: dict[str, object], scripts: Sequence[str]) -> pulumi.Output[str]:
    """A row's stdin (onhost/remote.py `stdin()`): the upload row's is the script that installs
    `scripts`, any other's its parameters (`step_stdin`)."""
    if step.name == UPLOAD:
        return pulumi.Output.from_input(upload(scripts))
    return step_stdin(values, secret=step.secret)


class OpenStack(pulumi.ComponentResource):
    """OpenStack on the host and the article's networking fix, one remote command per step."""

    def __init__(self, name: str, args: OpenStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:openstack:OpenStack", name, None, opts)
        host = args.host
        devstack = args.install == DEVSTACK
        self.admin_password: pulumi.Output[str] | None = None
        if devstack:
            password = args.admin_password
            if password is None:
                # Letters and digits only: DevStack writes the password unquoted into URLs and files.
                password = random.RandomPassword(
                    f"{name}-admin-password", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
                ).result
            self.admin_password = pulumi.Output.secret(password)
            args = dataclasses.replace(args, admin_password=self.admin_password)
        connection = connection_args(host)
        self.steps: dict[str, remote.Command] = {}
        emitted: dict[str, object] = {}
        selected = selected_steps(args)
        scripts = host_scripts(args)
        for step in selected:
            before = runs_after(step, selected)
            values = step.params(step_inputs(args, emitted))
            apply, remove = texts(step.name, scripts)
            cmd = remote.Command(
                f"{name}-{step.name}",
                connection=connection,
                create=apply,
                update=apply,
                delete=remove,
                # The stdin of a step that carries a secret is a secret as a whole.
                stdin=row_stdin(step, values, scripts),
                # A new machine runs every step again; so do the runs of its `reruns_after` steps.
                triggers=[host.machine_id, *(self.steps[n].stdout for n in step.reruns_after if n in self.steps)],
                # Don't hand the previous run's output to the next one as environment variables.
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.steps[before.name]] if before else list(host.ready),
                    # Every step changes the host: undo the old one before applying the new one. Not
                    # the upload row: the old steps' removes run the scripts it installed (on the old
                    # machine, a new one gets its own first); its old remove runs at the end.
                    delete_before_replace=step.name != UPLOAD,
                    # When the machine goes, there is nothing left to undo on it.
                    deleted_with=host.deleted_with,
                    custom_timeouts=pulumi.CustomTimeouts(
                        create=step.timeout, update=step.timeout, delete=step.delete_timeout
                    ),
                    additional_secret_outputs=["stdout", "stderr"] if step.secret else None,
                ),
            )
            self.steps[step.name] = cmd
            if step.emits:
                parsed = cmd.stdout.apply(lambda out, s=step: parse_emitted(s, out))  # type: ignore[misc]
                for k in step.emits:
                    emitted[k] = parsed.apply(lambda d, k=k: d[k])  # type: ignore[misc]

        self.router_id: pulumi.Output[str] = emitted["router_id"]  # type: ignore[assignment]
        self.gateway_port_id: pulumi.Output[str] = emitted["gateway_port_id"]  # type: ignore[assignment]
        outputs: dict[str, object] = {"router_id": self.router_id, "gateway_port_id": self.gateway_port_id}
        self.keystone_auth_url: pulumi.Output[str] | None = None
        self.horizon_url: pulumi.Output[str] | None = None
        self.clouds_yaml: pulumi.Output[str] | None = None
        self.ca_certificate: pulumi.Output[str] | None = None
        if self.admin_password is not None and args.tls is not None:
            # DevStack: Horizon and every API on https://<public address>/ (the tls-front step), the
            # catalog's public endpoints there too (public-endpoints): no tunnel from outside.
            base = public_base_url(args.tls)
            self.keystone_auth_url = pulumi.Output.concat(base, "/identity/v3")
            self.horizon_url = pulumi.Output.concat(base, "/dashboard")
            self.ca_certificate = pulumi.Output.from_input(args.tls.ca_certificate)
            self.clouds_yaml = pulumi.Output.secret(
                pulumi.Output.all(self.keystone_auth_url, self.admin_password).apply(lambda v: clouds_yaml(*v))
            )
            outputs |= {
                "keystone_auth_url": self.keystone_auth_url,
                "horizon_url": self.horizon_url,
                "ca_certificate": self.ca_certificate,
            }
        self.register_outputs(outputs)


def args_from_settings(
    settings: Settings, host: HostContract, admin_password: pulumi.Input[str] | None, tls: TlsParts | None = None
) -> OpenStackArgs:
    """OpenStackArgs from the settings' OpenStack side and forwards plus the host's contract."""
    section = settings.openstack
    return OpenStackArgs(
        host=host,
        tenant_cidr=settings.tenant_cidr,
        install=section.install,
        branch=settings.openstack_branch,
        forwards=[f.spec for f in settings.port_forwards],
        admin_password=admin_password,
        cloud=section.cloud_name,
        clouds_yaml=section.clouds_yaml_path,
        external_network=section.external_network,
        router=section.router,
        physical_network=section.physical_network,
        external_bridge=section.external_bridge,
        smoke_test=settings.smoke_test,
        smoke_tenant_ip=settings.port_forwards[0].tenant_ip if settings.port_forwards else None,
        tls=tls,
        compute_nodes=settings.host is None and settings.compute_nodes.count > 0 and section.install == DEVSTACK,
    )
