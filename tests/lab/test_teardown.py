"""The end of the session, on a host whose router goes: external-gateway's remove against the real
API, then the lab stack's whole chain back to back as the engine runs it, from a host with no
router to a host with nothing of the project left (the files of this package run in name order,
and this one takes the router away from the session's lab)."""

from __future__ import annotations

import json
import time

import pytest

from components.openstack import host_scripts, selected_steps
from onhost import remote
from onhost.chain import parse_emitted, runs_after
from tests.harness import command_failure
from tests.lab.net import Lab, sh
from tests.lab.neutron import wait_for

pytestmark = pytest.mark.lab

NEUTRON_KINDS = ("routers", "networks", "subnets", "ports")
CHAIN = "OOA-PORTFWD"  # port-forwards' iptables chain in the router namespace


def test_external_gateway_remove_deletes_what_it_created(lab):
    api = lab.neutron
    for fip in api.api("GET", "floatingips")["floatingips"]:  # the tenant's own objects go first,
        api.api("DELETE", f"floatingips/{fip['id']}")  # as a user's would before a destroy
    for vm in lab.vms:
        api.api("DELETE", f"ports/{vm.port_id}")
    p = lab.step("external-gateway", "remove")
    assert p.returncode == 0, p.stderr
    for kind in ("routers", "networks", "subnets"):
        assert api.api("GET", kind)[kind] == [], f"{kind} left behind"
    assert not (lab.state / "external-gateway").exists()
    wait_for("the L3 agent to delete the router namespace", lambda: not lab.router_exists(), 60)
    again = lab.step("external-gateway", "remove")
    assert again.returncode == 0 and "nothing to remove" in again.stderr
    assert json.dumps(api.api("GET", "ports")["ports"]) == "[]"


def br_ex(lab: Lab) -> dict[str, str]:
    """br-ex's MAC and what gateway-mac pins on it (its hwaddr, its datapath ID)."""
    get = ("ovs-vsctl", "--if-exists", "get", "bridge", "br-ex")
    return {
        "mac": sh("cat", "/sys/class/net/br-ex/address", ns=lab.host).stdout.strip(),
        "hwaddr": lab.ovs(*get, "other-config:hwaddr").stdout.strip(),
        "dpid_pin": lab.ovs(*get, "other-config:datapath-id").stdout.strip(),
        "dpid": lab.br_ex_dpid(),
    }


def ours(lab: Lab, router_id: str) -> dict[str, object]:
    """Everything of the project on the host and in Neutron: the scripts, the steps' state, the
    re-apply units, Neutron's objects, br-ex, and in the router's namespace the gateway device's
    MAC and port-forwards' rules (not the L3 agent's own rules: the agent may still be at work)."""
    ns = f"qrouter-{router_id}"
    found: dict[str, object] = {
        "files": {
            str(p.relative_to(lab.work)): p.read_text() if p.is_file() else "dir"
            for folder in (lab.prefix, lab.state)
            for p in sorted(folder.rglob("*"))
        },
        "units": sorted(p.name for p in (lab.etc / "systemd/system").glob("openstack-on-aws-*")),
        "loaded units": sorted(  # the names only: the timer starts its service every 10 s
            ln.split()[0]
            for ln in lab.ssh("systemctl list-units --all --plain --no-legend 'openstack-on-aws-*'").stdout.splitlines()
            if ln.strip()
        ),
        "neutron": {kind: sorted(o["id"] for o in lab.neutron.api("GET", kind)[kind]) for kind in NEUTRON_KINDS},
        "br-ex": br_ex(lab),
    }
    if ns in lab.container.netns_list():
        devices = sh("ip", "-o", "link", "show", ns=lab.container.netns_path(ns)).stdout
        found["qg"] = [ln.split("link/ether ")[1].split()[0] for ln in devices.splitlines() if ": qg-" in ln]
        rules = sh("iptables-save", "-t", "nat", ns=lab.container.netns_path(ns)).stdout.splitlines()
        found["forwards"] = [ln.split(" [")[0] for ln in rules if CHAIN in ln]
    return found


