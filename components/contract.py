"""The host contract: what a host component hands to `OpenStack`, and all `OpenStack` knows of a host.

A host component (`Host` for the EC2 instance this program creates, `ExistingMachine` for a
machine it did not create; compute nodes later) produces one `HostContract`; `OpenStack` consumes
it and nothing else of the host, so the remote steps never learn whether an EC2 instance, another
cloud's VM or a lab namespace is behind it. `make render` builds the same object with placeholders
where values exist only after a deployment (`aws_placeholder_contract`).

Addresses the steps and DevStack's local.conf are rendered from are plain values (known before
deploying); what a cloud assigns at deploy time (MACs, public IPs, ids) are `pulumi.Input`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

import pulumi

if TYPE_CHECKING:
    from config.host import ExistingHost
    from config.settings import Settings


@dataclass(frozen=True)
class JumpHost:
    """An SSH bastion between Pulumi and the host; the host's private key logs in to it too."""

    host: str
    user: str
    port: int = 22


@dataclass(frozen=True)
class SshConnection:
    """How the remote steps reach the host (pulumi-command's `remote.ConnectionArgs`)."""

    host: pulumi.Input[str]
    """Address the steps dial (a public IP, a DNS name, or an address behind `jump_host`)."""
    user: str
    """Login user; it needs password-less sudo."""
    private_key: pulumi.Input[str]
    """OpenSSH private key (a secret: the consumer keeps it wrapped as one)."""
    port: int = 22
    jump_host: JumpHost | None = None
    host_key: pulumi.Input[str] | None = None
    """The host's expected SSH public key; None accepts any (the existing-machine mode warns)."""


@dataclass(frozen=True)
class HostContract:
    """One host as the remote steps see it (docs/architecture.md, "The host contract")."""

    ssh: SshConnection
    machine_id: pulumi.Input[str]
    """Identity of the machine: a change means a new machine and re-runs every step (`triggers`)."""
    management_ip: IPv4Address
    """The host's own IP on its management NIC (DevStack's HOST_IP)."""
    provider_mac: pulumi.Input[str]
    """MAC of the provider NIC: finds the NIC, and the MAC the router gateway takes."""
    provider_ip: IPv4Address
    """The IP the cloud registered with `provider_mac`: the router gateway's fixed IP."""
    provider_cidr: IPv4Network
    """The provider NIC's subnet: Neutron's external subnet."""
    provider_gateway: IPv4Address
    """The subnet's upstream gateway (the VPC router on AWS): the external subnet's gateway."""
    public_address: pulumi.Input[str]
    """The address users reach (Keystone, Horizon, SSH)."""
    dns_server: IPv4Address
    """DNS server for the tenant subnet (the VPC resolver on AWS)."""
    floating_ips: Mapping[IPv4Address, pulumi.Input[str]] = field(default_factory=dict)
    """More registered provider IPs (providerIp+1, +2, ...) -> their public addresses."""
    provider_public_ip: pulumi.Input[str] | None = None
    """Public address of `provider_ip` (source of tenant traffic, target of port forwards), if any."""
    cluster_cidr: IPv4Network | None = None
    """The management subnet when this program made it (AWS): compute nodes join from there, so
    the host firewall (tls-front) lets it reach DevStack's plain-text services; None: only the host."""
    ready: Sequence[pulumi.Resource] = ()
    """What the first step waits for (instance, NIC attachment, public IP); empty for an existing machine."""
    deleted_with: pulumi.Resource | None = None
    """When this resource goes, the steps' `remove` is skipped (nothing left to undo); None: always undo."""

    @property
    def pool(self) -> list[IPv4Address]:
        """Every registered provider IP, in order: Neutron's allocation pool."""
        return [self.provider_ip, *sorted(self.floating_ips)]


