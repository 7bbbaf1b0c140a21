"""external-gateway.sh against a stand-in `openstack` CLI (tests/fake_openstack.py): the named cloud
and clouds.yaml, what exists is used and kept, what is missing is created and later removed.
(The real Neutron objects: the lab's real-Neutron host, and AWS.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.test_steps import GATEWAY

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "onhost" / "steps" / "external-gateway.sh"
PARAMS = {k: v for k, v in GATEWAY.items() if k != "CLOUDS_YAML"}  # each test names its own clouds.yaml
EMPTY = {"networks": {}, "subnets": {}, "routers": {}}


class Cloud:
    def __init__(self, tmp: Path, state: dict):
        self.tmp = tmp
        bindir = tmp / "bin"
        bindir.mkdir()
        fake = ROOT / "tests" / "fake_openstack.py"
        (bindir / "openstack").write_text(f'#!/bin/sh\nexec {sys.executable} {fake} "$@"\n')
        (bindir / "openstack").chmod(0o755)
        self.clouds_yaml = tmp / "clouds.yaml"
        self.clouds_yaml.write_text("clouds: {}\n")
        self.state_file = tmp / "cloud.json"
        self.state_file.write_text(json.dumps(state))
        self.log = tmp / "calls.jsonl"
        self.log.touch()
        self.env = {"PATH": f"{bindir}:/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp / "state"),
                    "FAKE_OS_STATE": str(self.state_file), "FAKE_OS_LOG": str(self.log)}

    def run(self, action: str, **over: str) -> subprocess.CompletedProcess[str]:
        values = {**PARAMS, "CLOUDS_YAML": str(self.clouds_yaml), **over}
        stdin = "".join(f"{k}={v}\n" for k, v in values.items()) if action == "apply" else ""
        return subprocess.run(["bash", str(SCRIPT), action], input=stdin, env=self.env, capture_output=True,
                              text=True, check=False)

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def changes(self) -> list[list[str]]:
        """The calls that change the cloud (not show / list)."""
        return [c["args"] for c in self.calls() if c["args"][1] not in ("show", "list")]


def _ok(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]) if proc.stdout.strip() else {}


def test_devstack_cloud_from_scratch_apply_twice_and_remove(tmp_path):
    cloud = Cloud(tmp_path, EMPTY)
    out = _ok(cloud.run("apply"))
    state = cloud.state
    assert set(state["networks"]) == {"public", "private"}
    assert set(state["subnets"]) == {"public-subnet", "private-subnet"}
    assert state["subnets"]["public-subnet"]["pool"] == "start=10.42.2.10,end=10.42.2.11"
    router = state["routers"]["router1"]
    assert router["gateway"] == "10.42.2.10" and router["interfaces"] == [state["subnets"]["private-subnet"]["id"]]
    assert out == {"router_id": router["id"], "gateway_port_id": router["gateway_port"]}
    # every call as the named cloud of the named clouds.yaml
    assert {(c["cloud"], c["config"]) for c in cloud.calls()} == {("devstack-admin", str(cloud.clouds_yaml))}

    changes = len(cloud.changes())
    assert _ok(cloud.run("apply")) == out  # twice = once: nothing changes the second time
    assert len(cloud.changes()) == changes and cloud.state == state

    _ok(cloud.run("remove"))
    assert cloud.state == EMPTY
    assert not (tmp_path / "state" / "external-gateway").exists()


def test_an_existing_cloud_keeps_what_it_had(tmp_path):
    net_id, subnet_id, router_id = (str(uuid.uuid4()) for _ in range(3))
    before = {
        "networks": {"ext": {"id": net_id}},
        "subnets": {"ext-v4": {"id": subnet_id, "network": "ext", "cidr": "10.42.2.0/24", "pool": "theirs"}},
        "routers": {"edge": {"id": router_id, "gateway": None, "gateway_port": None, "interfaces": []}},
    }
    cloud = Cloud(tmp_path, before)
    out = _ok(cloud.run("apply", CLOUD="kolla-admin", EXTERNAL_NETWORK="ext", ROUTER="edge"))
    state = cloud.state
    assert set(state["networks"]) == {"ext", "private"} and set(state["subnets"]) == {"ext-v4", "private-subnet"}
    assert state["routers"]["edge"]["gateway"] == "10.42.2.10" and out["router_id"] == router_id
    set_gateway = next(a for a in cloud.changes() if a[:2] == ["router", "set"])
    assert f"subnet={subnet_id},ip-address=10.42.2.10" in set_gateway  # their subnet, found by network + CIDR
    assert not [a for a in cloud.changes() if a[1] == "create" and a[0] in ("router", "subnet") and "ext" in a[2]]
    assert {c["cloud"] for c in cloud.calls()} == {"kolla-admin"}

    _ok(cloud.run("remove"))
    assert cloud.state == before  # their network, subnet and router stay, as they were; ours are gone
    assert {c["cloud"] for c in cloud.calls()} == {"kolla-admin"}  # remove used the cloud apply had


def test_an_existing_router_with_another_gateway_is_not_taken_over(tmp_path):
    before = {
        "networks": {"public": {"id": "n-1"}},
        "subnets": {"public-subnet": {"id": "s-1", "network": "public", "cidr": "10.42.2.0/24", "pool": "x"}},
        "routers": {"router1": {"id": "r-1", "gateway": "10.42.2.99", "gateway_port": "p-1", "interfaces": []}},
    }
    cloud = Cloud(tmp_path, before)
    proc = cloud.run("apply")
    assert proc.returncode != 0
    assert "router router1 (not created by this step) has gateway IP 10.42.2.99" in proc.stderr
    assert cloud.state == before and cloud.changes() == []


@pytest.mark.parametrize("over", [{"CLOUDS_YAML": "/nonexistent/clouds.yaml"}])
def test_a_missing_clouds_yaml_stops_before_any_call(tmp_path, over):
    cloud = Cloud(tmp_path, EMPTY)
    proc = cloud.run("apply", **over)
    assert proc.returncode != 0 and "no /nonexistent/clouds.yaml" in proc.stderr
    assert cloud.calls() == [] and not (tmp_path / "state").exists()


def test_an_existing_network_without_the_subnet_gets_one_and_loses_only_it(tmp_path):
    before = {"networks": {"ext": {"id": str(uuid.uuid4())}}, "subnets": {}, "routers": {}}
    cloud = Cloud(tmp_path, before)
    _ok(cloud.run("apply", EXTERNAL_NETWORK="ext"))
    subnet = cloud.state["subnets"]["ext-subnet"]
    assert (subnet["network"], subnet["cidr"]) == ("ext", "10.42.2.0/24")
    assert subnet["pool"] == "start=10.42.2.10,end=10.42.2.11"  # the registered IPs only
    assert not [a for a in cloud.changes() if a[:2] == ["network", "create"] and a[2] == "ext"]
    applied = len(cloud.changes())
    _ok(cloud.run("remove"))
    assert cloud.state == before
    # their network stays, so the subnet made on it is deleted on its own; ours takes its subnet along
    deletes = [a for a in cloud.changes()[applied:] if a[:2] in (["subnet", "delete"], ["network", "delete"])]
    assert deletes == [["subnet", "delete", "ext-subnet"], ["network", "delete", "private"]]


def test_each_apply_starts_the_cli_as_few_times_as_it_can(tmp_path):
    """Each `openstack` call starts the CLI (1-2 s on a host, about half of external-gateway's time
    in the lab): one listing per kind, ids from what create prints, the router created with its
    gateway, the router's ports listed once. A step that goes back to a show per object fails here."""
    cloud = Cloud(tmp_path, EMPTY)
    _ok(cloud.run("apply"))
    verbs = [c["args"][:2] for c in cloud.calls()]
    assert sorted(verbs[:3]) == [["network", "list"], ["router", "list"], ["subnet", "list"]]  # side by side
    # the external side and the tenant side overlap: their calls interleave, each side in its order
    names = [" ".join(c["args"][:3]) for c in cloud.calls()[3:]]
    external = ["network create public", "subnet create public-subnet", "router create router1"]
    tenant = ["network create private", "subnet create private-subnet"]
    assert [n for n in names if n in external] == external and [n for n in names if n in tenant] == tenant
    assert sorted(names[5:]) == ["port list --router", "router add subnet"]  # once both sides are made
    (router_create,) = [c["args"] for c in cloud.calls() if c["args"][:2] == ["router", "create"]]
    assert "--external-gateway" in router_create and "--fixed-ip" in router_create  # the router with its gateway
    first = len(cloud.calls())
    _ok(cloud.run("apply"))  # all there: the three listings and the router's ports
    assert len(cloud.calls()) - first == 4
    second = len(cloud.calls())
    _ok(cloud.run("remove"))  # the interface, the router, then the networks in one call (their subnets go with them)
    # (the two sides were made side by side: the order of names within a kind's call may vary)
    assert [c["args"][:2] + sorted(c["args"][2:]) for c in cloud.calls()[second:]] == [
        ["router", "remove", "private-subnet", "router1", "subnet"], ["router", "delete", "router1"],
        ["network", "delete", "private", "public"],
    ]
    assert cloud.calls()[second]["args"] == ["router", "remove", "subnet", "router1", "private-subnet"]
    assert cloud.state == EMPTY


