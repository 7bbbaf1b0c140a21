"""Section "host": the machine the steps run on — an EC2 instance this program creates (the
default, flat keys) or an existing machine (`host: {kind: existing, ...}`) it only logs in to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr

from config import checks
from config.base import REGION_KEY, Model, Port, key

# Accounts start with 5 Elastic IPs per region (elasticIpQuota's default).
DEFAULT_EIP_QUOTA = checks.DEFAULT_EIP_QUOTA
NESTED_VIRT_TYPES = re.compile(r"^(c8i|m8i|r8i)(-flex)?\.[a-z0-9]+$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
OPENSSH_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$")
HOSTNAME = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
# The keys that only an AWS host takes (refused for an existing machine, with their names).
AWS_HOST_KEYS = (
    "region", "availabilityZone", "instanceType", "rootVolumeGiB", "amiId", "sshPublicKey", "elasticIpQuota"
)


@dataclass(frozen=True)
class InstanceLimits:
    """What AWS says about an instance type (from `aws.ec2.get_instance_type`)."""

    max_network_interfaces: int
    max_ipv4_per_interface: int
    bare_metal: bool
    vcpus: int | None = None
    """Default vCPUs (the vCPU quota warning of compute nodes); None: not asked."""


class InstanceTypeTraits:
    """What an EC2 instance type gives, by its name: one rule for the host and the compute nodes
    (config/compute.py). Mixed into a model with an `instance_type` field."""

    if TYPE_CHECKING:
        instance_type: str

    @property
    def nested_virtualization(self) -> bool:
        """The type supports `cpu_options.nested_virtualization = "enabled"`."""
        return bool(NESTED_VIRT_TYPES.match(self.instance_type))

    @property
    def has_kvm(self) -> bool:
        return self.nested_virtualization or bool(re.search(r"\.metal(-|$)", self.instance_type))

    @property
    def architecture(self) -> str:
        """`arm64` for Graviton families (a `g` after the generation: m7g, c7gn), else `x86_64`."""
        return "arm64" if re.match(r"^[a-z]+[0-9]+g", self.instance_type) else "x86_64"


class JumpHost(Model):
    """An SSH bastion between Pulumi and the host (the same private key logs in to both)."""

    address: str = Field(pattern=HOSTNAME, description="Bastion's address (IP or DNS name).")
    port: Port = Field(22, description="Its SSH port.")
    user: str = Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$", description="Its login user.")


class ExistingHost(Model):
    """A Linux machine that this program did not create: reached over SSH, a second NIC for the provider network."""

    kind: Literal["existing"] = Field(description="`existing`; without a `host` key the program creates an EC2 host.")
    address: str = Field(pattern=HOSTNAME, description="Where the steps SSH to (IP or DNS name).")
    port: Port = Field(22, description="SSH port.")
    user: str = Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$", description="Login user; needs password-less sudo.")
    host_key: str | None = Field(
        None, description="The host's SSH public key (`ssh-ed25519 AAAA...`), checked on every connection."
    )
    jump_host: JumpHost | None = Field(None, description="Optional SSH bastion.")
    management_ip: IPv4Address = Field(description="The host's own IP on its management NIC (DevStack's HOST_IP).")
    provider_mac: str = Field(
        pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$",
        description="MAC of the provider NIC (the router gateway's MAC).",
    )
    provider_cidr: IPv4Network = Field(description="The provider NIC's subnet: OpenStack's external subnet.")
    provider_gateway: IPv4Address = Field(description="That subnet's upstream gateway (the cloud's router).")
    provider_ip: IPv4Address = Field(
        description="The IP the cloud registered on the provider NIC: the router gateway's IP."
    )
    floating_ips: dict[IPv4Address, IPv4Address] = Field(
        default_factory=dict,
        description="More registered IPs on the provider NIC (providerIp+1, +2, ...) -> their public addresses.",
    )
    public_address: str | None = Field(
        None, pattern=HOSTNAME, description="The address users reach; default `address`."
    )
    provider_public_ip: IPv4Address | None = Field(
        None, description="Public address of providerIp (port forwards), if any."
    )
    dns_server: IPv4Address = Field(IPv4Address("1.1.1.1"), description="DNS server for the tenant subnet.")
    machine_id: str | None = Field(
        None,
        max_length=200,
        description="Change it to re-run every step (a re-installed machine); default from address/MAC.",
    )

    @property
    def machine_identity(self) -> str:
        """What counts as "a new machine": `machineId`, else where it is and its provider NIC."""
        return self.machine_id or f"{self.user}@{self.address}:{self.port}/{self.provider_mac.lower()}"

    @property
    def reachable_address(self) -> str:
        return self.public_address or self.address

    def problems(self, tenant_cidr: IPv4Network) -> list[str]:
        """The provider addresses fit together; the tenant network stays clear of them."""
        at = f"{key('host')}."
        out: list[str] = []
        cidr = self.provider_cidr
        ends = (cidr.network_address, cidr.broadcast_address)
        if self.provider_ip not in cidr or self.provider_ip in ends:
            out.append(f"{at}providerIp: {self.provider_ip} is not a host address of providerCidr {cidr}")
        if self.provider_gateway not in cidr or self.provider_gateway in ends:
            out.append(f"{at}providerGateway: {self.provider_gateway} is not a host address of providerCidr {cidr}")
        elif self.provider_gateway == self.provider_ip:
            out.append(f"{at}providerGateway: {self.provider_gateway} is providerIp; the gateway is the cloud's router")
        if self.management_ip in cidr:
            out.append(f"{at}managementIp: {self.management_ip} is inside providerCidr {cidr}; use the other NIC's IP")
        # Neutron's allocation pool is one range: providerIp, then the floating IPs in order.
        for i, ip in enumerate(sorted(self.floating_ips)):
            expected = self.provider_ip + 1 + i
            if ip != expected or ip not in cidr or ip in ends:
                out.append(
                    f"{at}floatingIps: {ip} does not follow providerIp contiguously (expected {expected} inside "
                    f"{cidr}): Neutron's pool is the one range providerIp .. last floating IP"
                )
                break
        pool = [self.provider_ip, *self.floating_ips]
        if self.provider_gateway in pool[1:]:
            out.append(f"{at}providerGateway: {self.provider_gateway} is one of the floating IPs")
        if tenant_cidr.overlaps(cidr):
            out.append(f"{key('tenantCidr')}: {tenant_cidr} overlaps host.providerCidr {cidr}")
        if self.management_ip in tenant_cidr:
            out.append(f"{key('tenantCidr')}: {tenant_cidr} holds host.managementIp {self.management_ip}")
        return out

    def warnings(self) -> list[str]:
        if self.host_key is None:
            return [
                f"{key('host')}.hostKey: not set: the steps accept whatever key {self.address} presents; "
                "set the host's SSH public key (ssh-keyscan, checked out of band) to pin it"
            ]
        return []


class HostSettings(InstanceTypeTraits, Model):
    region: str = Field("us-east-1", description="AWS region, from the `aws:region` key.")
    availability_zone: str | None = Field(
        None, description="Availability zone of both subnets; defaults to `<region>a`."
    )
    instance_type: str = Field(
        "m8i.2xlarge",
        description="EC2 type. c8i/m8i/r8i (and -flex) get nested virtualization, *.metal has "
        "KVM; any other type runs tenant VMs on QEMU emulation (slow).",
    )
    root_volume_gib: int = Field(
        200, ge=40, le=16384, alias="rootVolumeGiB", description="Encrypted gp3 root volume, GiB."
    )
    ami_id: str | None = Field(
        None,
        pattern=r"^ami-[0-9a-f]{8,17}$",
        description="Pinned AMI; default: the newest Canonical Ubuntu 24.04 amd64 at first deploy.",
    )
    ssh_public_key: str | None = Field(
        None, description="Your OpenSSH public key; default: a generated ED25519 key pair."
    )
    ssh_private_key: SecretStr | None = Field(
        None, description="Secret. The private key the remote steps log in with (`sshPublicKey`'s private half on AWS)."
    )
    host: ExistingHost | None = Field(None, description="An existing machine; absent: the program creates an EC2 host.")
    elastic_ip_quota: int = Field(
        DEFAULT_EIP_QUOTA, ge=1, description="The account's Elastic IPs per region (AWS default 5), once raised."
    )

    @property
    def existing_host(self) -> bool:
        return self.host is not None

    @property
    def zone(self) -> str:
        return self.availability_zone or f"{self.region}a"

    def aws_host_problems(self, floating_ip_count: int, limits: InstanceLimits | None, eips: int) -> list[str]:
        """Zone in the region, a real instance type that takes two ENIs and the floating IPs, a key
        pair, the stack's `eips` Elastic IPs within the account's quota."""
        # Named by the key that pushes the stack over: the floating IPs, else the compute nodes.
        over = 2 + floating_ip_count > self.elastic_ip_quota or eips == 2 + floating_ip_count
        counts = key("floatingIpCount") if over else f"{key('computeNodes')}.count"
        problems: list[str] = checks.eip_quota_problems(eips, self.elastic_ip_quota, key("elasticIpQuota"), counts)
        if not re.fullmatch(re.escape(self.region) + r"[a-z]", self.zone):
            problems.append(f"{key('availabilityZone')}: {self.zone!r} is not a zone of {self.region}")
        if not INSTANCE_TYPE.match(self.instance_type):
            problems.append(f"{key('instanceType')}: {self.instance_type!r} is not an EC2 type name")
        if limits is not None:
            if limits.max_network_interfaces < 2:
                problems.append(
                    f"{key('instanceType')}: {self.instance_type} takes only "
                    f"{limits.max_network_interfaces} network interface; two are needed"
                )
            if floating_ip_count > limits.max_ipv4_per_interface - 1:
                problems.append(
                    f"{key('floatingIpCount')}: {self.instance_type} allows "
                    f"{limits.max_ipv4_per_interface} IPv4 addresses per ENI, so at most "
                    f"{limits.max_ipv4_per_interface - 1} floating IPs"
                )
        if (self.ssh_public_key is None) != (self.ssh_private_key is None):
            problems.append(
                f"{key('sshPrivateKey')}: set both sshPublicKey and (as a secret) sshPrivateKey, "
                "or neither to generate a key pair"
            )
        elif self.ssh_public_key is not None and not OPENSSH_PUBLIC_KEY.match(self.ssh_public_key.strip()):
            problems.append(f"{key('sshPublicKey')}: not an OpenSSH public key")
        return problems

    def existing_host_problems(
        self, fields_set: set[str], aws_keys: tuple[str, ...], tenant_cidr: IPv4Network
    ) -> list[str]:
        """No AWS-only key; a private key to log in with; the `host` section's own checks."""
        assert self.host is not None
        problems = [
            f"{REGION_KEY if alias == 'region' else key(alias)}: AWS-only: an existing machine "
            "(host.kind: existing) does not take it; remove it"
            for alias in aws_keys
            if alias in fields_set
        ]
        if self.ssh_private_key is None:
            problems.append(
                f"{key('sshPrivateKey')}: required with host.kind existing: the private key the steps log in "
                "with (pulumi config set --secret sshPrivateKey < key)"
            )
        if self.host.host_key is not None and not OPENSSH_PUBLIC_KEY.match(self.host.host_key.strip()):
            problems.append(f"{key('host')}.hostKey: not an OpenSSH public key")
        return problems + self.host.problems(tenant_cidr)

    def host_warnings(self) -> list[str]:
        if self.host is not None:
            return self.host.warnings()
        out = []
        if not self.has_kvm:
            out.append(
                f"{key('instanceType')}: {self.instance_type} has no nested virtualization; "
                "tenant VMs will run on QEMU emulation (slow). Use c8i/m8i/r8i or *.metal for KVM."
            )
        return out


def fields_set_aliases(model: Any) -> set[str]:
    """The config keys (aliases) the user set on a model, not its defaults."""
    fields = type(model).model_fields
    return {fields[name].alias or name for name in model.model_fields_set}