@dataclass(frozen=True)
class NodeContract:
    """A compute node as its steps see it: a host contract without the provider part (only the
    controller carries the provider NIC and the networking fix; docs/compute-nodes.md)."""

    ssh: SshConnection
    machine_id: pulumi.Input[str]
    """Identity of the machine: a change re-runs the node's steps (`triggers`)."""
    management_ip: IPv4Address
    """The node's IP on the management subnet (its DevStack HOST_IP and VXLAN endpoint)."""
    hostname: str
    """Nova's compute host and Neutron's agent host name (set by prepare-compute)."""
    ready: Sequence[pulumi.Resource] = ()
    """What the node's first step waits for."""
    deleted_with: pulumi.Resource | None = None
    """When this resource goes, the node's steps marked so skip their `remove`."""


def existing_contract(
    host: ExistingHost, private_key: pulumi.Input[str], ready: Sequence[pulumi.Resource] = ()
) -> HostContract:
    """The contract of a machine this program did not create: every value comes from its `host` section."""
    jump = host.jump_host
    return HostContract(
        ssh=SshConnection(
            host=host.address,
            user=host.user,
            private_key=private_key,
            port=host.port,
            jump_host=JumpHost(host=jump.address, user=jump.user, port=jump.port) if jump else None,
            host_key=host.host_key,
        ),
        machine_id=host.machine_identity,
        management_ip=host.management_ip,
        provider_mac=host.provider_mac.lower(),
        provider_ip=host.provider_ip,
        provider_cidr=host.provider_cidr,
        provider_gateway=host.provider_gateway,
        public_address=host.reachable_address,
        dns_server=host.dns_server,
        floating_ips={ip: str(public) for ip, public in sorted(host.floating_ips.items())},
        provider_public_ip=str(host.provider_public_ip) if host.provider_public_ip else None,
        ready=ready,
    )


def aws_placeholder_contract(settings: Settings, private_key: str) -> HostContract:
    """What `Host` (components/host.py) hands over, with <placeholders> for what AWS assigns."""
    return HostContract(
        ssh=SshConnection(host="<management Elastic IP>", user="ubuntu", private_key=private_key),
        machine_id="<instance id>",
        management_ip=settings.management_ip,
        provider_mac="<provider ENI MAC>",
        provider_ip=settings.provider_ip,
        provider_cidr=settings.provider_subnet_cidr,
        provider_gateway=settings.vpc_router_ip,
        public_address="<management Elastic IP>",
        dns_server=settings.vpc_resolver_ip,
        floating_ips={ip: f"<Elastic IP of {ip}>" for ip in settings.floating_ips},
        provider_public_ip="<provider Elastic IP>",
        cluster_cidr=settings.management_subnet_cidr,
    )


def contract_for_render(settings: Settings, private_key: str) -> HostContract:
    """The contract `make render` uses in either host mode."""
    if settings.host is not None:
        return existing_contract(settings.host, private_key)
    return aws_placeholder_contract(settings, private_key)


def known_hosts_line(address: str, host_key: str, port: int = 22) -> str:
    """An OpenSSH known_hosts line that trusts `host_key` (authorized_keys format) for `address`."""
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {host_key.strip()}"


def known_hosts(ssh: SshConnection) -> pulumi.Output[str]:
    """The known_hosts line of the pinned host key (`ssh.host_key` must be set)."""
    return pulumi.Output.all(ssh.host, ssh.host_key).apply(lambda v: known_hosts_line(v[0], v[1], ssh.port))


def ssh_command(ssh: SshConnection, key_file: str | None = None) -> pulumi.Output[str]:
    """The shell command that logs in like the steps do (`-i key_file` when the stack made the key)."""
    parts: list[pulumi.Input[str]] = ["ssh "]
    if key_file:
        parts.append(f"-i {key_file} ")
    if ssh.port != 22:
        parts.append(f"-p {ssh.port} ")
    if ssh.jump_host is not None:
        j = ssh.jump_host
        parts.append(f"-J {j.user}@{j.host}" + (f":{j.port} " if j.port != 22 else " "))
    parts += [ssh.user, "@", ssh.host]
    return pulumi.Output.concat(*parts)
