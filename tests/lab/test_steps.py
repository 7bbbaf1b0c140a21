"""The steps, run over SSH exactly as Pulumi sends them, against real Neutron in the emulated VPC.

external-gateway has already run (the session's lab is built with it); these tests check what it
made, then gateway-mac and port-forwards on the real L3 agent's router, and what the agents do to
them (restarts, a router that goes down and up)."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid

import pytest

from tests.harness import command_failure
from tests.lab.net import (
    BULK,
    CLOUD,
    COMPUTE_FIP,
    FLOATING_EIP,
    FLOATING_IP,
    INTERNET_IP,
    LATER_EIP,
    LATER_IP,
    PEER_IP,
    PROVIDER_CIDR,
    PROVIDER_EIP,
    PROVIDER_GW,
    PROVIDER_IP,
    PROVIDER_MAC,
    PROVIDER_MTU,
    TENANT_CIDR,
    VM1_IP,
    VM2_IP,
    Lab,
    sh,
)
from tests.lab.neutron import wait_for

pytestmark = pytest.mark.lab

FORWARDS = f"tcp:522:{VM1_IP}:22,tcp:8080:{VM2_IP}:80,udp:5353:{VM1_IP}:53"


def ok(p) -> dict:
    assert p.returncode == 0, f"step failed ({p.returncode}): {p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def apply_both(lab: Lab, forwards: str = FORWARDS) -> tuple[dict, dict]:
    gm = ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
    pf = ok(lab.step("port-forwards", "apply", lab.port_forwards_params(forwards)))
    return gm, pf


def nat(snapshot: dict) -> list[str]:
    return snapshot["iptables"]["nat"]


def test_before_the_fix_nothing_passes_the_vpc_and_after_it_everything_does(clean):
    """Real Neutron's router as the agents build it is cut off by the VPC; the project's steps fix it."""
    lab = clean
    before = sum(lab.registered_drops().values())
    assert lab.snapshot()["qg_mac"] != PROVIDER_MAC  # Neutron's own fa:16:3e:… MAC
    assert not lab.ping(lab.vm1, INTERNET_IP)
    assert lab.tcp(lab.vm1, INTERNET_IP, 8000, timeout=1) == ""
    assert lab.tcp(lab.inet, FLOATING_EIP, 80, timeout=1) == ""
    assert sum(lab.registered_drops().values()) > before, "the VPC did not drop the unregistered (MAC, IP) frames"
    apply_both(lab)
    drops = lab.registered_drops()
    assert lab.tcp(lab.vm1, INTERNET_IP, 8000) == PROVIDER_EIP
    assert lab.tcp(lab.inet, FLOATING_EIP, 80) == f"vm2/tcp/80/{INTERNET_IP}"
    assert lab.tcp(lab.inet, PROVIDER_EIP, 522) == f"vm1/tcp/22/{INTERNET_IP}"
    assert lab.registered_drops() == drops


def test_external_gateway_made_the_neutron_objects_through_the_api(lab):
    api = lab.neutron
    public = api.find("networks", name="public")[0]
    assert public["router:external"] is True
    assert (public["provider:network_type"], public["provider:physical_network"]) == ("flat", "public")
    sub = api.find("subnets", name="public-subnet")[0]
    assert (sub["cidr"], sub["gateway_ip"], sub["enable_dhcp"]) == (PROVIDER_CIDR, PROVIDER_GW, False)
    assert sub["allocation_pools"] == [{"start": PROVIDER_IP, "end": COMPUTE_FIP}]  # the ENI's IPs only
    router = api.api("GET", f"routers/{lab.router.router_id}")["router"]
    assert router["name"] == "router1"
    assert [ip["ip_address"] for ip in router["external_gateway_info"]["external_fixed_ips"]] == [PROVIDER_IP]
    assert api.find("ports", device_owner="network:router_gateway")[0]["id"] == lab.router.gw_port_id
    assert api.find("subnets", name="private-subnet")[0]["cidr"] == TENANT_CIDR
    # the agents built it: the router namespace has the gateway IP on the step's qg- device
    assert f"{PROVIDER_IP}/24" in sh("ip", "-4", "-o", "addr", "show", lab.router.qg, ns=lab.rns).stdout


def test_external_gateway_apply_twice_equals_once(lab):
    counts = {k: len(lab.neutron.api("GET", k)[k]) for k in ("networks", "subnets", "routers", "ports")}
    created = (lab.state / "external-gateway" / "created").read_text()
    out = ok(lab.step("external-gateway", "apply", lab.external_gateway_params()))
    assert out == {"router_id": lab.router.router_id, "gateway_port_id": lab.router.gw_port_id}
    assert {k: len(lab.neutron.api("GET", k)[k]) for k in counts} == counts
    assert (lab.state / "external-gateway" / "created").read_text() == created


def test_external_gateway_with_an_unknown_cloud_fails_clearly_and_changes_nothing(lab):
    counts = {k: len(lab.neutron.api("GET", k)[k]) for k in ("networks", "subnets", "routers")}
    p = lab.step("external-gateway", "apply", lab.external_gateway_params(CLOUD="nope"))
    assert p.returncode != 0 and "cloud nope of" in p.stderr and p.stdout == "", p.stderr
    p = lab.step("external-gateway", "apply", lab.external_gateway_params(CLOUDS_YAML="/nonexistent/clouds.yaml"))
    assert p.returncode != 0 and "no /nonexistent/clouds.yaml" in p.stderr, p.stderr
    assert {k: len(lab.neutron.api("GET", k)[k]) for k in counts} == counts
    saved = (lab.state / "external-gateway" / "params").read_text()
    assert f"CLOUD={CLOUD}\n" in saved  # the state of the good apply is untouched


def test_gateway_mac_gives_the_tenant_the_internet_through_the_elastic_ip(clean):
    lab = clean
    dpid = lab.snapshot()["br_ex_dpid"]
    out = ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
    assert out["device"] == lab.router.qg and out["namespace"] == lab.router.ns
    assert out["mac"] == PROVIDER_MAC == lab.snapshot()["qg_mac"]
    first = int(out["bridge_mac"][:2], 16)
    assert first & 2 and not first & 1, "br-ex's MAC must be locally administered unicast"
    br_ex = sh("cat", "/sys/class/net/br-ex/address", ns=lab.host).stdout.strip()
    assert br_ex == out["bridge_mac"] != PROVIDER_MAC  # Open vSwitch took the pinned MAC
    nic = sh("cat", "/sys/class/net/eth1/address", ns=lab.host).stdout.strip()
    assert nic == PROVIDER_MAC  # the provider NIC keeps its own MAC (ENA cannot change it)
    assert lab.snapshot()["br_ex_dpid"] == dpid, "br-ex's datapath ID changed: the OVS agent loses br-ex"
    assert out["gateway_reachable"] is True
    drops = lab.registered_drops()
    assert lab.ping(lab.vm1, INTERNET_IP)
    assert lab.tcp(lab.vm1, INTERNET_IP, 8000) == PROVIDER_EIP  # what the internet host sees
    assert lab.registered_drops() == drops, "registered frames must pass the VPC"


def test_floating_ip_from_a_secondary_eni_ip_works_both_ways(clean):
    lab = clean
    fip = lab.neutron.find("floatingips", floating_ip_address=FLOATING_IP)[0]
    assert fip["port_id"] == lab.vms[1].port_id  # made through the API, from the ENI's pool
    ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
    assert lab.tcp(lab.vm2, INTERNET_IP, 8000) == FLOATING_EIP  # out through its own elastic IP
    assert lab.tcp(lab.inet, FLOATING_EIP, 80) == f"vm2/tcp/80/{INTERNET_IP}"  # in, unmasqueraded
    assert lab.ping(lab.inet, FLOATING_EIP)
    assert lab.tcp(lab.peer, FLOATING_IP, 80) == f"vm2/tcp/80/{PEER_IP}"  # a VPC peer, privately


def test_a_floating_ip_added_later_works_without_running_any_step(clean):
    lab = clean
    apply_both(lab)
    state = lab.snapshot()["state"]
    fip = lab.floating_ip(LATER_IP, lab.vms[0].port_id)  # through the API only, after the steps
    try:
        assert lab.tcp(lab.inet, LATER_EIP, 80) == f"vm1/tcp/80/{INTERNET_IP}"
        assert lab.tcp(lab.vm1, INTERNET_IP, 8000) == LATER_EIP
        assert lab.snapshot()["state"] == state  # no step ran
    finally:
        lab.delete_floating_ip(fip)
    assert lab.tcp(lab.vm1, INTERNET_IP, 8000) == PROVIDER_EIP


def test_port_forwards_reach_the_tenant_listeners_tcp_and_udp(clean):
    lab = clean
    _, out = apply_both(lab)
    assert out["chain"] == "OOA-PORTFWD"
    assert [(f["proto"], f["public_port"], f["to"]) for f in out["forwards"]] == [
        ("tcp", 522, f"{VM1_IP}:22"),
        ("tcp", 8080, f"{VM2_IP}:80"),
        ("udp", 5353, f"{VM1_IP}:53"),
    ]
    assert lab.tcp(lab.inet, PROVIDER_EIP, 522) == f"vm1/tcp/22/{INTERNET_IP}"
    assert lab.tcp(lab.inet, PROVIDER_EIP, 8080) == f"vm2/tcp/80/{INTERNET_IP}"
    assert lab.udp(lab.inet, PROVIDER_EIP, 5353) == f"vm1/udp/53/{INTERNET_IP}"
    assert lab.tcp(lab.inet, PROVIDER_EIP, 80, timeout=1) == "", "only the configured ports are forwarded"
    assert lab.tcp(lab.peer, PROVIDER_IP, 522) == f"vm1/tcp/22/{PEER_IP}"  # from a VPC peer
    assert lab.udp(lab.peer, PROVIDER_IP, 5353) == f"vm1/udp/53/{PEER_IP}"


def units(lab: Lab) -> dict[str, dict[str, str]]:
    """Each re-apply unit's enablement, state, load state and whether systemd must reload to see its file."""
    shown = {}
    for unit in TIMERS.split() + [t.replace(".timer", ".service") for t in TIMERS.split()]:
        show = lab.ssh(f"systemctl show -p UnitFileState -p ActiveState -p LoadState -p NeedDaemonReload {unit}")
        shown[unit] = dict(line.split("=", 1) for line in show.stdout.splitlines())
    return shown


