"""The stack's settings: one validated, frozen model of `Pulumi.<stack>.yaml`, composed of sections.

Each section lives in its own module with its validators: the address plan (config/addresses.py),
the host (config/host.py: an EC2 host, or `host: {kind: existing, ...}`), OpenStack
(config/openstack.py: DevStack, or `openstack: {install: existing, ...}`), the port forwards
(config/forwards.py) and access (config/access.py). Every key lives in the `openstack-on-aws:`
namespace except the region, the AWS provider's own `aws:region`. `load_settings()` reads them
all, validates them in one pass and raises `SettingsError`, whose message lists every problem with
the config key to fix, before the program registers a single resource.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address
from typing import Any

from pydantic import PrivateAttr, ValidationError, ValidationInfo, model_validator

from config import ingress
from config.access import AWS_ACCESS_KEYS, DEFAULT_FLOATING_IP_INGRESS, AccessSettings, FloatingIpIngress
from config.addresses import AWS_ADDRESS_KEYS, HOST_OFFSET, AddressPlan
from config.base import NAMESPACE, REGION_KEY, SECRET_KEYS, Port, SettingsError, key
from config.checks import is_dns_name
from config.compute import SECTION as COMPUTE_SECTION
from config.compute import ComputeNodes, ComputeSettings
from config.forwards import RESERVED_PUBLIC_PORTS, ForwardSettings, PortForward
from config.host import (
    AWS_HOST_KEYS,
    DEFAULT_EIP_QUOTA,
    INSTANCE_TYPE,
    NESTED_VIRT_TYPES,
    ExistingHost,
    HostSettings,
    InstanceLimits,
    fields_set_aliases,
)
from config.lifecycle import LIFECYCLE_KEYS, LifecycleSettings
from config.openstack import OpenStackSection, OpenStackSettings

# The keys only an AWS host takes: refused, by name, for an existing machine.
AWS_ONLY_KEYS = (*AWS_HOST_KEYS, *AWS_ADDRESS_KEYS, *AWS_ACCESS_KEYS, COMPUTE_SECTION, *LIFECYCLE_KEYS)

__all__ = [
    "AWS_ONLY_KEYS",
    "DEFAULT_EIP_QUOTA",
    "DEFAULT_FLOATING_IP_INGRESS",
    "HOST_OFFSET",
    "INSTANCE_TYPE",
    "NESTED_VIRT_TYPES",
    "NAMESPACE",
    "Port",
    "REGION_KEY",
    "RESERVED_PUBLIC_PORTS",
    "SECRET_KEYS",
    "ExistingHost",
    "FloatingIpIngress",
    "InstanceLimits",
    "OpenStackSection",
    "PortForward",
    "Settings",
    "SettingsError",
    "load_settings",
    "raw_config",
    "stack_config",
]


class Settings(
    AccessSettings, AddressPlan, HostSettings, OpenStackSettings, ForwardSettings, ComputeSettings, LifecycleSettings
):
    """The stack's settings. Field aliases are the config keys (camelCase)."""

    _aws_answers: dict[str, Any] = PrivateAttr(default_factory=dict)
    """What AWS said about the instance types at load time (warnings read the vCPUs)."""

    @property
    def mode(self) -> str:
        """`aws` or `existing` (the host), then `devstack` or `existing` (OpenStack): e.g. `existing/devstack`."""
        return f"{'existing' if self.existing_host else 'aws'}/{self.openstack.install}"

    @property
    def eip_count(self) -> int:
        """Management, provider, one per floating IP and one per compute node."""
        return 2 + self.floating_ip_count + self.compute_nodes.count

    @property
    def compute_ips(self) -> list[IPv4Address]:
        """The compute nodes' management IPs (after the controller's)."""
        return self.compute_node_ips(self.management_ip)

    @property
    def floating_ip_rules(self) -> list[FloatingIpIngress]:
        """The floating-IP ingress in effect: none without floating IPs, else the configured one."""
        return self.floating_rules_for(self.floating_ip_count)

    def warnings(self, context: Mapping[str, Any] | None = None) -> list[str]:
        """Things that work but that the user should know about (`context`: what AWS said, see load_settings)."""
        if self.existing_host:
            return self.host_warnings()
        context = context or self._aws_answers
        controller: InstanceLimits | None = context.get("instance_limits")
        return (
            self.host_warnings()
            + self.access_warnings(self.floating_ip_count)
            + self.compute_warnings(controller.vcpus if controller else None, context.get("compute_limits"))
            + self.lifecycle_warnings(self.compute_nodes.count)
        )

    def tls_address_problems(self) -> list[str]:
        """DevStack on an existing machine: the address users reach is an IPv4 or a DNS name the TLS
        front's certificate can name (components.openstack `tls_names`)."""
        if self.host is None or self.openstack.existing:
            return []
        address = self.host.reachable_address
        try:
            IPv4Address(address)
        except ValueError:
            if not is_dns_name(address):
                which = "publicAddress" if self.host.public_address else "address"
                return [
                    f"{key('host')}.{which}: {address!r} is neither an IPv4 nor a DNS name (dotted) that "
                    "DevStack's TLS certificate can name"
                ]
        return []

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Settings:
        """Every section's validators, for the mode the `host` and `openstack` keys select."""
        given = fields_set_aliases(self)
        limits: InstanceLimits | None = (info.context or {}).get("instance_limits")
        aws = not self.existing_host
        problems: list[str] = []
        if aws:
            problems += self.aws_host_problems(self.floating_ip_count, limits, self.eip_count)
            problems += self.address_problems()
            problems += self.compute_problems(self.management_subnet_cidr, self.management_ip, self.architecture)
            problems += self.lifecycle_problems(self.smoke_test, self.compute_nodes.count)
        else:
            problems += self.existing_host_problems(given, AWS_ONLY_KEYS, self.tenant_cidr)
            problems += self.tenant_size_problems()
            problems += self.tls_address_problems()
        access = self.access_problems(aws)
        forwards = self.forward_problems(self.tenant_cidr, aws)
        problems += access + self.openstack_problems(given, self.existing_host) + forwards
        if aws and not access and not forwards:  # rules are counted on lists free of duplicates
            problems += ingress.rule_quota_problems(self, self.port_forwards, self.floating_ip_count)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _format_error(err: ValidationError) -> list[str]:
    problems: list[str] = []
    for e in err.errors():
        loc = e["loc"]
        if not loc:  # a cross-field problem: the message already names its keys
            problems.extend(str(e["ctx"]["error"]).splitlines() if "ctx" in e else [e["msg"]])
            continue
        path = key(str(loc[0])) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
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
    (strings; structured values as JSON). `lookup_limits` asks AWS about the instance type; it is
    called only for an AWS host (an existing machine makes no AWS call).
    """
    raw = raw_config(config)
    problems: list[str] = []
    context: dict[str, Any] = {}
    instance_type = raw.get("instanceType", Settings.model_fields["instance_type"].default)
    aws = "host" not in raw
    if aws and lookup_limits is not None and isinstance(instance_type, str) and INSTANCE_TYPE.match(instance_type):
        try:
            context["instance_limits"] = lookup_limits(instance_type)
        except Exception as exc:  # noqa: BLE001 - AWS's answer is the message
            problems.append(f"{key('instanceType')}: AWS does not know {instance_type!r}: {exc}")
    nodes = raw.get(COMPUTE_SECTION)
    if aws and lookup_limits is not None and isinstance(nodes, dict) and nodes.get("count"):
        node_type = nodes.get("instanceType", ComputeNodes.model_fields["instance_type"].default)
        if isinstance(node_type, str) and INSTANCE_TYPE.match(node_type):
            try:
                context["compute_limits"] = lookup_limits(node_type)
            except Exception as exc:  # noqa: BLE001 - AWS's answer is the message
                problems.append(f"{key(COMPUTE_SECTION)}.instanceType: AWS does not know {node_type!r}: {exc}")
    try:
        settings = Settings.model_validate(raw, context=context)
    except ValidationError as err:
        raise SettingsError(problems + _format_error(err)) from None
    if problems:
        raise SettingsError(problems)
    settings._aws_answers = context
    return settings


def stack_config() -> dict[str, Any]:
    """Every config value of the running stack (full keys), as the Pulumi SDK holds them."""
    from pulumi.runtime import config as runtime_config

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}

