"""The inbound security-group rules the settings plan (AWS host): one place that decides them.

`plan_ingress` lists every rule of the management and the provider security group as `Network`
(components/network.py) registers them; the settings count the same list against the account's
quota at preview (`rule_quota_problems`), before any resource exists. Pure: no Pulumi, no AWS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network

from config import checks
from config.access import AccessSettings, FloatingIpIngress
from config.base import key
from config.forwards import PortForward

# What the management ENI serves to `allowedCidrs`. DevStack puts Horizon and every API behind
# Apache on port 80 (/dashboard, /identity, /compute, /image, /networking, /placement, ...); the
# tls-front step serves all of it, and noVNC, on 443: 80 and 6080 stay closed from outside.
MANAGEMENT_PORTS = {22: "SSH", 443: "Horizon, the OpenStack APIs and noVNC over TLS"}


def _slug(cidr: IPv4Network) -> str:
    return str(cidr).replace(".", "-").replace("/", "-")


@dataclass(frozen=True)
class IngressRule:
    """One inbound security-group rule: one AWS rule, one `SecurityGroupIngressRule`."""

    suffix: str
    """Resource name after `<name>-`; unique per stack, stable for an unchanged rule."""
    protocol: str
    from_port: int
    to_port: int
    cidr: IPv4Network
    description: str


@dataclass(frozen=True)
class ForwardRange:
    """Forwards whose public ports are contiguous and share protocol and sources: one rule per source."""

    protocol: str
    from_port: int
    to_port: int
    sources: tuple[IPv4Network, ...]
    forwards: tuple[PortForward, ...]

    def description(self) -> str:
        if len(self.forwards) == 1:
            fwd = self.forwards[0]
            return f"forward to {fwd.tenant_ip}:{fwd.tenant_port}"
        return f"forward to {len(self.forwards)} tenant ports: {self.protocol}/{self.from_port}-{self.to_port}"


def forward_ranges(forwards: Sequence[PortForward], default_sources: Sequence[IPv4Network]) -> list[ForwardRange]:
    """Merge forwards into ranges of contiguous public ports with the same protocol and sources.

    Sources are compared as sets (order does not matter); a forward without `source_cidrs` has
    `default_sources`. Ranges come out sorted by protocol, sources, then port. Public ports are
    unique per protocol (the settings refuse duplicates), so ranges never overlap.
    """
    # Each forward's sources once, the default's one tuple shared: a thousand forwards sort and
    # merge in a few milliseconds.
    default = tuple(sorted(set(default_sources)))
    keyed = sorted(
        ((f.protocol, tuple(sorted(set(f.source_cidrs))) if f.source_cidrs else default, f.public_port, f)
         for f in forwards),
        key=lambda k: k[:3],
    )
    runs: list[tuple[str, tuple[IPv4Network, ...], list[PortForward]]] = []
    for protocol, sources, port, fwd in keyed:
        last = runs[-1] if runs else None
        if last and last[:2] == (protocol, sources) and port == last[2][-1].public_port + 1:
            last[2].append(fwd)
        else:
            runs.append((protocol, sources, [fwd]))
    return [ForwardRange(p, fwds[0].public_port, fwds[-1].public_port, s, tuple(fwds)) for p, s, fwds in runs]


def _ports(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def plan_ingress(
    allowed_cidrs: Sequence[IPv4Network],
    port_forwards: Sequence[PortForward],
    floating_ip_ingress: Sequence[FloatingIpIngress],
) -> dict[str, list[IngressRule]]:
    """Every inbound rule of each security group (`management`, `provider`), as `Network` registers them.

    The settings count these against the account's quota at preview, so this is the one place that
    decides the rules. A rule identical (protocol, ports, CIDR) to one already planned for the same
    group is left out: AWS refuses a duplicate rule, and the first one already allows the traffic.
    """
    plan: dict[str, list[IngressRule]] = {"management": [], "provider": []}
    seen: set[tuple[str, str, int, int, IPv4Network]] = set()

    def add(group: str, suffix: str, protocol: str, low: int, high: int, cidr: IPv4Network, what: str) -> None:
        if (group, protocol, low, high, cidr) in seen:
            return
        seen.add((group, protocol, low, high, cidr))
        plan[group].append(IngressRule(suffix, protocol, low, high, cidr, what))

    for cidr in allowed_cidrs:
        for port, what in MANAGEMENT_PORTS.items():
            add("management", f"management-{port}-{_slug(cidr)}", "tcp", port, port, cidr, what)
        for group in ("management", "provider"):
            add(group, f"{group}-icmp-{_slug(cidr)}", "icmp", -1, -1, cidr, "ping")
    for rule in floating_ip_ingress:
        low, high = rule.ports
        for cidr in rule.source_cidrs or allowed_cidrs:
            if rule.protocol == "tcp" and low == high:
                suffix = f"provider-{low}-{_slug(cidr)}"  # the name the SSH rule always had
            elif rule.protocol == "icmp":
                suffix = f"provider-floating-icmp-{_slug(cidr)}"
            else:
                suffix = f"provider-floating-{rule.protocol}-{_ports(low, high)}-{_slug(cidr)}"
            add("provider", suffix, rule.protocol, low, high, cidr, f"floating IP ingress: {rule.label()}")
    for rng in forward_ranges(port_forwards, allowed_cidrs):
        for cidr in rng.sources:
            add("provider", f"fwd-{rng.protocol}-{_ports(rng.from_port, rng.to_port)}-{_slug(cidr)}",
                rng.protocol, rng.from_port, rng.to_port, cidr, rng.description())
    return plan


def rule_quota_problems(
    access: AccessSettings, port_forwards: Sequence[PortForward], floating_ip_count: int
) -> list[str]:
    """The inbound rules planned per security group fit `securityGroupRuleQuota` (call it on lists
    free of duplicates: rules are counted as AWS would hold them)."""
    plan = plan_ingress(access.allowed_cidrs or [], port_forwards, access.floating_rules_for(floating_ip_count))
    return checks.rule_quota_problems(
        {group: len(rules) for group, rules in plan.items()},
        access.security_group_rule_quota,
        key("securityGroupRuleQuota"),
        "portForwards, allowedCidrs, floatingIpIngress",
    )