def reloads_since(lab: Lab, since: str) -> int:
    """How often the host's systemd reloaded its configuration since `since` (the host's `date +%s.%N`)."""
    logged = lab.ssh(f"journalctl -q _PID=1 --since=@{since} --output=cat").stdout.splitlines()
    return logged.count("Reloading.")


def test_apply_twice_equals_once(clean):
    """... also for the host's systemd: apply reloads its configuration once (`enable` does, and that
    reload sees the new unit files), an apply that changes nothing not at all (a reload takes
    140-190 ms here, more beside DevStack's units)."""
    lab = clean
    since = lab.ssh("date +%s.%N").stdout.strip()
    first = apply_both(lab)
    once = lab.snapshot()
    assert reloads_since(lab, since) == 2  # one per step
    loaded = {"LoadState": "loaded", "NeedDaemonReload": "no"}
    for unit, shown in units(lab).items():  # (a service may be running: the timer starts it at once)
        kind = {"UnitFileState": "enabled", "ActiveState": "active"} if unit.endswith(".timer") else {}
        assert shown | loaded | kind == shown, (unit, shown)
    since = lab.ssh("date +%s.%N").stdout.strip()
    second = apply_both(lab)
    assert lab.snapshot() == once  # same MACs (br-ex keeps its random MAC), same rules, same state
    again = [
        lab.step("gateway-mac", "apply", lab.gateway_mac_params()),
        lab.step("port-forwards", "apply", lab.port_forwards_params(FORWARDS)),
    ]
    assert all(p.returncode == 0 for p in again)
    assert not any(" set to " in p.stderr or "pinned" in p.stderr for p in again), "a no-op must not rewrite"
    assert reloads_since(lab, since) == 0
    assert second == first
    assert nat(once).count("-A PREROUTING -j OOA-PORTFWD") == 1
    assert sum(ln.startswith("-A OOA-PORTFWD") for ln in nat(once)) == 3


