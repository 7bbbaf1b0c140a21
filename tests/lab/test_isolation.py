"""Labs side by side: each lab's namespaces are its own (net.private_netns_dir), with the lab's IP
settings whatever the machine's (net.netns_sysctls); each lab's container has cgroups of its own;
what its message queue may write where it runs stays in the lab's folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.lab import net
from tests.lab.neutron import group_processes, netns_list

pytestmark = pytest.mark.lab


def test_the_machine_does_not_see_the_labs_namespaces(lab):
    """Neutron's L3 agent deletes, on each full sync, every qrouter- namespace in /run/netns that it
    does not know: another lab's agent must not see this lab's router, nor this one another's. The
    lab's namespaces are its own (not the machine's), the agents' are the host's (in its /run)."""
    ours = netns_list()
    assert lab.host in ours and lab.vm1 in ours
    host = lab.container.netns_list()
    assert lab.router.ns in host and lab.host not in host
    machine = subprocess.run(
        ["nsenter", f"--mount=/proc/{os.getpid()}/fd/{net.MACHINE_MOUNTS}", "ip", "netns", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert lab.router.ns not in machine and lab.host not in machine
    assert not [ns for ns in host if ns.startswith(("qrouter-", "qdhcp-")) and ns in machine]


def settings(keys: list[str], ns: str | None) -> dict[str, str]:
    """The values of sysctl `keys` in namespace `ns` (None: the machine's own)."""
    return dict(zip(keys, net.sh("sysctl", "-n", *keys, ns=ns).stdout.split(), strict=True))


def test_every_lab_namespace_has_the_labs_ip_settings_whatever_the_machines(lab):
    """A new network namespace copies the machine's IPv4 settings (ip_forward, conf.all, conf.default):
    each lab namespace sets its own (net.netns_sysctls). One more is made while each of the
    machine's IPv4 settings the lab sets is flipped, and they are put back at once; a namespace made
    beside it without the lab's settings shows the flip reached it."""
    keys = [k for k in net.netns_sysctls(False) if k.startswith("net.ipv4.")]
    machine = settings(keys, None)
    flipped = {k: "1" if v == "0" else "0" for k, v in machine.items()}  # ip_forward first (as netns sets it)
    bare, probe = f"{lab.tag}-bare", f"{lab.tag}-probe"
    try:
        net.sh("sysctl", "-qw", *(f"{k}={v}" for k, v in flipped.items()))
        try:
            net.sh("ip", "netns", "add", bare)
            lab.netns(probe)
        finally:
            net.sh("sysctl", "-qw", *(f"{k}={v}" for k, v in machine.items()))
        assert settings(keys, None) == machine
        assert settings(keys, bare) == flipped, "a new namespace did not start with the machine's settings"
        for ns in lab.namespaces:
            assert settings(list(lab.sysctls[ns]), ns) == lab.sysctls[ns], ns
        assert lab.sysctls[probe] == lab.sysctls[lab.inet] and lab.sysctls[lab.vpc]["net.ipv4.ip_forward"] == "1"
    finally:
        for ns in (bare, probe):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if probe in lab.namespaces:
            lab.namespaces.remove(probe)


def test_the_labs_container_and_its_units_are_in_cgroups_of_its_own(lab):
    """With no systemd as this machine's init, nspawn would put every lab's container in one shared
    cgroup: two labs' units of the same name would share a cgroup, and `systemctl kill` of one would
    meet the other lab's processes (PID 0 to this container) and fail. Each of the container's
    cgroups is named after the lab, holds only nspawn and the container's processes, and holds its
    init and its units' main processes."""
    c = lab.container
    ours = os.readlink(f"/proc/{c.leader}/ns/pid")
    assert c.cgroups, "no cgroup hierarchy found"
    units = ["ssh.service", "ooa-ovsdb-server.service", "devstack@q-agt.service"]
    mains = {u: c.run("systemctl", "show", "-P", "MainPID", u).stdout.strip() for u in units}
    # where systemd put each unit (an instance name's, devstack@q-agt, is under system-devstack.slice)
    groups = {u: c.run("systemctl", "show", "-P", "ControlGroup", u).stdout.strip().lstrip("/") for u in units}
    assert "0" not in mains.values(), mains
    for cg in c.cgroups:
        assert lab.tag in cg.name and cg.is_dir(), cg
        held = {int(pid): procs.parent for procs in cg.rglob("cgroup.procs") for pid in procs.read_text().split()}
        for pid in held:
            try:
                ns = os.readlink(f"/proc/{pid}/ns/pid")
            except FileNotFoundError:
                continue  # ended since
            assert pid == c.nspawn.pid or ns == ours, f"{pid} ({held[pid]}) is not this container's"
        assert held.get(c.leader) == cg / "payload" / "init.scope"
        for unit, main in mains.items():
            unit_cg = cg / "payload" / groups[unit]
            seen = [in_container(pid) for pid, d in held.items() if d == unit_cg]
            assert main in seen, f"{unit}'s main process {main} is not in {unit_cg}"


def in_container(pid: int) -> str:
    """Process `pid`'s number in its own PID namespace (the last NSpid)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return line.split()[-1]
    return ""


def test_the_message_queue_runs_in_the_labs_folder(lab):
    """Erlang writes a crash dump of RabbitMQ's node (MnesiaCore.*, erl_crash.dump) into its working
    folder: the lab's, so a crash leaves it with the lab's logs, not in the checkout."""
    folders = set()
    for proc, _ in group_processes({lab.neutron.groups[name] for name in ("epmd", "rabbitmq")}):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            folders.add(os.readlink(proc / "cwd"))
    assert folders == {str(lab.neutron.work / "rabbit")}, folders
