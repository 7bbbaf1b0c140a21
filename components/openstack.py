"""The article's steps on the host: DevStack and the networking fix, as dependent remote commands.

prepare-host -> install-openstack -> external-gateway -> gateway-mac -> port-forwards, each a
`pulumi_command.remote.Command` running `components/steps/<step>.sh` (see components/remote.py).
Parameters travel on stdin only: pulumi-command v1.2.1 puts the whole command string into its
error message, and `environment` needs sshd's AcceptEnv. A Command's delete runs with the stdin,
connection and command stored in state, so `remove` always gets the parameters its `apply` had.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_random as random
from pulumi_command import remote

from components import localconf
from components.remote import command, params

if TYPE_CHECKING:
    from config.settings import Settings

# The cloud external-gateway acts as: DevStack's admin in the clouds.yaml DevStack writes.
DEVSTACK_CLOUD = "devstack-admin"
DEVSTACK_CLOUDS_YAML = "/etc/openstack/clouds.yaml"
STEPS = ("prepare-host", "install-openstack", "external-gateway", "gateway-mac", "port-forwards")
# SSH to an instance that is still booting: refused / timed-out dials are retried (about 5 s apart
# after the first few) until the limit; 120 dials of at most 30 s cover a slow first boot.
DIAL_ERROR_LIMIT = 120
PER_DIAL_TIMEOUT = 30
TIMEOUTS = {
    "prepare-host": pulumi.CustomTimeouts(create="30m", update="30m", delete="15m"),
    "install-openstack": pulumi.CustomTimeouts(create="90m", update="90m", delete="30m"),
}
DEFAULT_TIMEOUTS = pulumi.CustomTimeouts(create="15m", update="15m", delete="15m")


@dataclass
class OpenStackArgs:
    """Inputs of `OpenStack`. Addresses come from the settings, so every step renders ahead."""

    instance: pulumi.Resource
    """The EC2 instance: every step is deleted with it and re-created when it is replaced."""
    instance_id: pulumi.Input[str]
    """Its id: a new instance re-runs every step (a `triggers` input)."""
    provider_attachment: pulumi.Resource
    """The provider ENI's attachment: prepare-host needs the NIC present."""
    management_eip: pulumi.Resource
    """The management Elastic IP resource (the steps connect through it)."""
    host: pulumi.Input[str]
    """Public IP of the management Elastic IP."""
    ssh_user: str
    """Login user of the image (`ubuntu`)."""
    private_key: pulumi.Input[str]
    """OpenSSH private key for `ssh_user` (secret)."""
    provider_mac: pulumi.Input[str]
    """MAC of the provider ENI: finds the provider NIC, and the MAC the router gateway takes."""
    branch: str
    """DevStack branch."""
    local_conf: str
    """DevStack's local.conf, with the placeholders the host fills in (components/localconf.py)."""
    provider_cidr: IPv4Network
    """The provider subnet: Neutron's external subnet."""
    provider_ip: IPv4Address
    """Provider ENI's primary IP: the router's external gateway IP."""
    vpc_router_ip: IPv4Address
    """The VPC router of the provider subnet: the external subnet's gateway."""
    tenant_cidr: IPv4Network
    """The tenant network behind the router."""
    tenant_dns: IPv4Address
    """DNS server for the tenant subnet (the VPC resolver)."""
    floating_ips: list[IPv4Address] = field(default_factory=list)
    """Provider ENI's secondary IPs (the floating IP pool)."""
    forwards: list[str] = field(default_factory=list)
    """Port forwards as `proto:publicPort:tenantIp:tenantPort`."""
    admin_password: pulumi.Input[str] | None = None
    """OpenStack admin password (secret): letters, digits, `_` and `-` only; None generates one."""


def step_params(args: OpenStackArgs, router_id: object, gateway_port_id: object) -> dict[str, dict[str, object]]:
    """Each step's stdin parameters. Values may be Outputs (the program) or placeholders (render)."""
    pool_end = args.floating_ips[-1] if args.floating_ips else args.provider_ip
    return {
        "prepare-host": {"PROVIDER_MAC": args.provider_mac},
        "install-openstack": {
            "BRANCH": args.branch,
            "LOCAL_CONF": base64.b64encode(args.local_conf.encode()).decode(),
            "ADMIN_PASSWORD": args.admin_password,
            "PROVIDER_MAC": args.provider_mac,
        },
        "external-gateway": {
            "PHYSICAL_NETWORK": localconf.PHYSICAL_NETWORK,
            "PROVIDER_CIDR": args.provider_cidr,
            "VPC_GATEWAY_IP": args.vpc_router_ip,
            "POOL_START": args.provider_ip,
            "POOL_END": pool_end,
            "GATEWAY_IP": args.provider_ip,
            "TENANT_CIDR": args.tenant_cidr,
            "TENANT_DNS": args.tenant_dns,
            "CLOUD": DEVSTACK_CLOUD,
            "CLOUDS_YAML": DEVSTACK_CLOUDS_YAML,
        },
        "gateway-mac": {
            "ROUTER_ID": router_id,
            "GATEWAY_PORT_ID": gateway_port_id,
            "PROVIDER_MAC": args.provider_mac,
            "EXTERNAL_BRIDGE": localconf.PUBLIC_BRIDGE,
            "VPC_GATEWAY_IP": args.vpc_router_ip,
        },
        "port-forwards": {
            "ROUTER_ID": router_id,
            "GATEWAY_IP": args.provider_ip,
            "FORWARDS": ",".join(args.forwards),
        },
    }