def test_the_three_listings_run_side_by_side(tmp_path):
    """The listings are reads: they start together, so apply pays one CLI start-up for the three
    (the real CLI's is ~1 s, FAKE_OS_STARTUP stands for it), not three in a row."""
    cloud = Cloud(tmp_path, EMPTY)
    cloud.env["FAKE_OS_STARTUP"] = "0.5"
    _ok(cloud.run("apply"))
    listings = [c for c in cloud.calls() if c["args"][1] == "list" and c["args"][0] != "port"]
    assert len(listings) == 3
    assert max(c["started"] for c in listings) < min(c["ended"] for c in listings), "the listings ran one after another"


def test_the_tenant_side_is_made_beside_the_external_side(tmp_path):
    """From scratch: the tenant network's creates overlap the external side's, and the new tenant
    subnet is attached while the router's ports are listed (FAKE_OS_STARTUP stands for the CLI's
    start-up): 5 rounds of start-ups, not 8, after the listings."""
    cloud = Cloud(tmp_path, EMPTY)
    cloud.env["FAKE_OS_STARTUP"] = "0.4"
    _ok(cloud.run("apply"))
    calls = cloud.calls()[3:]

    def span(*names: str) -> tuple[float, float]:
        (c,) = [c for c in calls if " ".join(c["args"][:3]) in names]
        return c["started"], c["ended"]

    def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] < b[1] and b[0] < a[1]

    assert overlap(span("network create private"), span("network create public"))
    assert overlap(span("subnet create private-subnet"), span("subnet create public-subnet"))
    assert overlap(span("router add subnet"), span("port list --router"))
    rounds = 1
    for prev, cur in zip(calls, calls[1:], strict=False):
        rounds += cur["started"] >= prev["ended"]
    assert rounds <= 5, rounds


