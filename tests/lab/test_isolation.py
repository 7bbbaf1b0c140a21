"""Labs side by side: each lab's namespaces are its own (net.private_netns_dir)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.lab import net
from tests.lab.neutron import netns_list

pytestmark = pytest.mark.lab


def test_the_machine_does_not_see_the_labs_namespaces(lab):
    """Neutron's L3 agent deletes, on each full sync, every qrouter- namespace in /run/netns that it
    does not know: another lab's agent must not see this lab's router, nor this one another's."""
    ours = netns_list()
    assert lab.router.ns in ours and lab.host in ours
    machine = subprocess.run(
        ["nsenter", f"--mount=/proc/{os.getpid()}/fd/{net.MACHINE_MOUNTS}", "ip", "netns", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert lab.router.ns not in machine and lab.host not in machine
    assert not [ns for ns in ours if ns.startswith(("qrouter-", "qdhcp-")) and ns in machine]
