"""The stack's settings: one validated, frozen model of `Pulumi.<stack>.yaml`.

Every key lives in the `openstack-on-aws:` namespace except the region, which is the AWS
provider's own `aws:region`. `load_settings()` reads them all, validates them in one pass and
raises `SettingsError`, whose message lists every problem with the config key to fix, before the
program registers a single resource.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from config import checks

NAMESPACE = "openstack-on-aws"
REGION_KEY = "aws:region"

# Host addresses inside a subnet that this program assigns itself (AWS reserves .0-.3 and the last).
HOST_OFFSET = 10
# The Neutron metadata proxy listens on this port inside every qrouter namespace.
RESERVED_PUBLIC_PORTS = {9697: "the Neutron metadata proxy listens on it in the router namespace"}
# Keys whose values must never be echoed in an error message.
SECRET_KEYS = {"sshPrivateKey", "adminPassword"}

NESTED_VIRT_TYPES = re.compile(r"^(c8i|m8i|r8i)(-flex)?\.[a-z0-9]+$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


class SettingsError(ValueError):
    """Bad stack configuration; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class InstanceLimits:
    """What AWS says about an instance type (from `aws.ec2.get_instance_type`)."""

    max_network_interfaces: int
    max_ipv4_per_interface: int
    bare_metal: bool


Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class PortForward(_Model):
    """One inbound port forward: provider Elastic IP:public_port -> tenant_ip:tenant_port."""

    protocol: Literal["tcp", "udp"] = Field("tcp", description="`tcp` or `udp`.")
    public_port: Port = Field(description="Port on the provider Elastic IP.")
    tenant_ip: IPv4Address = Field(description="Fixed IP of the tenant VM, inside `tenantCidr`.")
    tenant_port: Port = Field(description="Port on the tenant VM.")
    source_cidrs: list[IPv4Network] | None = Field(
        None,
        description="Who may use this forward; defaults to `allowedCidrs`. May be 0.0.0.0/0.",
    )


class FloatingIpIngress(_Model):
    """One inbound rule for the floating IPs (the provider ENI's security group)."""

    protocol: Literal["tcp", "udp", "icmp"] = Field("tcp", description="`tcp`, `udp` or `icmp`.")
    port: Port | None = Field(None, description="First (or only) port; required for tcp/udp.")
    to_port: Port | None = Field(None, description="Last port of a range; default `port`.")
    source_cidrs: list[IPv4Network] | None = Field(
        None, description="Who may connect; defaults to `allowedCidrs`. May be 0.0.0.0/0."
    )

    @property
    def ports(self) -> tuple[int, int]:
        """(from, to) as AWS takes them: -1, -1 for ICMP (every type)."""
        if self.protocol == "icmp" or self.port is None:
            return (-1, -1)
        return (self.port, self.to_port or self.port)

    def label(self) -> str:
        low, high = self.ports
        return self.protocol if low == -1 else f"{self.protocol}/{low}" + (f"-{high}" if high != low else "")


# Default floating-IP ingress: SSH from allowedCidrs (what the program always did).
DEFAULT_FLOATING_IP_INGRESS = (FloatingIpIngress.model_validate({"protocol": "tcp", "port": 22}),)