def test_remove_restores_the_state_before_apply_exactly(clean):
    lab = clean
    before = lab.snapshot()
    apply_both(lab)
    applied = lab.snapshot()
    assert applied["qg_mac"] != before["qg_mac"] and applied["br_ex_hwaddr"] != before["br_ex_hwaddr"]
    assert nat(applied) != nat(before)
    since = lab.ssh("date +%s.%N").stdout.strip()
    for step in ("port-forwards", "gateway-mac"):
        assert json.loads(lab.step(step, "remove").stdout)["removed"] is True
    assert lab.snapshot() == before  # MACs, every iptables table, no state left
    # the re-apply units are gone from the disk and from systemd, with one reload per step
    gone = {"LoadState": "not-found", "ActiveState": "inactive", "NeedDaemonReload": "no"}
    assert all(shown | gone == shown for shown in units(lab).values()), units(lab)
    assert reloads_since(lab, since) == 2
    for step in ("port-forwards", "gateway-mac"):  # nothing applied: remove and reapply do nothing
        for action in ("remove", "reapply"):
            p = lab.step(step, action)
            assert p.returncode == 0 and p.stdout == "", p.stderr
    assert lab.snapshot() == before


def test_remove_stops_a_re_apply_run_that_waits_for_the_steps_lock(clean):
    """The timer may start a re-apply run while remove holds the step's lock: removing the units
    stops that run (left waiting, it would fail once the state is gone and stay listed in systemd)."""
    lab = clean
    ok(lab.step("port-forwards", "apply", lab.port_forwards_params(FORWARDS)))
    service = "openstack-on-aws-port-forwards-reapply.service"
    listed = "systemctl list-units --all --plain --no-legend 'openstack-on-aws-port-forwards-*'"
    fd = os.open(lab.state / "port-forwards.lock", os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held as remove holds it
        lab.ssh(f"systemctl start --no-block {service}")
        running = lambda: lab.ssh(f"systemctl show -p ActiveState {service}").stdout.strip() == "ActiveState=activating"  # noqa: E731
        wait_for(f"{service} to run", running, 30)
        p = lab.ssh(f"OOA_STATE={lab.state} bash -c '. {lab.prefix}/lib.sh && remove_reapply_units port-forwards'")
        assert p.returncode == 0, p.stderr
        assert lab.ssh(listed).stdout == "", lab.ssh(f"systemctl status {service}", check=False).stdout
    finally:
        os.close(fd)


def test_apply_on_another_target_first_restores_the_old_one(clean):
    lab = clean
    before = lab.snapshot()
    br_int_before = lab.ovs("ovs-vsctl", "--if-exists", "get", "bridge", "br-int", "other-config:hwaddr").stdout
    ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
    out = ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params(EXTERNAL_BRIDGE="br-int")))
    after = lab.snapshot()
    assert after["br_ex_hwaddr"] == before["br_ex_hwaddr"]  # br-ex given back as it was
    assert after["qg_mac"] == out["mac"] == PROVIDER_MAC  # the gateway keeps the ENI's MAC on the new target
    pinned = lab.ovs("ovs-vsctl", "get", "bridge", "br-int", "other-config:hwaddr").stdout.strip()
    assert pinned == f'"{out["bridge_mac"]}"'
    ok(lab.step("gateway-mac", "remove"))
    assert lab.snapshot() == before
    assert lab.ovs("ovs-vsctl", "--if-exists", "get", "bridge", "br-int", "other-config:hwaddr").stdout == br_int_before


