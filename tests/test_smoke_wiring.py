"""The `smoke` step in the program (under mocks): where it sits, what it gets, when it re-runs."""

from __future__ import annotations

import json

from onhost.chain import PROBE_URL
from onhost.remote import command, upload
from tests.harness import MOCK_ROUTER_ID, run_program

CMD = "command:remote:Command"
FWD = {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.20", "tenantPort": 22}


def test_smoke_runs_last_after_port_forwards_with_its_parameters():
    run = run_program({"portForwards": [FWD]})
    names = [r.name for r in run.of_type(CMD)]
    # public-endpoints between them: smoke proves the cloud with the catalog moved (onhost/chain.py)
    assert names[-3:] == ["dev-port-forwards", "dev-public-endpoints", "dev-smoke"]
    assert "dev-public-endpoints" in run.depends_on("dev-smoke")
    smoke = run.one("dev-smoke")
    assert smoke.inputs["create"] == command("smoke", "apply") and smoke.inputs["delete"] == command("smoke", "remove")
    stdin = smoke.inputs["stdin"]
    for line in (f"ROUTER_ID={MOCK_ROUTER_ID}", "TENANT_NETWORK=private", "TENANT_IP=192.168.100.20",
                 "VPC_GATEWAY_IP=10.42.2.1", f"PROBE_URL={PROBE_URL}",
                 f"EXPECTED_PUBLIC_IP={run.outputs['providerPublicIp']}"):
        assert f"{line}\n" in stdin, line
    assert smoke.custom_timeouts["create"] == "25m"
    # A new instance, or a re-run of gateway-mac or port-forwards (their stdout), re-runs it.
    assert smoke.inputs["triggers"][0] == "dev-instance-id" and len(smoke.inputs["triggers"]) == 3


def test_without_forwards_neutron_chooses_the_address():
    stdin = run_program().one("dev-smoke").inputs["stdin"]
    assert "TENANT_IP=\n" in stdin


def test_smoke_test_off_registers_no_smoke_step_and_changes_nothing_else():
    on = run_program({"portForwards": [FWD]})
    off = run_program({"portForwards": [FWD], "smokeTest": False})
    assert [r.name for r in off.of_type(CMD)] == [r.name for r in on.of_type(CMD) if r.name != "dev-smoke"]
    # but what the upload row installs: smoke.sh is not among them
    steps = [r.name.removeprefix("dev-") for r in off.of_type(CMD)][1:]
    assert off.one("dev-scripts").inputs["stdin"] == upload(steps)
    assert on.one("dev-scripts").inputs["stdin"] == upload([*steps, "smoke"])
    for r in off.of_type(CMD)[1:]:
        assert json.dumps(r.inputs, sort_keys=True) == json.dumps(on.one(r.name).inputs, sort_keys=True), r.name


def test_an_unchanged_stack_gives_the_smoke_step_identical_inputs():
    """No timestamp or random trigger: a no-change preview shows no change for it."""
    a = run_program({"portForwards": [FWD]}).one("dev-smoke")
    b = run_program({"portForwards": [FWD]}).one("dev-smoke")
    assert json.dumps(a.inputs, sort_keys=True) == json.dumps(b.inputs, sort_keys=True)


def test_render_leaves_smoke_out_when_it_is_off(tmp_path):
    import sys

    from tests.harness import ROOT

    sys.path.insert(0, str(ROOT / "tools"))
    import render

    (tmp_path / "Pulumi.off.yaml").write_text(
        "config:\n  openstack-on-aws:allowedCidrs: ['203.0.113.0/24']\n  openstack-on-aws:smokeTest: false\n")
    written = render.render("off", tmp_path / "out", root=tmp_path)
    assert written and not any(p.parent.name.endswith("-smoke") for p in written)
    (tmp_path / "Pulumi.on.yaml").write_text("config:\n  openstack-on-aws:allowedCidrs: ['203.0.113.0/24']\n")
    assert any(p.parent.name == "9-smoke" for p in render.render("on", tmp_path / "out2", root=tmp_path))
