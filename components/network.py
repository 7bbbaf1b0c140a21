"""The VPC side of the article: VPC, internet gateway, two subnets, routes, security groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from config.settings import PortForward

# What the management ENI serves to `allowedCidrs`. DevStack puts Horizon and every API behind
# Apache on port 80 (/dashboard, /identity, /compute, /image, /networking, /placement, ...).
MANAGEMENT_PORTS = {22: "SSH", 80: "Horizon and the OpenStack APIs", 6080: "noVNC console proxy"}


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
    """Open SSH on the provider ENI too (tenant VMs behind floating IPs) to `allowed_cidrs`."""


def _slug(cidr: IPv4Network) -> str:
    return str(cidr).replace(".", "-").replace("/", "-")


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
        for cidr in args.allowed_cidrs:
            for port, what in MANAGEMENT_PORTS.items():
                self._ingress(self.management_sg, f"{name}-management-{port}-{_slug(cidr)}",
                              "tcp", port, cidr, what)
            for role, sg in (("management", self.management_sg), ("provider", self.provider_sg)):
                self._ingress(sg, f"{name}-{role}-icmp-{_slug(cidr)}", "icmp", -1, cidr, "ping")
            if args.floating_ips:
                self._ingress(self.provider_sg, f"{name}-provider-22-{_slug(cidr)}", "tcp", 22,
                              cidr, "SSH to tenant VMs behind floating IPs")
        for fwd in args.port_forwards:
            for cidr in fwd.source_cidrs or args.allowed_cidrs:
                self._ingress(
                    self.provider_sg,
                    f"{name}-fwd-{fwd.protocol}-{fwd.public_port}-{_slug(cidr)}",
                    fwd.protocol,
                    fwd.public_port,
                    cidr,
                    f"forward to {fwd.tenant_ip}:{fwd.tenant_port}",
                )

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

    def _ingress(self, sg: aws.ec2.SecurityGroup, rule_name: str, protocol: str, port: int,
                 cidr: IPv4Network, what: str) -> None:
        aws.vpc.SecurityGroupIngressRule(
            rule_name,
            security_group_id=sg.id,
            ip_protocol=protocol,
            from_port=port,
            to_port=port,
            cidr_ipv4=str(cidr),
            description=what,
            opts=pulumi.ResourceOptions(parent=self),
        )