class Settings(_Model):
    """The stack's settings. Field aliases are the config keys (camelCase)."""

    region: str = Field("us-east-1", description="AWS region, from the `aws:region` key.")
    availability_zone: str | None = Field(
        None, description="Availability zone of both subnets; defaults to `<region>a`."
    )
    vpc_cidr: IPv4Network = Field(IPv4Network("10.42.0.0/16"), description="VPC CIDR (/16-/28).")
    management_subnet_cidr: IPv4Network = Field(
        IPv4Network("10.42.1.0/24"),
        description="Subnet of the management ENI (SSH, APIs, Horizon, tenant tunnels).",
    )
    provider_subnet_cidr: IPv4Network = Field(
        IPv4Network("10.42.2.0/24"),
        description="Subnet of the provider ENI (br-ex, the router gateway, floating IPs).",
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
    allowed_cidrs: list[IPv4Network] = Field(
        min_length=1,
        description="Who may reach SSH, the OpenStack APIs and Horizon. Required; never 0.0.0.0/0.",
    )
    ssh_public_key: str | None = Field(
        None, description="Your OpenSSH public key; default: a generated ED25519 key pair."
    )
    ssh_private_key: SecretStr | None = Field(
        None,
        description="Secret. The private half of `sshPublicKey`, for the remote steps.",
    )
    admin_password: SecretStr | None = Field(
        None,
        min_length=12,
        max_length=128,
        description="Secret. OpenStack admin (and service) password, 12-128 of A-Z a-z 0-9 _ - "
        "(DevStack writes it unquoted into URLs and config files); default: generated.",
    )
    openstack_branch: str = Field(
        "stable/2026.1",
        pattern=r"^(master|stable/20[0-9]{2}\.[12])$",
        description="DevStack branch: `stable/<year>.<1|2>` or `master`.",
    )
    tenant_cidr: IPv4Network = Field(
        IPv4Network("192.168.100.0/24"), description="The demo tenant network; outside the VPC."
    )
    port_forwards: list[PortForward] = Field(
        default_factory=list, description="DNAT rules on the provider Elastic IP."
    )
    floating_ip_count: int = Field(
        1, ge=0, description="Secondary IPs on the provider ENI, each with an Elastic IP."
    )
    # ---- floating-IP ingress, the account's quotas (checked at preview), the smoke test -----
    floating_ip_ingress: list[FloatingIpIngress] | None = Field(
        None,
        description="What the floating IPs accept, and from where; default: SSH from `allowedCidrs`.",
    )
    security_group_rule_quota: int = Field(
        checks.DEFAULT_SG_INBOUND_RULE_QUOTA,
        ge=1,
        le=checks.MAX_SG_INBOUND_RULE_QUOTA,
        description="The account's inbound rules per security group (AWS default 60), once raised.",
    )
    elastic_ip_quota: int = Field(
        checks.DEFAULT_EIP_QUOTA, ge=1, description="The account's Elastic IPs per region (AWS default 5)."
    )
    smoke_test: bool = Field(True, description="Run the `smoke` step at the end of `up`.")

    # ---- derived values ----------------------------------------------------------------

    @property
    def zone(self) -> str:
        return self.availability_zone or f"{self.region}a"

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

    @property
    def management_ip(self) -> IPv4Address:
        return self.management_subnet_cidr[HOST_OFFSET]

    @property
    def provider_ip(self) -> IPv4Address:
        """The provider ENI's primary IP: the router's external gateway IP."""
        return self.provider_subnet_cidr[HOST_OFFSET]

    @property
    def floating_ips(self) -> list[IPv4Address]:
        """The provider ENI's secondary IPs, one per floating IP."""
        return [self.provider_subnet_cidr[HOST_OFFSET + 1 + i] for i in range(self.floating_ip_count)]

    @property
    def vpc_router_ip(self) -> IPv4Address:
        """The VPC router of the provider subnet (network address + 1)."""
        return self.provider_subnet_cidr[1]

    @property
    def eip_count(self) -> int:
        return 2 + self.floating_ip_count

    @property
    def floating_ip_rules(self) -> list[FloatingIpIngress]:
        """The floating-IP ingress in effect: none without floating IPs, else the configured one."""
        if self.floating_ip_count == 0:
            return []
        return list(DEFAULT_FLOATING_IP_INGRESS if self.floating_ip_ingress is None else self.floating_ip_ingress)

    def warnings(self) -> list[str]:
        """Things that work but that the user should know about."""
        out = []
        if not self.has_kvm:
            out.append(
                f"{NAMESPACE}:instanceType: {self.instance_type} has no nested virtualization; "
                "tenant VMs will run on QEMU emulation (slow). Use c8i/m8i/r8i or *.metal for KVM."
            )
        if self.floating_ip_ingress and self.floating_ip_count == 0:
            out.append(
                f"{NAMESPACE}:floatingIpIngress: ignored: floatingIpCount is 0, there is no floating IP to open"
            )
        return out

    # ---- cross-field validation ---------------------------------------------------------

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Settings:
        problems: list[str] = []
        key = _key

        zone = self.zone
        if not re.fullmatch(re.escape(self.region) + r"[a-z]", zone):
            problems.append(f"{key('availabilityZone')}: {zone!r} is not a zone of {self.region}")

        if not 16 <= self.vpc_cidr.prefixlen <= 28:
            problems.append(f"{key('vpcCidr')}: a VPC CIDR must be /16 to /28")
        subnets = {
            "managementSubnetCidr": self.management_subnet_cidr,
            "providerSubnetCidr": self.provider_subnet_cidr,
        }
        for name, net in subnets.items():
            if not net.subnet_of(self.vpc_cidr):
                problems.append(f"{key(name)}: {net} is not inside vpcCidr {self.vpc_cidr}")
            if net.prefixlen > 27:
                problems.append(f"{key(name)}: {net} is too small; use /27 or larger")
        if self.management_subnet_cidr.overlaps(self.provider_subnet_cidr):
            problems.append(
                f"{key('providerSubnetCidr')}: {self.provider_subnet_cidr} overlaps "
                f"managementSubnetCidr {self.management_subnet_cidr}"
            )
        needed = HOST_OFFSET + 1 + self.floating_ip_count
        if needed > self.provider_subnet_cidr.num_addresses - 2:
            problems.append(
                f"{key('floatingIpCount')}: {self.floating_ip_count} floating IPs do not fit in "
                f"providerSubnetCidr {self.provider_subnet_cidr} (hosts from .{HOST_OFFSET} on)"
            )

        if self.tenant_cidr.overlaps(self.vpc_cidr):
            problems.append(f"{key('tenantCidr')}: {self.tenant_cidr} overlaps vpcCidr {self.vpc_cidr}")
        if self.tenant_cidr.prefixlen > 29:
            problems.append(f"{key('tenantCidr')}: {self.tenant_cidr} is too small; use /29 or larger")

        for i, cidr in enumerate(self.allowed_cidrs):
            if cidr.prefixlen == 0:
                problems.append(
                    f"{key('allowedCidrs')}[{i}]: {cidr} opens SSH and the APIs to the world; "
                    "name your own networks"
                )

        if not INSTANCE_TYPE.match(self.instance_type):
            problems.append(f"{key('instanceType')}: {self.instance_type!r} is not an EC2 type name")
        limits: InstanceLimits | None = (info.context or {}).get("instance_limits")
        if limits is not None:
            if limits.max_network_interfaces < 2:
                problems.append(
                    f"{key('instanceType')}: {self.instance_type} takes only "
                    f"{limits.max_network_interfaces} network interface; two are needed"
                )
            if self.floating_ip_count > limits.max_ipv4_per_interface - 1:
                problems.append(
                    f"{key('floatingIpCount')}: {self.instance_type} allows "
                    f"{limits.max_ipv4_per_interface} IPv4 addresses per ENI, so at most "
                    f"{limits.max_ipv4_per_interface - 1} floating IPs"
                )

        if self.admin_password is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]+", self.admin_password.get_secret_value()
        ):
            problems.append(f"{key('adminPassword')}: use only A-Z a-z 0-9 _ - (DevStack does not quote it)")
        if (self.ssh_public_key is None) != (self.ssh_private_key is None):
            problems.append(
                f"{key('sshPrivateKey')}: set both sshPublicKey and (as a secret) sshPrivateKey, "
                "or neither to generate a key pair"
            )
        elif self.ssh_public_key is not None and not re.match(
            r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( .*)?$",
            self.ssh_public_key.strip(),
        ):
            problems.append(f"{key('sshPublicKey')}: not an OpenSSH public key")

        tenant_gateway = self.tenant_cidr[1]
        seen: dict[tuple[str, int], int] = {}
        for i, fwd in enumerate(self.port_forwards):
            at = f"{key('portForwards')}[{i}]"
            if fwd.tenant_ip not in self.tenant_cidr:
                problems.append(f"{at}.tenantIp: {fwd.tenant_ip} is outside tenantCidr {self.tenant_cidr}")
            elif fwd.tenant_ip in (
                self.tenant_cidr.network_address,
                self.tenant_cidr.broadcast_address,
                tenant_gateway,
            ):
                problems.append(
                    f"{at}.tenantIp: {fwd.tenant_ip} is the tenant network's network, broadcast "
                    "or router address"
                )
            if fwd.public_port in RESERVED_PUBLIC_PORTS:
                problems.append(
                    f"{at}.publicPort: {fwd.public_port} is reserved: "
                    f"{RESERVED_PUBLIC_PORTS[fwd.public_port]}"
                )
            slot = (fwd.protocol, fwd.public_port)
            if slot in seen:
                problems.append(
                    f"{at}.publicPort: {fwd.protocol}/{fwd.public_port} is already forwarded by "
                    f"portForwards[{seen[slot]}]"
                )
            seen.setdefault(slot, i)

        problems += self._list_and_quota_checks()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _list_and_quota_checks(self) -> list[str]:
        """Duplicates in every list, the floating-IP ingress rules, AWS quotas (config/checks.py)."""
        key = _key
        problems = checks.duplicates(self.allowed_cidrs, key("allowedCidrs"))
        problems += checks.nested_duplicates(
            self.port_forwards, key("portForwards"), "sourceCidrs", lambda f: f.source_cidrs
        )
        rules = self.floating_ip_ingress or []
        for i, rule in enumerate(rules):
            at = checks.indexed(key("floatingIpIngress"), i)
            if rule.protocol == "icmp" and (rule.port is not None or rule.to_port is not None):
                problems.append(f"{at}.port: icmp takes no port (every ICMP type is opened)")
            elif rule.protocol != "icmp" and rule.port is None:
                problems.append(f"{at}.port: required for {rule.protocol}")
            elif rule.to_port is not None and rule.port is not None and rule.to_port < rule.port:
                problems.append(f"{at}.toPort: {rule.to_port} is below port {rule.port}")
        problems += checks.duplicates(
            rules, key("floatingIpIngress"), identity=lambda r: (r.protocol, r.ports), show=lambda r: r.label()
        )
        problems += checks.nested_duplicates(rules, key("floatingIpIngress"), "sourceCidrs", lambda r: r.source_cidrs)
        problems += checks.eip_quota_problems(
            self.eip_count, self.elastic_ip_quota, key("elasticIpQuota"), key("floatingIpCount")
        )
        if not problems:  # rules are counted on a list free of duplicates
            # Lazy: components.network imports this module (PortForward, FloatingIpIngress).
            from components.network import plan_ingress

            plan = plan_ingress(self.allowed_cidrs, self.port_forwards, self.floating_ip_rules)
            problems += checks.rule_quota_problems(
                {group: len(rules) for group, rules in plan.items()},
                self.security_group_rule_quota,
                key("securityGroupRuleQuota"),
                "portForwards, allowedCidrs, floatingIpIngress",
            )
        return problems


