"""The cloud survives its host: the lab's host (the systemd container) reboots with everything
DevStack runs there as enabled units (Open vSwitch, Neutron's agents as devstack@q-agt, -q-l3,
-q-dhcp, Apache, sshd) and the steps' re-apply units, and after the boot nobody runs a step: the fix
comes back by itself. Its disk boots again as a new instance (another provider ENI, another Elastic
IP), and the next `up`'s steps converge on it. What a reboot does not restart in the lab: Neutron's
control plane, its database and message queue (they run beside the host, tests/lab/container.py);
the host's NICs (the lab's veths, the ENIs' stand-ins) keep their state, as the ENIs do."""

from __future__ import annotations

import threading
import time

import pytest

from components.openstack import host_scripts, selected_steps
from onhost import remote
from onhost.chain import parse_emitted
from tests.harness import command_failure
from tests.lab.net import FLOATING_EIP, INTERNET_IP, PROVIDER_EIP, PROVIDER_MAC, Lab
from tests.lab.neutron import HOSTNAME, wait_for
from tests.lab.test_steps import TIMERS, apply_both, ok, ours, works

NEW_MAC, NEW_EIP = "0e:00:00:00:02:99", "203.0.113.40"  # the new instance's provider ENI and Elastic IP

pytestmark = pytest.mark.lab


def paths(lab: Lab, eip: str = PROVIDER_EIP) -> dict:
    """Each path the fix opens, as a check that passes once it works (a short timeout per try);
    `eip` the provider's Elastic IP."""
    inet = f"/{INTERNET_IP}"
    return {
        "tenant -> internet as the provider EIP": lambda: lab.tcp(lab.vm1, INTERNET_IP, 8000, 1) == eip,
        "internet -> floating IP": lambda: lab.tcp(lab.inet, FLOATING_EIP, 80, 1) == f"vm2/tcp/80{inet}",
        "internet -> port forward": lambda: lab.tcp(lab.inet, eip, 522, 1) == f"vm1/tcp/22{inet}",
    }


def agents(lab: Lab) -> list[tuple[str, str]]:
    """Neutron's agents as (type, host): an agent that registered anew (another host name) shows."""
    return sorted((a["agent_type"], a["host"]) for a in lab.neutron.api("GET", "agents")["agents"])


def until_all_work(lab: Lab, checks: dict, since: float, timeout: float = 150) -> dict[str, float]:
    """Poll `checks` until each passed once; the seconds after `since` when each first did."""
    first: dict[str, float] = {}

    def all_work() -> bool:
        for name, check in checks.items():
            if name not in first and check():
                first[name] = time.monotonic() - since
        return len(first) == len(checks)

    try:
        wait_for(f"every path ({', '.join(checks)})", all_work, timeout, every=0.5)
    finally:
        print(", ".join(f"{name}: {t:.1f} s" for name, t in first.items()))
    return first


