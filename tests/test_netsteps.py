"""gateway-mac and port-forwards, run without root: the real scripts, through the command text Pulumi
sends, on the real iptables and network devices of a private namespace (tests/netns.py says what is
stood in for: `ip netns`, `ovs-vsctl`, `sudo`).

The lab (tests/lab, root) runs them on Open vSwitch with traffic; this is what a non-root run of the
suite has to catch a broken step: the rules port-forwards writes (accepted by the kernel's netfilter
through iptables-restore, and exactly those), twice = once, a changed list, re-apply, remove leaving
Neutron's rules alone; gateway-mac's MAC change, bridge pin, originals restored on remove and on a
change of target, re-apply. Skipped where the kernel refuses unprivileged user namespaces (a failure
when CI=true).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator

import pytest

from tests import netns

ROUTER = "6f1d3c2a-0b4e-4c1f-9a7d-2e5b8c9d0a11"
PORT = "a3b2c1d0-e9f8-4a7b-8c6d-5e4f3a2b1c0d"
OTHER_ROUTER = "0c9b8a7d-6e5f-4d3c-2b1a-0f9e8d7c6b5a"
OTHER_PORT = "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b"
PROVIDER_MAC = "0e:4a:1b:2c:3d:4e"  # an ENI's MAC: locally administered unicast
NEUTRON_MAC = "fa:16:3e:00:00:01"  # what Neutron gave the qg- device
OTHER_NEUTRON_MAC = "fa:16:3e:00:00:02"
GATEWAY_IP = "10.42.2.10"
VPC_GATEWAY_IP = "10.42.2.1"
FORWARDS = "tcp:522:192.168.100.10:22,udp:5353:192.168.100.11:53"
CHAIN = "OOA-PORTFWD"
# What Neutron's L3 agent keeps in the router's nat table (its metadata redirect), in its own chain.
NEUTRON_NAT = [
    "-N neutron-l3-agent-PREROUTING",
    "-A PREROUTING -j neutron-l3-agent-PREROUTING",
    "-A neutron-l3-agent-PREROUTING -d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80 "
    "-j REDIRECT --to-ports 9697",
]


def dnat(proto: str, port: int, to: str) -> str:
    """One forward's rule as `iptables -S` prints it back."""
    return (f"-A {CHAIN} -d {GATEWAY_IP}/32 -p {proto} -m {proto} --dport {port} "
            f"-m comment --comment openstack-on-aws -j DNAT --to-destination {to}")


@pytest.fixture(scope="module")
def can_run() -> None:
    why = netns.available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI=true: a failure, not a skip)")
        pytest.skip(why)


@pytest.fixture
def net(can_run: None, tmp_path) -> Iterator[netns.PrivateNet]:
    private = netns.PrivateNet(tmp_path).start()
    try:
        yield private
    finally:
        private.stop()


def qg(port_id: str) -> str:
    return f"qg-{port_id[:11]}"


def plug(net: netns.PrivateNet, port_id: str, mac: str, up: bool = True) -> str:
    """The router's gateway device as the L3 agent plugs it: Neutron's MAC, then up (a veth: the
    kernel's own MAC handling)."""
    dev = qg(port_id)
    net.sh(f"ip link add {dev} address {mac} type veth peer name p{port_id[:8]}")
    if up:
        net.sh(f"ip link set {dev} up")
    return dev


def add_router(net: netns.PrivateNet, router_id: str = ROUTER, port_id: str = PORT, mac: str = NEUTRON_MAC,
               gateway_ip: str | None = GATEWAY_IP) -> str:
    """A router namespace with its gateway device."""
    net.add_router(router_id)
    dev = plug(net, port_id, mac)
    if gateway_ip:
        net.sh(f"ip addr add {gateway_ip}/24 dev {dev}")
    return dev