def test_the_chain_back_to_back_as_the_engine_runs_it(lab):
    """Every row of the lab stack's table (`Lab.settings`: OpenStack already on the machine), each
    started the moment the one it runs after returned, its stdin as the program builds it (the ids
    external-gateway printed, parsed as the program parses them); then the next `up` as the engine
    sees it (the same command text and stdin per row: nothing runs), and apply again anyway
    (nothing changes); then every remove in reverse order, as `destroy` runs them (each with the
    command and stdin of its apply, as the engine stores them): nothing of the project is left.
    Each step's time goes into the lab summary."""
    # From a host with no router (the test above removed it) and, once the session's own upload row
    # has gone as a destroy takes it, nothing of the project at all.
    unload = lab.ssh(remote.unload(str(lab.prefix), str(lab.state)), check=False)
    assert unload.returncode == 0 and "removed" in unload.stderr, unload.stderr
    assert not [ns for ns in lab.container.netns_list() if ns.startswith("qrouter-")]
    empty = ours(lab, "none")
    assert empty["files"] == {} and empty["units"] == [] and empty["loaded units"] == []
    assert empty["neutron"] == {kind: [] for kind in NEUTRON_KINDS}

    rows = selected_steps(lab.stack)
    assert [r.name for r in rows] == [remote.UPLOAD, "external-gateway", "gateway-mac", "port-forwards"]
    assert [runs_after(r, rows) for r in rows] == [None, *rows[:-1]]  # one line: each waits for the one before
    scripts = host_scripts(lab.stack)

    def commands() -> dict[str, tuple[str, str]]:
        return {r.name: remote.texts(r.name, scripts, str(lab.prefix), str(lab.state)) for r in rows}

    def up(run: str) -> tuple[dict[str, tuple[str, str]], dict[str, object]]:
        """Each row's apply, as soon as the one before returned: (command, stdin) per row, and what
        external-gateway printed."""
        text = commands()
        emitted: dict[str, object] = {}
        sent: dict[str, tuple[str, str]] = {}
        for row in rows:
            stdin = remote.stdin(row.name, scripts, lab.row_params(row, emitted), str(lab.prefix))
            t = time.monotonic()
            p = lab.ssh(text[row.name][0], input=stdin, check=False, timeout=600)
            lab.timings[f"chain {run}: {row.name}"] = took = time.monotonic() - t
            print(f"chain {run}: {row.name} {took:.2f} s (exit {p.returncode})")
            assert p.returncode == 0, command_failure(text[row.name][0], p.returncode, p.stdout + p.stderr)
            sent[row.name] = (text[row.name][0], stdin)
            if row.emits:
                emitted |= parse_emitted(row, p.stdout)
        return sent, emitted

    first, emitted = up("up")
    router = emitted["router_id"]
    applied = ours(lab, router)
    assert applied["units"] and applied["forwards"] and applied["qg"] == [lab.settings.host.provider_mac]

    # The next `up`: each row's command text and stdin (the ids from the state's stdout) are what
    # they were, so the engine runs nothing; and running every apply again changes nothing.
    text = commands()
    assert {
        r.name: (text[r.name][0], remote.stdin(r.name, scripts, lab.row_params(r, emitted), str(lab.prefix)))
        for r in rows
    } == first
    again, emitted_again = up("again")
    assert again == first and emitted_again == emitted
    assert ours(lab, router) == applied

    for row in reversed(rows):
        t = time.monotonic()
        p = lab.ssh(text[row.name][1], input=first[row.name][1], check=False, timeout=600)
        lab.timings[f"chain destroy: {row.name}"] = took = time.monotonic() - t
        print(f"chain destroy: {row.name} {took:.2f} s (exit {p.returncode})")
        assert p.returncode == 0, command_failure(text[row.name][1], p.returncode, p.stdout + p.stderr)
    assert "removed" in p.stderr, p.stderr  # the upload row's remove, the last: nothing was kept
    left = ours(lab, router)
    assert left.pop("forwards", []) == []  # if the L3 agent has not deleted the namespace yet
    left.pop("qg", None)
    shown = {
        u: lab.ssh(
            f"systemctl show -p LoadState -p ActiveState -p SubState -p Result {u}; "
            f"journalctl -q -u {u} --output=short-precise | tail -n 20"
        ).stdout
        for u in left["loaded units"]
    }  # type: ignore[union-attr]
    assert left == empty, shown  # no file, unit or Neutron object; br-ex's MAC and pins as before
    wait_for(
        "the L3 agent to delete the router namespace", lambda: f"qrouter-{router}" not in lab.container.netns_list(), 60
    )