def test_changing_the_forward_list_changes_only_those_rules(clean):
    lab = clean
    apply_both(lab, f"tcp:522:{VM1_IP}:22,tcp:8080:{VM2_IP}:80")
    old = lab.snapshot()
    ok(lab.step("port-forwards", "apply", lab.port_forwards_params(f"tcp:522:{VM1_IP}:22,udp:5353:{VM1_IP}:53")))
    new = lab.snapshot()
    removed = set(nat(old)) - set(nat(new))
    added = set(nat(new)) - set(nat(old))
    assert [("8080" in r) for r in removed] == [True]
    assert [("5353" in a) for a in added] == [True]
    assert new["qg_mac"] == old["qg_mac"] and new["br_ex_hwaddr"] == old["br_ex_hwaddr"]
    assert f"FORWARDS=tcp:522:{VM1_IP}:22,udp:5353:{VM1_IP}:53" in new["state"]["port-forwards/params"]
    assert {k: v for k, v in new["state"].items() if k != "port-forwards/params"} == {
        k: v for k, v in old["state"].items() if k != "port-forwards/params"
    }
    assert new["iptables"]["mangle"] == old["iptables"]["mangle"]
    assert new["iptables"]["filter"] == old["iptables"]["filter"]
    assert lab.tcp(lab.inet, PROVIDER_EIP, 8080, timeout=1) == ""
    assert lab.udp(lab.inet, PROVIDER_EIP, 5353) == f"vm1/udp/53/{INTERNET_IP}"
    assert lab.tcp(lab.inet, PROVIDER_EIP, 522) == f"vm1/tcp/22/{INTERNET_IP}"


