"""Section "address plan": the VPC, its two subnets, the floating IPs' count and the tenant network.

On an AWS host the program assigns the addresses itself (`HOST_OFFSET` on in each subnet); an
existing machine states them in its `host` section (config/host.py) instead.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from pydantic import Field

from config.base import Model, key

# Host addresses inside a subnet that this program assigns itself (AWS reserves .0-.3 and the last).
HOST_OFFSET = 10
# The keys that describe the AWS address plan (refused for an existing machine).
AWS_ADDRESS_KEYS = ("vpcCidr", "managementSubnetCidr", "providerSubnetCidr", "floatingIpCount")


class AddressPlan(Model):
    vpc_cidr: IPv4Network = Field(IPv4Network("10.42.0.0/16"), description="VPC CIDR (/16-/28).")
    management_subnet_cidr: IPv4Network = Field(
        IPv4Network("10.42.1.0/24"),
        description="Subnet of the management ENI (SSH, APIs, Horizon, tenant tunnels).",
    )
    provider_subnet_cidr: IPv4Network = Field(
        IPv4Network("10.42.2.0/24"),
        description="Subnet of the provider ENI (br-ex, the router gateway, floating IPs).",
    )
    floating_ip_count: int = Field(1, ge=0, description="Secondary IPs on the provider ENI, each with an Elastic IP.")
    tenant_cidr: IPv4Network = Field(
        IPv4Network("192.168.100.0/24"), description="The demo tenant network; outside the VPC / provider subnet."
    )

    # ---- derived values (AWS host) -------------------------------------------------------

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
    def vpc_resolver_ip(self) -> IPv4Address:
        """The VPC's DNS resolver (base + 2)."""
        return self.vpc_cidr[2]

    def address_problems(self) -> list[str]:
        """The AWS address plan: subnets inside the VPC, disjoint, large enough; tenant outside."""
        problems: list[str] = []
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
        problems += self.tenant_size_problems()
        return problems

    def tenant_size_problems(self) -> list[str]:
        if self.tenant_cidr.prefixlen > 29:
            return [f"{key('tenantCidr')}: {self.tenant_cidr} is too small; use /29 or larger"]
        return []