def test_a_wrong_cloud_stops_the_other_listings_and_leaves_no_state(tmp_path):
    """The cloud's probe (the network listing) fails: apply stops before saving anything and the
    listings started beside it do not outlive it."""
    cloud = Cloud(tmp_path, EMPTY)
    cloud.env["FAKE_OS_STARTUP"] = "2"
    cloud.env["FAKE_OS_FAIL"] = "network list"
    proc = cloud.run("apply")
    assert proc.returncode != 0 and "cloud devstack-admin of" in proc.stderr, proc.stderr
    assert not (tmp_path / "state").exists()
    pids = [int(p) for p in Path(f"{cloud.state_file}.pids").read_text().split()]
    assert pids  # the probe ran (a listing killed before its start-up wrote nothing)

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def running() -> list[int]:
        return [p for p in pids if alive(p)]

    for _ in range(20):  # killed as apply stopped: gone within moments, not after their 2 s
        if not running():
            break
        time.sleep(0.05)
    assert running() == []


def test_a_name_that_several_objects_share_stops_apply_before_any_change(tmp_path):
    before = {
        "networks": {"private": {"id": str(uuid.uuid4())}, "private-2": {"id": str(uuid.uuid4()), "name": "private"}},
        "subnets": {},
        "routers": {},
    }
    cloud = Cloud(tmp_path, before)
    proc = cloud.run("apply")
    assert proc.returncode != 0
    assert "more than one network is named private" in proc.stderr
    assert cloud.state == before and cloud.changes() == []


def test_a_tenant_subnet_with_another_cidr_is_not_used(tmp_path):
    before = {
        "networks": {"private": {"id": str(uuid.uuid4())}},
        "subnets": {"private-subnet": {"id": str(uuid.uuid4()), "network": "private", "cidr": "10.9.0.0/24",
                                       "pool": "x"}},
        "routers": {},
    }
    cloud = Cloud(tmp_path, before)
    proc = cloud.run("apply")
    assert proc.returncode != 0
    assert "subnet private-subnet exists with 10.9.0.0/24, not 192.168.100.0/24" in proc.stderr
    assert cloud.state == before and cloud.changes() == []