def _key(alias: str) -> str:
    return REGION_KEY if alias == "region" else f"{NAMESPACE}:{alias}"


def _format_error(err: ValidationError) -> list[str]:
    problems: list[str] = []
    for e in err.errors():
        loc = e["loc"]
        if not loc:  # a cross-field problem: the message already names its keys
            problems.extend(str(e["ctx"]["error"]).splitlines() if "ctx" in e else [e["msg"]])
            continue
        path = _key(str(loc[0])) + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:]
        )
        if e["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key (see the configuration reference in README.md)")
        elif e["type"] == "missing":
            problems.append(f"{path}: required")
        elif str(loc[0]) in SECRET_KEYS:
            problems.append(f"{path}: {e['msg']}")
        else:
            problems.append(f"{path}: {e['msg']} (got {e['input']!r})")
    return problems


def raw_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """This project's keys (namespace stripped) plus `aws:region`, JSON values decoded."""
    raw: dict[str, Any] = {}
    for full_key, value in config.items():
        namespace, _, name = full_key.partition(":")
        if full_key == REGION_KEY:
            name = "region"
        elif namespace != NAMESPACE:
            continue
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # left as a string: the model reports the wrong type
        raw[name] = value
    return raw


def load_settings(
    config: Mapping[str, Any],
    lookup_limits: Callable[[str], InstanceLimits] | None = None,
) -> Settings:
    """Validate the stack's config; raise SettingsError listing every problem.

    `config` maps full keys (`openstack-on-aws:vpcCidr`) to their values as Pulumi stores them
    (strings; structured values as JSON). `lookup_limits` asks AWS about the instance type.
    """
    raw = raw_config(config)
    problems: list[str] = []
    context: dict[str, Any] = {}
    instance_type = raw.get("instanceType", Settings.model_fields["instance_type"].default)
    if lookup_limits is not None and isinstance(instance_type, str) and INSTANCE_TYPE.match(instance_type):
        try:
            context["instance_limits"] = lookup_limits(instance_type)
        except Exception as exc:  # noqa: BLE001 - AWS's answer is the message
            problems.append(f"{_key('instanceType')}: AWS does not know {instance_type!r}: {exc}")
    try:
        settings = Settings.model_validate(raw, context=context)
    except ValidationError as err:
        raise SettingsError(problems + _format_error(err)) from None
    if problems:
        raise SettingsError(problems)
    return settings



def stack_config() -> dict[str, Any]:
    """Every config value of the running stack (full keys), as the Pulumi SDK holds them."""
    from pulumi.runtime import config as runtime_config

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