def test_multi_mb_transfers_cross_the_9001_provider_link_both_ways(clean):
    """ENA's 9001-byte provider link, a 1500 internet path: several MB through a forward and through
    a floating IP, from the internet and from a VPC peer (which also has 9001), each way."""
    lab = clean
    assert sh("cat", "/sys/class/net/eth1/mtu", ns=lab.host).stdout.strip() == str(PROVIDER_MTU)
    apply_both(lab, f"{FORWARDS},tcp:9000:{VM1_IP}:9000,tcp:9001:{VM1_IP}:9001")
    for src, forward, floating in ((lab.inet, PROVIDER_EIP, FLOATING_EIP), (lab.peer, PROVIDER_IP, FLOATING_IP)):
        for ip in (forward, floating):
            assert lab.download(src, ip, 9000) == BULK, f"download from {ip} to {src}"
            assert lab.upload(src, ip, 9001) == BULK, f"upload from {src} to {ip}"


def unordered(snapshot: dict) -> dict:
    """The snapshot with each iptables table as a set: an agent's full resync may put its own
    jumps above ours again (port-forwards.sh explains why the order does not matter)."""
    return {**snapshot, "iptables": {t: sorted(lines) for t, lines in snapshot["iptables"].items()}}


def works(lab: Lab) -> None:
    """Every path the two steps open: tenant out, a floating IP in, forwards in (TCP and UDP)."""
    assert lab.tcp(lab.vm1, INTERNET_IP, 8000) == PROVIDER_EIP
    assert lab.tcp(lab.inet, FLOATING_EIP, 80) == f"vm2/tcp/80/{INTERNET_IP}"
    assert lab.tcp(lab.inet, PROVIDER_EIP, 522) == f"vm1/tcp/22/{INTERNET_IP}"
    assert lab.udp(lab.inet, PROVIDER_EIP, 5353) == f"vm1/udp/53/{INTERNET_IP}"


def test_a_full_restart_of_the_l3_and_the_ovs_agent_keeps_the_fix(clean):
    """Both agents stopped and started at once; each does its full resync (restart_agents waits for
    each one's own log line): the L3 agent rebuilds the router (addresses, iptables_manager rewrites
    its own chains), the OVS agent its flows and port tags. Ours stay. One restart of both proves
    what a restart of each would, in half the time: neither agent sets the MACs the fix pins, and
    neither one's resync redoes what the other's would undo (the L3 agent does not touch flows or
    MACs, the OVS agent not the router's iptables), so a fix lost to either one shows here."""
    lab = clean
    apply_both(lab)
    once = lab.snapshot()
    took = lab.restart_agents("l3-agent", "ovs-agent")
    print(f"l3-agent + ovs-agent restart -> both resynced: {took:.1f} s")
    assert unordered(lab.snapshot()) == unordered(once)
    works(lab)