def started(net: netns.PrivateNet, step: str, params: dict[str, object],
            appear) -> tuple[subprocess.CompletedProcess[str], str]:
    """`step` apply started while what it needs is missing; once it says it waits, `appear()` makes
    it (as the L3 agent does seconds after Neutron's API has the router). The finished run, and the
    first line it logged."""
    p = net.start_step(step, params, env={"OOA_ROUTER_WAIT": "60"})
    assert p.stderr is not None and p.stdout is not None
    first = p.stderr.readline()  # the step logs nothing else before it waits
    appear()
    rc = p.wait(timeout=120)
    return subprocess.CompletedProcess(p.args, rc, p.stdout.read(), first + p.stderr.read()), first


WAITED = r" \(waited (\d+) s for Neutron's L3 agent\)"


def ok(p: subprocess.CompletedProcess[str]) -> dict:
    assert p.returncode == 0, f"step failed ({p.returncode}): {p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def chain(net: netns.PrivateNet, name: str) -> list[str]:
    return [line for line in net.nat() if line.startswith(f"-A {name} ")]


# ---- port-forwards ---------------------------------------------------------------------------


def forwards(net: netns.PrivateNet, action: str, spec: str = FORWARDS, router_id: str = ROUTER):
    params = {"ROUTER_ID": router_id, "GATEWAY_IP": GATEWAY_IP, "FORWARDS": spec}
    return net.step("port-forwards", action, params if action == "apply" else None)


def with_neutron_rules(net: netns.PrivateNet) -> list[str]:
    add_router(net)
    net.sh("\n".join(f"iptables -w -t nat {rule}" for rule in NEUTRON_NAT))
    return net.nat()


def test_port_forwards_writes_exactly_the_configured_rules_first_in_prerouting(net):
    neutron = with_neutron_rules(net)
    out = ok(forwards(net, "apply"))
    assert out == {
        "namespace": f"qrouter-{ROUTER}", "chain": CHAIN, "gateway_ip": GATEWAY_IP,
        "forwards": [{"proto": "tcp", "public_port": 522, "to": "192.168.100.10:22"},
                     {"proto": "udp", "public_port": 5353, "to": "192.168.100.11:53"}],
    }
    assert chain(net, CHAIN) == [dnat("tcp", 522, "192.168.100.10:22"), dnat("udp", 5353, "192.168.100.11:53")]
    assert chain(net, "PREROUTING") == [f"-A PREROUTING -j {CHAIN}", "-A PREROUTING -j neutron-l3-agent-PREROUTING"]
    assert set(neutron) <= set(net.nat())  # Neutron's chain and rules are untouched


def test_port_forwards_twice_is_once(net):
    with_neutron_rules(net)
    first = ok(forwards(net, "apply"))
    after_first = net.nat()
    again = forwards(net, "apply")
    assert ok(again) == first
    assert net.nat() == after_first
    assert "set to" not in again.stderr  # nothing rewritten: what iptables prints back is what it wants


def test_port_forwards_follow_a_changed_list_and_remove_only_their_own(net):
    neutron = with_neutron_rules(net)
    ok(forwards(net, "apply"))
    ok(forwards(net, "apply", "tcp:8080:192.168.100.12:80"))
    assert chain(net, CHAIN) == [dnat("tcp", 8080, "192.168.100.12:80")]
    ok(forwards(net, "apply", ""))
    assert chain(net, CHAIN) == [] and f"-N {CHAIN}" in net.nat()
    assert chain(net, "PREROUTING")[0] == f"-A PREROUTING -j {CHAIN}"
    removed = ok(forwards(net, "remove"))
    assert removed == {"removed": True, "namespace": f"qrouter-{ROUTER}", "chain": CHAIN}
    assert net.nat() == neutron
    assert not (net.state / "port-forwards").exists()
    assert forwards(net, "remove").returncode == 0  # a second remove finds nothing to do


def test_port_forwards_reapply_restores_lost_rules_and_waits_for_the_namespace(net):
    with_neutron_rules(net)
    ok(forwards(net, "apply"))
    wanted = net.nat()
    # The L3 agent re-created the namespace: our jump and chain are gone.
    net.sh(f"iptables -w -t nat -D PREROUTING -j {CHAIN}; iptables -w -t nat -F {CHAIN}; iptables -w -t nat -X {CHAIN}")
    assert f"-N {CHAIN}" not in net.nat()
    ok(forwards(net, "reapply"))
    assert sorted(net.nat()) == sorted(wanted) and chain(net, "PREROUTING")[0] == f"-A PREROUTING -j {CHAIN}"
    net.drop_router(ROUTER)
    waiting = forwards(net, "reapply")
    assert waiting.returncode == 0 and "waiting: router namespace" in waiting.stderr


