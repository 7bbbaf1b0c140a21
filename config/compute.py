"""Section "compute nodes": more EC2 instances that run only Nova's compute service and Neutron's
Open vSwitch agent and join the controller (the host of config/host.py) over the management subnet.

`computeNodes: {count, instanceType, rootVolumeGiB}`; count 0 (the default) leaves the stack as it
was. Node `i` takes the management subnet's IP right after the controller's (`.10` -> `.11`, `.12`,
...) and the host name `compute-<i>`. AWS host only (an existing machine refuses the key).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from pydantic import Field

from config.base import Model, key
from config.host import INSTANCE_TYPE, InstanceLimits, InstanceTypeTraits

# "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" (Service Quotas code
# L-1216C47A), in vCPUs per region: a common starting value; new accounts may start lower. The
# program cannot read the account's real value without an extra permission, so it warns.
DEFAULT_VCPU_QUOTA = 32
VCPU_QUOTA_NAME = "Running On-Demand Standard instances (L-1216C47A)"
MAX_COMPUTE_NODES = 32
HOSTNAME_PREFIX = "compute-"
SECTION = "computeNodes"


class ComputeNodes(InstanceTypeTraits, Model):
    """The `computeNodes` key (nested virtualization, KVM, architecture: the controller's rules)."""

    count: int = Field(0, ge=0, le=MAX_COMPUTE_NODES, description="Compute nodes; 0: the controller only.")
    instance_type: str = Field(
        "m8i.2xlarge",
        description="EC2 type of every node; the controller's rules: c8i/m8i/r8i nested virtualization, "
        "*.metal KVM, any other QEMU emulation (warned).",
    )
    root_volume_gib: int = Field(
        100, ge=40, le=16384, alias="rootVolumeGiB", description="Encrypted gp3 root volume per node, GiB."
    )

    @staticmethod
    def hostname(index: int) -> str:
        """Node `index`'s host name: Nova's compute host and Neutron's agent host."""
        return f"{HOSTNAME_PREFIX}{index}"


class ComputeSettings(Model):
    compute_nodes: ComputeNodes = Field(
        default_factory=lambda: ComputeNodes.model_validate({}),
        description="Compute nodes that join the controller (AWS host only).",
    )

    def compute_node_ips(self, controller_ip: IPv4Address) -> list[IPv4Address]:
        """Node i's management IP: the controller's + 1 + i."""
        return [controller_ip + 1 + i for i in range(self.compute_nodes.count)]

    def compute_problems(
        self,
        management_subnet: IPv4Network,
        controller_ip: IPv4Address,
        controller_architecture: str,
    ) -> list[str]:
        """Room for the nodes' fixed IPs, a real type with the controller's architecture (whether AWS
        knows the type is asked by load_settings; its vCPUs feed `compute_warnings`)."""
        nodes = self.compute_nodes
        at = f"{key(SECTION)}."
        if nodes.count == 0:
            return []
        problems: list[str] = []
        last = controller_ip + nodes.count
        # AWS reserves the subnet's last address (and the network's broadcast).
        if last not in management_subnet or last >= management_subnet.broadcast_address:
            problems.append(
                f"{at}count: {nodes.count} nodes need {controller_ip + 1}..{last}, which do not fit in "
                f"managementSubnetCidr {management_subnet} (AWS reserves its last address)"
            )
        if not INSTANCE_TYPE.match(nodes.instance_type):
            problems.append(f"{at}instanceType: {nodes.instance_type!r} is not an EC2 type name")
        elif nodes.architecture != controller_architecture:
            problems.append(
                f"{at}instanceType: {nodes.instance_type} is {nodes.architecture}, the controller's instanceType "
                f"is {controller_architecture}: one image list serves the whole cloud; use one architecture"
            )
        return problems

    def compute_warnings(
        self, controller_vcpus: int | None, node_limits: InstanceLimits | None
    ) -> list[str]:
        """No KVM on the nodes' type; the vCPU quota the nodes push the stack over (the Elastic IP
        quota, one per node, is a problem of the host section: elasticIpQuota)."""
        nodes = self.compute_nodes
        if nodes.count == 0:
            return []
        at = f"{key(SECTION)}."
        out: list[str] = []
        if not nodes.has_kvm:
            out.append(
                f"{at}instanceType: {nodes.instance_type} has no nested virtualization; servers on the compute "
                "nodes will run on QEMU emulation (slow). Use c8i/m8i/r8i or *.metal for KVM."
            )
        node_vcpus = node_limits.vcpus if node_limits is not None else None
        if controller_vcpus is not None and node_vcpus is not None:
            total = controller_vcpus + nodes.count * node_vcpus
            if total > DEFAULT_VCPU_QUOTA:
                out.append(
                    f"{at}count: the controller and {nodes.count} nodes need {total} vCPUs; the account's "
                    f"'{VCPU_QUOTA_NAME}' quota is often {DEFAULT_VCPU_QUOTA} (check it in Service Quotas "
                    "and raise it first, or the instances fail to launch)."
                )
        return out
