"""The VPC side of the article: VPC, internet gateway, two subnets, routes, security groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from config.access import FloatingIpIngress
from config.forwards import PortForward
from config.ingress import IngressRule, plan_ingress

if TYPE_CHECKING:
    from config.settings import Settings


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
    floating_ip_ingress: list[FloatingIpIngress] = field(default_factory=list)
    """What the floating IPs accept, opened on the provider ENI (none without floating IPs)."""


def network_args_from_settings(settings: Settings) -> NetworkArgs:
    """NetworkArgs from the settings' address plan and access section (AWS host)."""
    return NetworkArgs(
        vpc_cidr=settings.vpc_cidr,
        availability_zone=settings.zone,
        management_subnet_cidr=settings.management_subnet_cidr,
        provider_subnet_cidr=settings.provider_subnet_cidr,
        allowed_cidrs=settings.allowed_cidrs or [],
        port_forwards=settings.port_forwards,
        floating_ip_ingress=settings.floating_ip_rules,
    )


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
        groups = {"management": self.management_sg, "provider": self.provider_sg}
        for group, rules in plan_ingress(args.allowed_cidrs, args.port_forwards, args.floating_ip_ingress).items():
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