@pytest.mark.parametrize(
    "spec,message",
    [
        ("tcp:522:192.168.100.10", "is not proto:publicPort:tenantIp:tenantPort"),
        ("tcp:522:192.168.100.10:22:9", "is not proto:publicPort:tenantIp:tenantPort"),
        ("icmp:522:192.168.100.10:22", "protocol must be tcp or udp"),
        ("tcp:0:192.168.100.10:22", "public port '0' is not a port"),
        ("tcp:522:192.168.100.300:22", "is not an IPv4 address"),
        ("tcp:522:192.168.100.10:65536", "tenant port '65536' is not a port"),
        ("tcp:522:192.168.100.10:22,tcp:0522:192.168.100.11:22", "tcp port 0522 is forwarded twice"),
    ],
)
def test_port_forwards_refuse_a_bad_forward_before_any_change(net, spec, message):
    before = with_neutron_rules(net)
    p = forwards(net, "apply", spec)
    assert p.returncode != 0 and message in p.stderr
    assert net.nat() == before
    assert not (net.state / "port-forwards").exists()


def test_port_forwards_need_the_gateway_ip_in_the_router_namespace(net):
    """... within OOA_ROUTER_WAIT: an error naming what is missing and how long it waited."""
    add_router(net, gateway_ip=None)
    p = net.step("port-forwards", "apply", {"ROUTER_ID": ROUTER, "GATEWAY_IP": GATEWAY_IP, "FORWARDS": FORWARDS},
                 env={"OOA_ROUTER_WAIT": "1"})
    missing = f"gateway IP {GATEWAY_IP} is not on any device in namespace qrouter-{ROUTER}"
    assert p.returncode != 0 and p.stdout == ""
    assert f"waiting up to 1 s for Neutron's L3 agent: {missing}" in p.stderr
    waited = re.search(f"error: {re.escape(missing)}{WAITED}", p.stderr)
    assert waited and int(waited[1]) >= 1, p.stderr
    assert f"-N {CHAIN}" not in net.nat() and not (net.state / "port-forwards").exists()


def test_port_forwards_apply_waits_for_the_gateway_ip(net):
    """The namespace and the gateway device are there, the gateway IP not yet: apply waits for it."""
    dev = add_router(net, gateway_ip=None)
    params = {"ROUTER_ID": ROUTER, "GATEWAY_IP": GATEWAY_IP, "FORWARDS": FORWARDS}
    p, first = started(net, "port-forwards", params, lambda: net.sh(f"ip addr add {GATEWAY_IP}/24 dev {dev}"))
    assert first.strip() == (f"[port-forwards] waiting up to 60 s for Neutron's L3 agent: gateway IP {GATEWAY_IP}"
                             f" is not on any device in namespace qrouter-{ROUTER}")
    assert ok(p)["forwards"] and chain(net, CHAIN) == [dnat("tcp", 522, "192.168.100.10:22"),
                                                         dnat("udp", 5353, "192.168.100.11:53")]


# ---- gateway-mac -----------------------------------------------------------------------------


def gateway_mac(net: netns.PrivateNet, action: str, router_id: str = ROUTER, port_id: str = PORT,
                env: dict[str, str] | None = None, **over: str):
    params = gateway_mac_params(router_id, port_id, **over) if action == "apply" else None
    return net.step("gateway-mac", action, params, env=env)


def gateway_mac_params(router_id: str = ROUTER, port_id: str = PORT, **over: str) -> dict[str, object]:
    return {"ROUTER_ID": router_id, "GATEWAY_PORT_ID": port_id, "PROVIDER_MAC": PROVIDER_MAC,
            "EXTERNAL_BRIDGE": "br-ex", "VPC_GATEWAY_IP": VPC_GATEWAY_IP, **over}