TIMERS = " ".join(f"openstack-on-aws-{step}-reapply.timer" for step in ("gateway-mac", "port-forwards"))


def timers(lab: Lab, action: str) -> None:
    """`systemctl <action>` the steps' re-apply timers in the host (apply installed and started them)."""
    p = lab.ssh(f"systemctl {action} {TIMERS}", check=False)
    assert p.returncode == 0, p.stderr


def test_reapply_fixes_the_router_the_agent_recreates_after_admin_state_down_up(clean):
    """The reapply action as the program runs it, on a router the agent re-creates. The host's
    timers are stopped first: they would fix the router (every 10 s) between its re-creation and
    the checks of the broken state below (the next test proves the timers themselves)."""
    lab = clean
    apply_both(lab)
    works(lab)
    timers(lab, "stop")
    lab.set_router(admin_state_up=False)
    wait_for("the L3 agent to remove the router namespace", lambda: not lab.router_exists(), 60)
    for step in ("gateway-mac", "port-forwards"):  # what the timer runs while the namespace is away
        p = lab.step(step, "reapply")
        assert p.returncode == 0 and "waiting: router namespace" in p.stderr, p.stderr
    lab.set_router(admin_state_up=True)
    lab.wait_router()
    assert lab.snapshot()["qg_mac"] != PROVIDER_MAC  # re-created: Neutron's MAC, no forwards
    assert lab.tcp(lab.vm1, INTERNET_IP, 8000, timeout=1) == ""
    for step in ("gateway-mac", "port-forwards"):
        ok(lab.step(step, "reapply"))
    assert lab.snapshot()["qg_mac"] == PROVIDER_MAC
    works(lab)
    once = lab.snapshot()
    for step in ("gateway-mac", "port-forwards"):
        ok(lab.step(step, "reapply"))
    assert lab.snapshot() == once


def ours(snapshot: dict) -> list[str]:
    """port-forwards' lines of the nat table (its chain, its rules, its jump), in any order: the
    agent's resync of a re-set gateway may put its own jump above ours."""
    return sorted(line for line in nat(snapshot) if "OOA-PORTFWD" in line)


def journal(lab: Lab, step: str, since: str) -> str:
    """What the step's re-apply service logged in the host's journal since `since` (its stderr)."""
    unit = f"openstack-on-aws-{step}-reapply.service"
    return lab.ssh(f"journalctl -q -o cat -u {unit} --since '{since}' --no-pager").stdout


