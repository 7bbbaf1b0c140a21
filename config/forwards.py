"""Section "forwards": the port forwards (DNAT) on the router gateway's registered IP."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import Field

from config import checks
from config.base import Model, Port, key

# The Neutron metadata proxy listens on this port inside every qrouter namespace.
RESERVED_PUBLIC_PORTS = {9697: "the Neutron metadata proxy listens on it in the router namespace"}


class PortForward(Model):
    """One inbound port forward: provider public IP:public_port -> tenant_ip:tenant_port."""

    protocol: Literal["tcp", "udp"] = Field("tcp", description="`tcp` or `udp`.")
    public_port: Port = Field(description="Port on the provider Elastic IP.")
    tenant_ip: IPv4Address = Field(description="Fixed IP of the tenant VM, inside `tenantCidr`.")
    tenant_port: Port = Field(description="Port on the tenant VM.")
    source_cidrs: list[IPv4Network] | None = Field(
        None,
        description="Who may use this forward (AWS security group); defaults to `allowedCidrs`. May be 0.0.0.0/0.",
    )

    @property
    def spec(self) -> str:
        """The port-forwards step's `proto:publicPort:tenantIp:tenantPort`."""
        return f"{self.protocol}:{self.public_port}:{self.tenant_ip}:{self.tenant_port}"


class ForwardSettings(Model):
    port_forwards: list[PortForward] = Field(default_factory=list, description="DNAT rules on the provider public IP.")

    def forward_problems(self, tenant_cidr: IPv4Network, aws: bool) -> list[str]:
        """Each forward targets a tenant address; (protocol, port) unique; reserved ports refused."""
        problems: list[str] = []
        tenant_gateway = tenant_cidr[1]
        seen: dict[tuple[str, int], int] = {}
        for i, fwd in enumerate(self.port_forwards):
            at = f"{key('portForwards')}[{i}]"
            if fwd.tenant_ip not in tenant_cidr:
                problems.append(f"{at}.tenantIp: {fwd.tenant_ip} is outside tenantCidr {tenant_cidr}")
            elif fwd.tenant_ip in (tenant_cidr.network_address, tenant_cidr.broadcast_address, tenant_gateway):
                problems.append(
                    f"{at}.tenantIp: {fwd.tenant_ip} is the tenant network's network, broadcast or router address"
                )
            if fwd.public_port in RESERVED_PUBLIC_PORTS:
                problems.append(
                    f"{at}.publicPort: {fwd.public_port} is reserved: {RESERVED_PUBLIC_PORTS[fwd.public_port]}"
                )
            slot = (fwd.protocol, fwd.public_port)
            if slot in seen:
                problems.append(
                    f"{at}.publicPort: {fwd.protocol}/{fwd.public_port} is already forwarded by "
                    f"portForwards[{seen[slot]}]"
                )
            seen.setdefault(slot, i)
            if not aws and fwd.source_cidrs is not None:
                problems.append(
                    f"{at}.sourceCidrs: AWS-only (an AWS security group enforces it); on an existing machine "
                    "filter with its own firewall"
                )
        problems += checks.nested_duplicates(
            self.port_forwards, key("portForwards"), "sourceCidrs", lambda f: f.source_cidrs
        )
        return problems