def is_local_unicast(mac: str) -> bool:
    first = int(mac[:2], 16)
    return bool(first & 2) and not first & 1


@pytest.mark.parametrize("bridge_hwaddr", [None, "02:aa:bb:cc:dd:ee"], ids=["unset", "set"])
def test_gateway_mac_sets_the_mac_pins_the_bridge_and_remove_restores_both(net, bridge_hwaddr):
    dev = add_router(net)
    net.add_bridge("br-ex")
    if bridge_hwaddr:
        (net.ovs / "br-ex.hwaddr").write_text(bridge_hwaddr + "\n")
    out = ok(gateway_mac(net, "apply", PROVIDER_MAC=PROVIDER_MAC.upper()))  # any case: the kernel's is lower
    assert {k: out[k] for k in ("namespace", "device", "mac", "bridge", "gateway_ip", "gateway_reachable")} == {
        "namespace": f"qrouter-{ROUTER}", "device": dev, "mac": PROVIDER_MAC, "bridge": "br-ex",
        "gateway_ip": VPC_GATEWAY_IP, "gateway_reachable": False,
    }
    assert net.mac(dev) == PROVIDER_MAC
    assert net.bridge_hwaddr("br-ex") == out["bridge_mac"] != PROVIDER_MAC
    assert is_local_unicast(out["bridge_mac"]) and out["bridge_mac"] != bridge_hwaddr
    # the datapath ID is pinned to the one the bridge had, in the same transaction as the MAC (the OVS
    # agent's flows are keyed by it: a new ID stalls them; the lab proves it on real Open vSwitch)
    assert (net.ovs / "br-ex.datapath-id").read_text() == "0000a6b1c2d3e4f5\n"
    originals = net.state / "gateway-mac" / "originals"
    assert f"ORIG_DEV_MAC={NEUTRON_MAC}\n" in originals.read_text()
    assert f"ORIG_BRIDGE_HWADDR={bridge_hwaddr or ''}\n" in originals.read_text()
    assert stat.S_IMODE(originals.stat().st_mode) == 0o600

    again = gateway_mac(net, "apply")
    assert ok(again) == out and "MAC set" not in again.stderr and "pinned" not in again.stderr

    assert ok(gateway_mac(net, "remove")) == {"removed": True, "namespace": f"qrouter-{ROUTER}", "device": dev}
    assert net.mac(dev) == NEUTRON_MAC
    assert net.bridge_hwaddr("br-ex") == bridge_hwaddr
    assert not (net.ovs / "br-ex.datapath-id").exists()
    assert not (net.state / "gateway-mac").exists()


def test_gateway_mac_reports_a_reachable_vpc_gateway(net):
    add_router(net)
    net.add_bridge("br-ex")
    net.sh(f"ip addr add {VPC_GATEWAY_IP}/24 dev p{PORT[:8]} && ip link set p{PORT[:8]} up")
    assert ok(gateway_mac(net, "apply"))["gateway_reachable"] is True


def test_gateway_mac_on_another_target_first_restores_the_old_one(net):
    old_dev = add_router(net)
    new_dev = add_router(net, OTHER_ROUTER, OTHER_PORT, OTHER_NEUTRON_MAC, gateway_ip="10.42.2.20")
    net.add_bridge("br-ex")
    ok(gateway_mac(net, "apply"))
    assert net.mac(old_dev) == PROVIDER_MAC
    out = ok(gateway_mac(net, "apply", OTHER_ROUTER, OTHER_PORT))
    assert out["device"] == new_dev and out["namespace"] == f"qrouter-{OTHER_ROUTER}"
    assert net.mac(old_dev) == NEUTRON_MAC  # the old router's gateway has its own MAC back
    assert net.mac(new_dev) == PROVIDER_MAC
    assert net.bridge_hwaddr("br-ex") == out["bridge_mac"]
    assert f"ORIG_DEV_MAC={OTHER_NEUTRON_MAC}\n" in (net.state / "gateway-mac" / "originals").read_text()
    ok(gateway_mac(net, "remove"))
    assert (net.mac(old_dev), net.mac(new_dev)) == (NEUTRON_MAC, OTHER_NEUTRON_MAC)
    assert net.bridge_hwaddr("br-ex") is None