def test_the_hosts_timer_fixes_the_gateway_port_neutron_recreates_when_the_gateway_is_cleared_and_set(clean):
    """The router's gateway cleared and set again through the API (same fixed IP): a new port, a new
    qg- device with Neutron's MAC, cut off by the VPC. Nobody runs a step: the re-apply timer that
    gateway-mac's apply installed in the host's systemd (every 10 s) finds the router's one qg-
    device, pins it again and records it, so remove restores it; port-forwards' rules live on in the
    namespace (keyed on it and on the gateway IP, both kept). The outage is bounded by the timer's
    period: the fix is back within 20 s of the new device (10 s, its accuracy, the run itself)."""
    lab = clean
    apply_both(lab)
    listed = lab.ssh("systemctl list-timers --all --no-legend 'openstack-on-aws-*'").stdout
    assert all(timer in listed for timer in TIMERS.split()), listed
    works(lab)
    old_qg, forwards = lab.router.qg, ours(lab.snapshot())
    assert len(forwards) == 2 + len(FORWARDS.split(","))  # the chain, the jump, a rule per forward
    since = lab.ssh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    took = lab.reset_gateway()
    print(f"gateway cleared and set -> router wired again: {took:.1f} s")
    new_port = lab.gateway_port()
    assert (
        lab.router.qg != old_qg and lab.router.gw_port_id == new_port["id"] and new_port["mac_address"] != PROVIDER_MAC
    )
    fixed = wait_for(
        "the host's timer to pin the new gateway device", lambda: lab.snapshot()["qg_mac"] == PROVIDER_MAC, 20
    )
    lab.timings["re-apply timer"] = fixed
    print(
        f"the host's re-apply timer fixed the new gateway device {fixed:.1f} s after it was wired"
        f" ({took + fixed:.1f} s after the re-create)"
    )
    logged = journal(lab, "gateway-mac", since)
    # the service found the new device with Neutron's MAC and set ours: the VPC had been cut off
    assert f"gateway device {old_qg} is gone" in logged and f"{lab.router.qg}: MAC set to {PROVIDER_MAC}" in logged, (
        logged
    )
    assert ours(lab.snapshot()) == forwards  # port-forwards needs nothing: its chain and jump are still there
    assert "set to" not in journal(lab, "port-forwards", since)
    works(lab)
    once = lab.snapshot()
    for step in ("gateway-mac", "port-forwards"):  # the timer's service again, now: nothing changes
        unit = f"openstack-on-aws-{step}-reapply.service"
        lab.ssh(f"systemctl start {unit}")  # a oneshot: returns once the run has ended
        # how long a run that finds nothing to do takes, in systemd's own timestamps (µs)
        shown = lab.ssh(f"systemctl show -P ExecMainStartTimestampMonotonic -P ExecMainExitTimestampMonotonic {unit}")
        start, end = (int(v) for v in shown.stdout.split())
        print(f"{unit}, nothing to do: {(end - start) / 1000:.0f} ms")
    assert lab.snapshot() == once
    ok(lab.step("gateway-mac", "remove"))  # restores the device it fixed last: the new port's own MAC
    assert lab.snapshot()["qg_mac"] == new_port["mac_address"]


def test_apply_right_after_a_gateway_change_waits_for_the_l3_agent(clean):
    """The router's gateway cleared and set through the API (Neutron makes a new gateway port), and
    at once, as the engine starts a step the moment the one it runs after returns, gateway-mac and
    port-forwards apply with the new ids: the L3 agent plugs the new qg- device and puts the gateway
    IP on it seconds after the API answered; each step waits for what it needs, and the fix works."""
    lab = clean
    old, fips = lab.change_gateway()
    plugged = sh("ip", "link", "show", lab.router.qg, ns=lab.rns, check=False).returncode == 0
    t = time.monotonic()
    gm = lab.step("gateway-mac", "apply", lab.gateway_mac_params())
    took = time.monotonic() - t
    pf = lab.step("port-forwards", "apply", lab.port_forwards_params(FORWARDS))
    out = ok(gm)
    assert not plugged, "the agent had plugged the new device before apply started: nothing raced"
    assert f"waiting up to 120 s for Neutron's L3 agent: gateway device {lab.router.qg} " in gm.stderr, gm.stderr
    assert (out["device"], out["mac"]) == (lab.router.qg, PROVIDER_MAC)
    assert [f["public_port"] for f in ok(pf)["forwards"]] == [522, 8080, 5353]
    print(f"gateway-mac apply right after a gateway change: {took:.1f} s; it logged:\n{gm.stderr.strip()}")
    lab.rewired(old, fips)  # the floating IP back on the router (the lab's own check needs it)
    assert lab.snapshot()["qg_mac"] == PROVIDER_MAC
    works(lab)