def _stdin(values: dict[str, object], secret: bool = False) -> pulumi.Output[str]:
    text: pulumi.Output[str] = pulumi.Output.all(**values).apply(params)  # type: ignore[arg-type]
    return pulumi.Output.secret(text) if secret else text  # type: ignore[arg-type]


def _parse_gateway(stdout: str) -> dict[str, str]:
    """The external-gateway step's JSON line (the last line of its stdout)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("external-gateway printed nothing")
    out = json.loads(lines[-1])
    return {"router_id": out["router_id"], "gateway_port_id": out["gateway_port_id"]}


class OpenStack(pulumi.ComponentResource):
    """DevStack on the host and the article's networking fix, one remote command per step."""

    def __init__(self, name: str, args: OpenStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:openstack:OpenStack", name, None, opts)
        password = args.admin_password
        if password is None:
            # Letters and digits only: DevStack writes the password unquoted into URLs and files.
            password = random.RandomPassword(
                f"{name}-admin-password", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
            args = dataclasses.replace(args, admin_password=password)
        self.admin_password: pulumi.Output[str] = pulumi.Output.secret(password)
        connection = remote.ConnectionArgs(
            host=args.host,
            user=args.ssh_user,
            private_key=pulumi.Output.secret(args.private_key),
            dial_error_limit=DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT,
        )
        self.steps: dict[str, remote.Command] = {}

        def step(
            step_name: str,
            values: dict[str, object],
            depends_on: list[pulumi.Resource],
            secret_output: bool = False,
        ) -> remote.Command:
            cmd = remote.Command(
                f"{name}-{step_name}",
                connection=connection,
                create=command(step_name, "apply"),
                update=command(step_name, "apply"),
                delete=command(step_name, "remove"),
                # The stdin of a step that carries a secret is a secret as a whole.
                stdin=_stdin(values, secret=secret_output),
                # A new instance runs every step again.
                triggers=[args.instance_id],
                # Don't hand the previous run's output to the next one as environment variables.
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=depends_on,
                    # Every step changes the host: undo the old one before applying the new one.
                    delete_before_replace=True,
                    # When the instance goes, there is nothing left to undo on it.
                    deleted_with=args.instance,
                    custom_timeouts=TIMEOUTS.get(step_name, DEFAULT_TIMEOUTS),
                    additional_secret_outputs=["stdout", "stderr"] if secret_output else None,
                ),
            )
            self.steps[step_name] = cmd
            return cmd

        # The gateway ids are known only after external-gateway has run; until then, None.
        values = step_params(args, None, None)
        prepare = step(
            "prepare-host",
            values["prepare-host"],
            [args.instance, args.provider_attachment, args.management_eip],
        )
        # Its stdin holds the admin password; stack.sh's output and log tail are masked on the
        # host, but they are the one place a password could surface: all secret in the state.
        install = step("install-openstack", values["install-openstack"], [prepare], secret_output=True)
        gateway = step("external-gateway", values["external-gateway"], [install])
        parsed = gateway.stdout.apply(_parse_gateway)
        self.router_id: pulumi.Output[str] = parsed.apply(lambda g: g["router_id"])
        self.gateway_port_id: pulumi.Output[str] = parsed.apply(lambda g: g["gateway_port_id"])
        values = step_params(args, self.router_id, self.gateway_port_id)
        mac = step("gateway-mac", values["gateway-mac"], [gateway])
        step("port-forwards", values["port-forwards"], [mac])

        # Keystone and Horizon answer on the management Elastic IP (port 80, allowedCidrs only).
        self.keystone_auth_url = pulumi.Output.concat("http://", args.host, "/identity/v3")
        self.horizon_url = pulumi.Output.concat("http://", args.host, "/dashboard")
        self.clouds_yaml: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(self.keystone_auth_url, self.admin_password).apply(lambda v: clouds_yaml(*v))
        )
        self.register_outputs(
            {
                "router_id": self.router_id,
                "gateway_port_id": self.gateway_port_id,
                "keystone_auth_url": self.keystone_auth_url,
                "horizon_url": self.horizon_url,
            }
        )


def clouds_yaml(auth_url: str, password: str) -> str:
    """A clouds.yaml with one cloud, `openstack-on-aws`, as the admin user."""
    return (
        "clouds:\n"
        "  openstack-on-aws:\n"
        "    auth:\n"
        f"      auth_url: {auth_url}\n"
        "      username: admin\n"
        f"      password: {password}\n"
        "      project_name: admin\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
        "    identity_api_version: 3\n"
    )


def forward_specs(settings: Settings) -> list[str]:
    """The settings' port forwards as the port-forwards step's `proto:publicPort:tenantIp:tenantPort`."""
    return [f"{f.protocol}:{f.public_port}:{f.tenant_ip}:{f.tenant_port}" for f in settings.port_forwards]


def args_from_settings(settings: Settings, **host: Any) -> OpenStackArgs:
    """OpenStackArgs from the settings plus the host's values (resources, or placeholders in render)."""
    return OpenStackArgs(
        branch=settings.openstack_branch,
        local_conf=localconf.local_conf_for(settings),
        provider_cidr=settings.provider_subnet_cidr,
        provider_ip=settings.provider_ip,
        vpc_router_ip=settings.vpc_router_ip,
        tenant_cidr=settings.tenant_cidr,
        tenant_dns=settings.vpc_cidr[2],  # the VPC's resolver (base + 2)
        floating_ips=settings.floating_ips,
        forwards=forward_specs(settings),
        **host,
    )