def test_gateway_mac_reapply_sets_the_mac_again_and_waits_for_the_namespace(net):
    dev = add_router(net)
    net.add_bridge("br-ex")
    pinned = ok(gateway_mac(net, "apply"))["bridge_mac"]
    net.sh(f"ip link set dev {dev} address {NEUTRON_MAC}")  # the L3 agent re-created the device
    out = ok(gateway_mac(net, "reapply"))
    assert net.mac(dev) == PROVIDER_MAC and out["gateway_reachable"] is None and out["bridge_mac"] == pinned
    net.drop_router(ROUTER)
    waiting = gateway_mac(net, "reapply")
    assert waiting.returncode == 0 and "waiting: router namespace" in waiting.stderr


@pytest.mark.parametrize(
    "over,message",
    [
        ({"PROVIDER_MAC": "01:4a:1b:2c:3d:4e"}, "PROVIDER_MAC is a multicast MAC"),
        ({"PROVIDER_MAC": "0e:4a:1b:2c:3d"}, "PROVIDER_MAC is not a valid mac"),
        ({"EXTERNAL_BRIDGE": "br ex"}, "EXTERNAL_BRIDGE is not a valid bridge name"),
        ({"ROUTER_ID": OTHER_ROUTER}, f"router namespace qrouter-{OTHER_ROUTER} does not exist"),
        ({"GATEWAY_PORT_ID": OTHER_PORT}, f"gateway device {qg(OTHER_PORT)} does not exist"),
        ({"EXTERNAL_BRIDGE": "br-other"}, "Open vSwitch bridge br-other does not exist"),
    ],
)
def test_gateway_mac_refuses_bad_parameters_and_missing_targets_before_any_change(net, over, message):
    dev = add_router(net)
    net.add_bridge("br-ex")
    p = gateway_mac(net, "apply", env={"OOA_ROUTER_WAIT": "0"}, **over)
    assert p.returncode != 0 and message in p.stderr
    assert net.mac(dev) == NEUTRON_MAC and net.bridge_hwaddr("br-ex") is None
    assert not (net.state / "gateway-mac").exists()


# ---- gateway-mac: a gateway port Neutron re-creates (router gateway cleared and set) ----------


def recreate_gateway(net: netns.PrivateNet, old_port: str, *new: tuple[str, str]) -> None:
    """The L3 agent deleted the old gateway device and plugged the new port(s) (id, Neutron MAC)."""
    net.sh(f"ip link del {qg(old_port)}")
    for port_id, mac in new:
        plug(net, port_id, mac)


def applied(net: netns.PrivateNet) -> tuple[str, str]:
    """apply on the router with one gateway device; the bridge MAC it pinned and its saved originals."""
    add_router(net)
    net.add_bridge("br-ex")
    pinned = ok(gateway_mac(net, "apply"))["bridge_mac"]
    return pinned, (net.state / "gateway-mac" / "originals").read_text()