NO_NS = str(uuid.uuid4())
BAD = [
    ("gateway-mac", {"ROUTER_ID": NO_NS}, f"router namespace qrouter-{NO_NS} does not exist"),
    ("gateway-mac", {"ROUTER_ID": "not-a-uuid"}, "ROUTER_ID is not a valid uuid"),
    ("gateway-mac", {"GATEWAY_PORT_ID": NO_NS}, f"gateway device qg-{NO_NS[:11]} does not exist"),
    ("gateway-mac", {"PROVIDER_MAC": "0e:00:00:00:02"}, "PROVIDER_MAC is not a valid mac"),
    ("gateway-mac", {"PROVIDER_MAC": "0e:00:00:00:02:zz"}, "PROVIDER_MAC is not a valid mac"),
    ("gateway-mac", {"PROVIDER_MAC": "01:00:5e:00:00:01"}, "PROVIDER_MAC is a multicast MAC"),
    ("gateway-mac", {"VPC_GATEWAY_IP": "10.0.2.256"}, "VPC_GATEWAY_IP is not a valid ipv4"),
    ("gateway-mac", {"EXTERNAL_BRIDGE": "br-nope"}, "bridge br-nope does not exist"),
    ("gateway-mac", {"EXTERNAL_BRIDGE": "br ex;true"}, "EXTERNAL_BRIDGE is not a valid bridge name"),
    ("port-forwards", {"ROUTER_ID": NO_NS}, f"router namespace qrouter-{NO_NS} does not exist"),
    ("port-forwards", {"GATEWAY_IP": "10.0.2.99"}, "gateway IP 10.0.2.99 is not on any device"),
    ("port-forwards", {"GATEWAY_IP": "10.0.2"}, "GATEWAY_IP is not a valid ipv4"),
    ("port-forwards", {"FORWARDS": f"tcp:70000:{VM1_IP}:22"}, "public port '70000' is not a port"),
    ("port-forwards", {"FORWARDS": f"tcp:522:{VM1_IP}:0"}, "tenant port '0' is not a port"),
    ("port-forwards", {"FORWARDS": "tcp:522:192.168.100.300:22"}, "tenant IP '192.168.100.300' is not"),
    ("port-forwards", {"FORWARDS": f"icmp:522:{VM1_IP}:22"}, "protocol must be tcp or udp"),
    ("port-forwards", {"FORWARDS": f"tcp:522:{VM1_IP}"}, "is not proto:publicPort:tenantIp:tenantPort"),
    ("port-forwards", {"FORWARDS": f"tcp:522:{VM1_IP}:22,tcp:522:{VM2_IP}:22"}, "tcp port 522 is forwarded twice"),
]


@pytest.mark.parametrize("step,override,message", BAD, ids=[f"{s}-{m[:28]}" for s, _, m in BAD])
def test_bad_parameters_fail_clearly_and_change_nothing(clean, step, override, message):
    lab = clean
    base = lab.gateway_mac_params() if step == "gateway-mac" else lab.port_forwards_params(FORWARDS)
    before = lab.snapshot()
    p = lab.step(step, "apply", {**base, **override}, env={"OOA_ROUTER_WAIT": "0"})  # not waiting for an agent
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert p.stdout == ""
    assert lab.snapshot() == before
    # what `pulumi up` shows: the error in the message's first lines, not after the script
    shown = command_failure(lab.command(step, "apply"), p.returncode, p.stderr)
    assert message in shown[:600], shown[:600]


def test_missing_or_unknown_parameters_fail_before_any_change(clean):
    lab = clean
    before = lab.snapshot()
    params = lab.gateway_mac_params()
    del params["VPC_GATEWAY_IP"]
    p = lab.step("gateway-mac", "apply", params)
    assert p.returncode != 0 and "missing parameter VPC_GATEWAY_IP" in p.stderr
    p = lab.step("port-forwards", "apply", {**lab.port_forwards_params(""), "EXTRA": "1"})
    assert p.returncode != 0 and "unknown parameter EXTRA" in p.stderr
    assert lab.snapshot() == before


def test_a_bad_reapply_of_an_applied_step_changes_nothing(clean):
    lab = clean
    apply_both(lab)
    applied = lab.snapshot()
    p = lab.step("gateway-mac", "apply", lab.gateway_mac_params(PROVIDER_MAC="0e:00:00:00:02"))
    assert p.returncode != 0 and "PROVIDER_MAC is not a valid mac" in p.stderr
    p = lab.step("port-forwards", "apply", lab.port_forwards_params(f"udp:99999:{VM1_IP}:53"))
    assert p.returncode != 0 and "public port '99999' is not a port" in p.stderr
    assert lab.snapshot() == applied  # same MACs, same rules, same saved parameters