def test_after_a_reboot_of_the_host_the_fix_comes_back_without_any_step(clean):
    """Both steps applied, every path works; `systemctl reboot` in the host. At boot the agents start
    as DevStack's units, the L3 agent makes the router's namespace anew (Neutron's MAC on a new qg-
    device, no forwards: the VPC drops the tenants' traffic), and the re-apply timers' first run
    after boot, ordered after devstack@q-l3, puts the MAC and the forwards back. Meanwhile the lab
    does what Nova does for its guests at boot (ports plugged again, DHCP). Prints the time from boot
    to each working path."""
    lab = clean
    apply_both(lab)
    works(lab)
    forwards = ours(lab.snapshot())
    before = agents(lab)
    assert {host for _, host in before} == {HOSTNAME, "lab-compute"}, before
    order = lab.ssh("systemctl show -P After openstack-on-aws-gateway-mac-reapply.service").stdout
    assert "devstack@q-l3.service" in order.split(), order  # its first run waits for the L3 agent's start
    # its first run 5 s after boot, then every 10 s: the outage after a boot ends at the first run
    # after the L3 agent has made the router (a later first run would only add to it)
    timer = lab.ssh("systemctl show -P TimersMonotonic openstack-on-aws-gateway-mac-reapply.timer").stdout
    assert "OnBootUSec=5s" in timer and "OnUnitActiveUSec=10s" in timer, timer

    shutdown = lab.container.reboot()
    booted = time.monotonic()
    boot = lab.container.timings["container boot"]
    assert lab.ssh("systemctl is-system-running").stdout.strip() == "running"
    guests = lab.restart_guests()
    print(f"host reboot: shutdown {shutdown:.1f} s, boot {boot:.1f} s; guests back {guests:.1f} s after boot")
    first = until_all_work(lab, paths(lab), booted)
    lab.timings["reboot: shutdown"] = shutdown
    lab.timings["reboot: boot to every path working"] = max(first.values())

    snap = lab.snapshot()
    assert snap["qg_mac"] == PROVIDER_MAC and ours(snap) == forwards
    unit = "openstack-on-aws-gateway-mac-reapply.service"
    logged = lab.ssh(f"journalctl -q -b 0 -o cat -u {unit} --no-pager").stdout  # its runs since the boot
    assert f"{lab.router.qg}: MAC set to {PROVIDER_MAC}" in logged, logged
    listed = lab.ssh(f"systemctl is-active {TIMERS}").stdout.split()
    assert listed == ["active", "active"], listed
    works(lab)  # UDP too
    assert agents(lab) == before  # the same host names: no agent registered anew
    wait_for("every agent alive", lambda: lab.neutron.agents_alive() == len(before), 30)


def test_the_hosts_disk_as_a_new_instance_converges_with_the_next_up(clean):
    """A baked image's re-launch: the host's disk boots as a new instance whose provider ENI has
    another MAC and whose provider Elastic IP is another address, and the stack's config says so
    (`providerMac`, `providerPublicIp`). A new machine re-runs every row (their triggers): each
    starts the moment SSH answers or the row before returned, with the stdin the program builds
    for the new config, while the lab plugs its guests again (Nova's part). external-gateway finds
    its router; gateway-mac waits for the L3 agent the boot started and gives the gateway the new
    ENI's MAC; port-forwards' rules are back; the tenants leave as the new Elastic IP and the
    forwards answer on it; the agents keep their host names."""
    lab = clean
    apply_both(lab)
    works(lab)
    before = agents(lab)
    new = lab.stack_for(lab.settings_for(providerMac=NEW_MAC, providerPublicIp=NEW_EIP))
    rows, scripts = selected_steps(new), host_scripts(new)
    try:
        lab.new_instance(NEW_MAC, NEW_EIP)
        booted = time.monotonic()
        guests = threading.Thread(target=lab.restart_guests)
        guests.start()
        emitted: dict[str, object] = {}
        for row in rows:
            text = remote.texts(row.name, scripts, str(lab.prefix), str(lab.state))[0]
            stdin = remote.stdin(row.name, scripts, lab.row_params(row, emitted, new), str(lab.prefix))
            p = lab.ssh(text, input=stdin, check=False, timeout=300)
            assert p.returncode == 0, command_failure(text, p.returncode, p.stdout + p.stderr)
            if row.emits:
                emitted |= parse_emitted(row, p.stdout)
        steps = time.monotonic() - booted
        guests.join()
        assert emitted["router_id"] == lab.router.router_id  # its router found, not made again
        assert lab.snapshot()["qg_mac"] == NEW_MAC
        print(f"new instance: the chain's rows took {steps:.1f} s after boot")
        first = until_all_work(lab, paths(lab, NEW_EIP), booted)
        lab.timings["new instance: boot to every path working"] = max(first.values())
        assert lab.tcp(lab.vm1, INTERNET_IP, 8000) == NEW_EIP
        assert agents(lab) == before
    finally:
        lab.swap_provider_eni(PROVIDER_MAC, PROVIDER_EIP)  # the lab's ENI again, for the tests after this one
        ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