def test_gateway_mac_reapply_follows_a_recreated_gateway_port_and_remove_restores_it(net):
    pinned, originals = applied(net)
    recreate_gateway(net, PORT, (OTHER_PORT, OTHER_NEUTRON_MAC))
    new_dev = qg(OTHER_PORT)
    p = net.timer("gateway-mac")
    out = ok(p)
    assert f"gateway device {qg(PORT)} is gone" in p.stderr and f"following the router's {new_dev}" in p.stderr
    assert (out["device"], out["mac"], out["bridge_mac"]) == (new_dev, PROVIDER_MAC, pinned)
    assert net.mac(new_dev) == PROVIDER_MAC and net.bridge_hwaddr("br-ex") == pinned
    # the new target and its own original MAC are recorded; the bridge's originals are kept
    followed = (net.state / "gateway-mac" / "originals").read_text()
    assert f"TARGET=qrouter-{ROUTER}/{new_dev}/br-ex\n" in followed
    assert f"ORIG_DEV_MAC={OTHER_NEUTRON_MAC}\n" in followed
    keep = [ln for ln in originals.splitlines() if not ln.startswith(("TARGET=", "ORIG_DEV_MAC="))]
    assert keep == [ln for ln in followed.splitlines() if not ln.startswith(("TARGET=", "ORIG_DEV_MAC="))]
    # twice = once: the timer again, and apply with the new port's id, change nothing
    again = net.timer("gateway-mac")
    assert ok(again) == out and "MAC set" not in again.stderr and "following" not in again.stderr
    reapplied = ok(gateway_mac(net, "apply", port_id=OTHER_PORT))
    assert reapplied["device"] == new_dev and reapplied["bridge_mac"] == pinned
    assert (net.state / "gateway-mac" / "originals").read_text() == followed
    # apply with the stale port id refuses before any change
    stale = gateway_mac(net, "apply", env={"OOA_ROUTER_WAIT": "0"})
    assert stale.returncode != 0 and f"gateway device {qg(PORT)} does not exist" in stale.stderr
    assert net.mac(new_dev) == PROVIDER_MAC and (net.state / "gateway-mac" / "originals").read_text() == followed
    # remove restores the device the step changed last: the new port's own MAC, and the bridge
    assert ok(gateway_mac(net, "remove")) == {"removed": True, "namespace": f"qrouter-{ROUTER}", "device": new_dev}
    assert net.mac(new_dev) == OTHER_NEUTRON_MAC
    assert net.bridge_hwaddr("br-ex") is None and not (net.ovs / "br-ex.datapath-id").exists()
    assert not (net.state / "gateway-mac").exists()


def test_gateway_mac_reapply_waits_for_the_new_gateway_device(net):
    applied(net)
    net.sh(f"ip link del {qg(PORT)}")
    new_dev = qg(OTHER_PORT)
    # the new device appears 2 s into the timer's run (the agent plugs it while reapply waits)
    script = (f"(sleep 2; ip link add {new_dev} address {OTHER_NEUTRON_MAC} type veth peer name pother && "
              f"ip link set {new_dev} up) & "
              f"{net.prefix}/gateway-mac.sh reapply; wait")
    p = net.run("bash", "-euo", "pipefail", "-c", script, env={"OOA_STATE": str(net.state), "OOA_GATEWAY_WAIT": "20"})
    assert ok(p)["device"] == new_dev and net.mac(new_dev) == PROVIDER_MAC


@pytest.mark.parametrize("new", [[], [(OTHER_PORT, OTHER_NEUTRON_MAC), (OTHER_ROUTER, "fa:16:3e:00:00:03")]],
                         ids=["none", "several"])
def test_gateway_mac_reapply_refuses_no_or_several_gateway_devices_and_changes_nothing(net, new):
    pinned, originals = applied(net)
    recreate_gateway(net, PORT, *new)
    p = net.timer("gateway-mac", OOA_GATEWAY_WAIT="1")
    assert p.returncode != 0 and p.stdout == ""
    if new:
        devs = " ".join(qg(port_id) for port_id, _ in new)  # in the kernel's order (as created)
        assert f"namespace qrouter-{ROUTER} has several qg- devices: {devs}; not guessing" in p.stderr
        assert [net.mac(qg(port_id)) for port_id, _ in new] == [mac for _, mac in new]
    else:
        message = f"gateway device {qg(PORT)} is gone and namespace qrouter-{ROUTER} has no qg- device after 1 s"
        assert message in p.stderr
    assert (net.state / "gateway-mac" / "originals").read_text() == originals
    assert net.bridge_hwaddr("br-ex") == pinned


def test_gateway_mac_reapply_refuses_a_bad_wait(net):
    applied(net)
    p = net.timer("gateway-mac", OOA_GATEWAY_WAIT="soon")
    assert p.returncode != 0 and "OOA_GATEWAY_WAIT is not a number of seconds: 'soon'" in p.stderr


# ---- gateway-mac: apply waits for the router the L3 agent builds --------------------------------


