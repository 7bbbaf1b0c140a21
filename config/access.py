"""Section "access": who may reach the host through the AWS security groups (AWS host only):
`allowedCidrs`, what the floating IPs accept (`floatingIpIngress`) and the account's inbound-rule
quota per security group (`securityGroupRuleQuota`), checked against the rules the program plans
(config/ingress.py).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Annotated, Literal

from pydantic import Field

from config import checks
from config.base import Model, Port, key

# The keys of this section that only an AWS host takes (refused, by name, for an existing machine).
AWS_ACCESS_KEYS = ("allowedCidrs", "floatingIpIngress", "securityGroupRuleQuota")


class FloatingIpIngress(Model):
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


class AccessSettings(Model):
    allowed_cidrs: Annotated[list[IPv4Network], Field(min_length=1)] | None = Field(
        None,
        description="Who may reach SSH, the OpenStack APIs and Horizon. Required on AWS; never 0.0.0.0/0.",
    )
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

    def floating_rules_for(self, floating_ip_count: int) -> list[FloatingIpIngress]:
        """The floating-IP ingress in effect: none without floating IPs, else the configured one."""
        if floating_ip_count == 0:
            return []
        return list(DEFAULT_FLOATING_IP_INGRESS if self.floating_ip_ingress is None else self.floating_ip_ingress)

    def access_warnings(self, floating_ip_count: int) -> list[str]:
        if self.floating_ip_ingress and floating_ip_count == 0:
            return [f"{key('floatingIpIngress')}: ignored: floatingIpCount is 0, there is no floating IP to open"]
        return []

    def access_problems(self, aws: bool) -> list[str]:
        """allowedCidrs: required for an AWS host, never the whole world, no duplicates; the
        floating-IP ingress rules: ports that fit their protocol, no duplicates."""
        problems: list[str] = []
        if self.allowed_cidrs is None:
            problems += [f"{key('allowedCidrs')}: required"] if aws else []
        else:
            problems += [
                f"{key('allowedCidrs')}[{i}]: {cidr} opens SSH and the APIs to the world; name your own networks"
                for i, cidr in enumerate(self.allowed_cidrs)
                if cidr.prefixlen == 0
            ]
            problems += checks.duplicates(self.allowed_cidrs, key("allowedCidrs"))
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
        return problems
