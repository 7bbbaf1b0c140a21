"""The VPC side of the article: VPC, internet gateway, two subnets, routes, security groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from config.access import DEFAULT_FLOATING_IP_INGRESS, FloatingIpIngress
from config.forwards import PortForward

# What the management ENI serves to `allowedCidrs`. DevStack puts Horizon and every API behind
# Apache on port 80 (/dashboard, /identity, /compute, /image, /networking, /placement, ...); the
# tls-front step serves all of it, and noVNC, on 443: 80 and 6080 stay closed from outside.
MANAGEMENT_PORTS = {22: "SSH", 443: "Horizon, the OpenStack APIs and noVNC over TLS"}


@dataclass
class NetworkArgs:
    """Inputs of `Network`."""

    vpc_cidr: IPv4Network
    """The VPC's CIDR."""
    availability_zone: str
    """Zone of both subnets (the instance and its ENIs must share one)."""
    management_subnet_cidr: IPv4Network
    """Subnet of the management ENI."""
    provider_subnet_cidr: IPv4Network
    """Subnet of the provider ENI (OpenStack's external network)."""
    allowed_cidrs: list[IPv4Network]
    """Who may reach SSH, the APIs and Horizon, and ping both ENIs."""
    port_forwards: list[PortForward] = field(default_factory=list)
    """Each forward's public port is opened on the provider security group."""
    floating_ips: bool = False
    """There are floating IPs: open `floating_ip_ingress` on the provider ENI."""
    floating_ip_ingress: list[FloatingIpIngress] | None = None
    """What the floating IPs accept; None: SSH from `allowed_cidrs` (the default)."""


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
    def sources_of(fwd: PortForward) -> tuple[IPv4Network, ...]:
        return tuple(sorted(set(fwd.source_cidrs or default_sources)))

    ordered = sorted(forwards, key=lambda f: (f.protocol, sources_of(f), f.public_port))
    ranges: list[ForwardRange] = []
    for fwd in ordered:
        sources = sources_of(fwd)
        last = ranges[-1] if ranges else None
        if last and (last.protocol, last.sources) == (fwd.protocol, sources) and fwd.public_port == last.to_port + 1:
            ranges[-1] = ForwardRange(fwd.protocol, last.from_port, fwd.public_port, sources, (*last.forwards, fwd))
        else:
            ranges.append(ForwardRange(fwd.protocol, fwd.public_port, fwd.public_port, sources, (fwd,)))
    return ranges


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


class Network(pulumi.ComponentResource):
    """VPC with an internet gateway, the management and provider subnets and their security groups."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.vpc_cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        self.internet_gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": f"{name}-igw"}, opts=child
        )
        self.route_table = aws.ec2.RouteTable(
            f"{name}-rt", vpc_id=self.vpc.id, tags={"Name": f"{name}-rt"}, opts=child
        )
        self.default_route = aws.ec2.Route(
            f"{name}-default-route",
            route_table_id=self.route_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=self.internet_gateway.id,
            opts=child,
        )

        def subnet(role: str, cidr: IPv4Network) -> aws.ec2.Subnet:
            sub = aws.ec2.Subnet(
                f"{name}-{role}",
                vpc_id=self.vpc.id,
                cidr_block=str(cidr),
                availability_zone=args.availability_zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-{role}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{role}-rta", subnet_id=sub.id, route_table_id=self.route_table.id, opts=child
            )
            return sub

        self.management_subnet = subnet("management", args.management_subnet_cidr)
        self.provider_subnet = subnet("provider", args.provider_subnet_cidr)

        self.management_sg = self._security_group(name, "management", "SSH, APIs and Horizon")
        self.provider_sg = self._security_group(name, "provider", "port forwards and floating IPs")
        floating: Sequence[FloatingIpIngress] = []
        if args.floating_ips:
            floating = DEFAULT_FLOATING_IP_INGRESS if args.floating_ip_ingress is None else args.floating_ip_ingress
        groups = {"management": self.management_sg, "provider": self.provider_sg}
        for group, rules in plan_ingress(args.allowed_cidrs, args.port_forwards, floating).items():
            for rule in rules:
                self._ingress(groups[group], f"{name}-{rule.suffix}", rule)

        self.register_outputs(
            {
                "vpc_id": self.vpc.id,
                "management_subnet_id": self.management_subnet.id,
                "provider_subnet_id": self.provider_subnet.id,
                "management_sg_id": self.management_sg.id,
                "provider_sg_id": self.provider_sg.id,
            }
        )

    def _security_group(self, name: str, role: str, what: str) -> aws.ec2.SecurityGroup:
        sg = aws.ec2.SecurityGroup(
            f"{name}-{role}-sg",
            vpc_id=self.vpc.id,
            description=f"openstack-on-aws {role} ENI: {what}",
            tags={"Name": f"{name}-{role}-sg"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-{role}-egress",
            security_group_id=sg.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="all outbound traffic",
            opts=pulumi.ResourceOptions(parent=self),
        )
        return sg

    def _ingress(self, sg: aws.ec2.SecurityGroup, rule_name: str, rule: IngressRule) -> None:
        aws.vpc.SecurityGroupIngressRule(
            rule_name,
            security_group_id=sg.id,
            ip_protocol=rule.protocol,
            from_port=rule.from_port,
            to_port=rule.to_port,
            cidr_ipv4=str(rule.cidr),
            description=rule.description,
            opts=pulumi.ResourceOptions(parent=self),
        )