@pytest.mark.parametrize(
    "missing,problem",
    [
        ("namespace", f"router namespace qrouter-{ROUTER} does not exist"),
        ("device", f"gateway device {qg(PORT)} does not exist in namespace qrouter-{ROUTER}"),
        ("down", f"gateway device {qg(PORT)} in namespace qrouter-{ROUTER} is not up"),
    ],
    ids=["namespace", "device", "down"],
)
def test_gateway_mac_apply_waits_for_the_l3_agent_to_build_the_router(net, missing, problem):
    """external-gateway returns once Neutron's API has the router gateway; the L3 agent makes the
    namespace and plugs the qg- device (Neutron's MAC, then up) seconds later, while apply waits."""
    net.add_bridge("br-ex")
    if missing != "namespace":
        net.add_router(ROUTER)
    if missing == "down":
        plug(net, PORT, NEUTRON_MAC, up=False)

    def agent() -> None:
        if missing == "namespace":
            net.add_router(ROUTER)
        if missing == "down":
            net.sh(f"ip link set {qg(PORT)} up")
        else:
            plug(net, PORT, NEUTRON_MAC)

    p, first = started(net, "gateway-mac", gateway_mac_params(), agent)
    assert first.strip() == f"[gateway-mac] waiting up to 60 s for Neutron's L3 agent: {problem}"
    out = ok(p)
    assert out["device"] == qg(PORT) and out["mac"] == PROVIDER_MAC == net.mac(qg(PORT))
    assert f"ORIG_DEV_MAC={NEUTRON_MAC}\n" in (net.state / "gateway-mac" / "originals").read_text()


def test_gateway_mac_apply_gives_up_after_the_wait_naming_what_is_missing(net):
    net.add_bridge("br-ex")
    p = gateway_mac(net, "apply", env={"OOA_ROUTER_WAIT": "2"})
    missing = f"router namespace qrouter-{ROUTER} does not exist"
    assert p.returncode != 0 and p.stdout == ""
    assert f"waiting up to 2 s for Neutron's L3 agent: {missing}" in p.stderr
    waited = re.search(f"error: {re.escape(missing)}{WAITED}", p.stderr)
    assert waited and int(waited[1]) >= 2, p.stderr
    assert not (net.state / "gateway-mac").exists() and net.bridge_hwaddr("br-ex") is None


@pytest.mark.parametrize("step", ["gateway-mac", "port-forwards"])
def test_apply_refuses_a_bad_router_wait(net, step):
    add_router(net)
    net.add_bridge("br-ex")
    params = gateway_mac_params() if step == "gateway-mac" else {"ROUTER_ID": ROUTER, "GATEWAY_IP": GATEWAY_IP,
                                                                  "FORWARDS": ""}
    p = net.step(step, "apply", params, env={"OOA_ROUTER_WAIT": "soon"})
    assert p.returncode != 0 and "OOA_ROUTER_WAIT is not a number of seconds: 'soon'" in p.stderr
    assert not (net.state / step).exists()


def test_the_wait_for_the_l3_agent_says_what_it_waits_for_even_when_its_first_check_outlasts_the_bound():
    """On a busy host the first look at the router namespace can take longer than OOA_ROUTER_WAIT:
    the step still logs what it waits for before it gives up naming it."""
    script = (
        "set -euo pipefail; OOA_STEP=port-forwards; . onhost/steps/lib.sh; "
        'missing() { sleep 1.1; echo "gateway IP 10.0.2.10 is not on any device"; }; await_targets'
    )
    env = {**os.environ, "OOA_ROUTER_WAIT": "1"}
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert p.returncode == 1
    waiting, error = p.stderr.splitlines()
    assert waiting == (
        "[port-forwards] waiting up to 1 s for Neutron's L3 agent: gateway IP 10.0.2.10 is not on any device"
    )
    # bash's SECONDS counts whole seconds: a 1.1 s check can span two of them
    assert re.fullmatch(
        r"\[port-forwards\] error: gateway IP 10\.0\.2\.10 is not on any device "
        r"\(waited [12] s for Neutron's L3 agent\)",
        error,
    ), p.stderr
