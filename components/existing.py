"""A machine this program did not create: any Linux host reachable over SSH with a second NIC for
the provider network, on AWS or another cloud. It registers no cloud resource and makes no cloud
call: it only turns its `host` settings into the host contract that `OpenStack` consumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.contract import existing_contract
from config.host import ExistingHost


@dataclass
class ExistingMachineArgs:
    """Inputs of `ExistingMachine`."""

    host: ExistingHost
    """The validated `host` section (kind: existing)."""
    private_key: pulumi.Input[str]
    """OpenSSH private key the steps log in with (secret)."""


class ExistingMachine(pulumi.ComponentResource):
    """An existing machine as a host contract (no child resources)."""

    def __init__(self, name: str, args: ExistingMachineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:host:ExistingMachine", name, None, opts)
        self.contract = existing_contract(args.host, pulumi.Output.secret(args.private_key))
        self.register_outputs({"address": args.host.address, "management_ip": str(args.host.management_ip)})
