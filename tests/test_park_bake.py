"""Park, spot and the baked image under Pulumi's mocks (docs/park-and-bake.md): the resources and
options each key makes, the outputs, and what `preview` refuses while parked, by key.

A parked stack's later updates are run as the engine runs them: the running-config record is
registered with its keepers ignored, so the engine hands back what the last unparked update
recorded (`harness.run_program(prior=...)`).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from config.lifecycle import PARK_FREE_KEYS, STEPS_RAN, STEPS_TEXT, fingerprint, park_problems
from config.settings import Settings, SettingsError, load_settings
from tests import harness
from tests.test_compute import M8I, graph, snapshot

STATE = "aws:ec2transitgateway/instanceState:InstanceState"
IMAGE = "aws:ec2/amiFromInstance:AmiFromInstance"
INSTANCE = "aws:ec2/instance:Instance"
CMD = "command:remote:Command"
RECORD = "dev-running-config"
NODES = {"computeNodes": {"count": 1}, "elasticIpQuota": 10}
PASSWORD = "AdminPassword-123456"
FORWARD = {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}


def run(config: dict[str, Any] | None = None, prior: harness.Result | None = None) -> harness.Result:
    """The program with `config` (and the admin password as a secret); `prior`: the run whose
    record the engine holds (its last unparked update)."""
    state = None
    if prior is not None:
        state = {RECORD: {"keepers": harness.reveal(prior.one(RECORD).inputs["keepers"])}}
    full = {"adminPassword": PASSWORD, **(config or {})}
    return harness.run_program(full, secret_keys=["adminPassword"], prior=state)


@pytest.fixture(scope="module")
def running() -> harness.Result:
    return run(NODES)


@pytest.fixture(scope="module")
def parked(running) -> harness.Result:
    return run({**NODES, "parked": True}, prior=running)


def refusal(config: dict[str, Any], prior: harness.Result | None) -> str:
    """The error the program stops with."""
    with pytest.raises(pulumi.RunError) as err:
        run(config, prior)
    return str(err.value)


# ---- park: the power state of every instance -----------------------------------------------


def test_every_instance_has_a_power_state_running_by_default(running):
    states = {r.name: r for r in running.of_type(STATE)}
    assert set(states) == {"dev-instance-state", "dev-compute-0-instance-state"}
    for name, r in states.items():
        instance = name.removesuffix("-state")
        assert r.inputs == {"instanceId": f"{instance}-id", "state": "running"}
        assert running.one(instance).type == INSTANCE
        assert r.parent == running.one(instance).parent  # the Host / ComputeNode component
    assert running.outputs["hostState"] == "running" and "hostState" not in running.secret_outputs


def test_the_steps_wait_for_the_power_state(running):
    # A resume starts the machines before any step dials them.
    assert "dev-instance-state" in running.depends_on("dev-scripts")
    # a node's first step (its scripts' upload) waits for the node too
    assert "dev-compute-0-instance-state" in running.depends_on("dev-compute-0-scripts")


def test_parked_stops_every_instance_and_says_so(parked):
    assert {r.name: r.inputs["state"] for r in parked.of_type(STATE)} == {
        "dev-instance-state": "stopped",
        "dev-compute-0-instance-state": "stopped",
    }
    assert parked.outputs["hostState"] == "parked" and "hostState" not in parked.secret_outputs


def test_parked_registers_every_step_exactly_as_the_running_stack_did(running, parked):
    """No step changes, so the engine runs none of them (no SSH to a stopped host)."""
    steps = {r.name for r in running.of_type(CMD)}
    assert steps and {r.name for r in parked.of_type(CMD)} == steps
    before, after = graph(running), graph(parked)
    for name in steps:
        # dependencies are no input (no diff): the connections also wait for the park check (the record)
        old, new = before[name].pop("dependencies"), after[name].pop("dependencies")
        # and what changes without a config change waits for the resume
        assert before[name].pop("ignore_changes") == []
        assert after[name].pop("ignore_changes") == ["connection", "create", "update", "delete", "stdin", "triggers"]
        assert after[name] == before[name], name
        assert set(new) - set(old) <= {RECORD}, name
    # the machines, their disks and addresses are left as they are too
    for r in running.resources:
        if r.type in (INSTANCE, "aws:ec2/eip:Eip", "aws:ec2/networkInterface:NetworkInterface"):
            assert snapshot(parked.one(r.name), parked) == snapshot(r, running), r.name


def test_the_record_keeps_the_running_config_secret_and_is_frozen_while_parked(running, parked):
    record = running.one(RECORD)
    assert record.type == "random:index/randomId:RandomId"
    assert record.ignore_changes == [] and parked.one(RECORD).ignore_changes == ["keepers"]
    assert "keepers" in record.additional_secret_outputs
    assert harness.is_rpc_secret(record.inputs["keepers"])
    keepers = harness.reveal(record.inputs["keepers"])
    assert keepers[STEPS_RAN] == "yes" and STEPS_TEXT in keepers
    assert "openstack-on-aws:adminPassword" in keepers
    assert PASSWORD not in str(keepers)  # digests only
    assert not {f"openstack-on-aws:{k}" for k in PARK_FREE_KEYS} & set(keepers)


@pytest.mark.parametrize(
    "change,key",
    [
        ({"portForwards": [FORWARD]}, "openstack-on-aws:portForwards"),
        ({"adminPassword": "AnotherPassword-1234"}, "openstack-on-aws:adminPassword"),
        ({"spot": True}, "openstack-on-aws:spot"),
        ({"computeNodes": {"count": 2}}, "openstack-on-aws:computeNodes"),
    ],
)
def test_a_change_while_parked_is_refused_by_key_before_any_step(running, change, key):
    message = refusal({**NODES, "parked": True, **change}, prior=running)
    assert "openstack-on-aws:parked: the stack is parked (its instances stopped) and these changed " in message
    assert f"since it last ran: {key}. " in message
    assert PASSWORD not in message and "AnotherPassword" not in message


def test_a_change_in_the_update_that_parks_is_refused_too(running):
    # The record holds the last unparked config: parking and changing at once is one refused update.
    message = refusal({**NODES, "parked": True, "floatingIpCount": 2}, prior=running)
    assert "these changed since it last ran: openstack-on-aws:floatingIpCount." in message


def test_a_refused_update_registers_no_step(running, monkeypatch):
    steps: list[str] = []
    original = harness.RecordingMonitor.RegisterResource

    def spy(self, request):
        if request.type == CMD:
            steps.append(request.name)
        return original(self, request)

    monkeypatch.setattr(harness.RecordingMonitor, "RegisterResource", spy)
    refusal({**NODES, "parked": True, "floatingIpCount": 2}, prior=running)
    assert steps == []  # the steps' connections wait for the check that failed


def test_parking_a_stack_that_never_ran_its_steps_is_refused():
    message = refusal({"parked": True}, prior=None)
    assert "openstack-on-aws:parked: this stack has not run its steps with parked false yet" in message


def test_the_keys_free_while_parked_are_accepted(running):
    # The quota keys change nothing on a machine; bakeImage images the stopped controller.
    result = run({**NODES, "parked": True, "elasticIpQuota": 20, "securityGroupRuleQuota": 100}, prior=running)
    assert result.outputs["hostState"] == "parked"


def test_the_steps_scripts_are_part_of_the_record(running, monkeypatch):
    import components.host as host

    monkeypatch.setattr(host, "steps_digest", lambda: "another-version")
    message = refusal({**NODES, "parked": True}, prior=running)
    assert "the steps' scripts (another version of this program)" in message


def test_resuming_may_change_the_config_and_the_steps_run_after_the_start(running):
    result = run({**NODES, "floatingIpCount": 2}, prior=running)
    assert result.one("dev-instance-state").inputs["state"] == "running"
    assert result.outputs["hostState"] == "running"
    assert "dev-instance-state" in result.depends_on("dev-scripts")


# ---- park: the config ----------------------------------------------------------------------


def test_park_problems_names_each_changed_key_and_the_first_run():
    base = {"openstack-on-aws:a": "1", "openstack-on-aws:b": "2", STEPS_TEXT: "x", STEPS_RAN: "yes"}
    assert park_problems(base, {**base, STEPS_RAN: "no"}) == []
    (problem,) = park_problems(base, {**base, "openstack-on-aws:b": "3", "openstack-on-aws:c": "4"})
    assert "since it last ran: openstack-on-aws:b, openstack-on-aws:c. " in problem
    (never,) = park_problems({**base, STEPS_RAN: "no"}, base)
    assert never.startswith("openstack-on-aws:parked: this stack has not run its steps")


def test_the_fingerprint_covers_defaults_and_secrets_but_not_the_park_keys():
    one = load_settings(harness.config_strings({**harness.BASE_CONFIG, "adminPassword": PASSWORD}))
    two = load_settings(harness.config_strings({**harness.BASE_CONFIG, "adminPassword": PASSWORD + "x"}))
    a, b = fingerprint(one), fingerprint(two)
    assert {k for k in a if a[k] != b.get(k)} == {"openstack-on-aws:adminPassword"}
    assert "openstack-on-aws:instanceType" in a  # a default, digested too
    assert set(a) == {k for k in a if k.split(":")[-1] not in PARK_FREE_KEYS}
    assert PASSWORD not in str(a)
    parked = load_settings(harness.config_strings({**harness.BASE_CONFIG, "adminPassword": PASSWORD, "parked": True}))
    assert fingerprint(parked) == a


# ---- spot ------------------------------------------------------------------------------------


def test_spot_makes_every_instance_a_persistent_spot_instance_that_stops(running):
    spot = run({**NODES, "spot": True})
    market = {"marketType": "spot", "spotOptions": {"instanceInterruptionBehavior": "stop",
                                                    "spotInstanceType": "persistent"}}
    for r in spot.of_type(INSTANCE):
        assert r.inputs["instanceMarketOptions"] == market, r.name
    for r in running.of_type(INSTANCE):
        assert "instanceMarketOptions" not in r.inputs, r.name
    (warning,) = [w for w in spot.warnings if w.startswith("openstack-on-aws:spot: ")]
    assert "the controller and 1 compute node run as persistent spot instances" in warning
    assert "stack.sh does not run again" in warning and "replaces the instances" in warning
    assert not [w for w in running.warnings if "spot" in w]
    alone = load_settings(harness.config_strings({**harness.BASE_CONFIG, "spot": True}))
    assert alone.warnings()[-1].startswith("openstack-on-aws:spot: the controller runs as persistent spot")


# ---- the baked image -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baked() -> harness.Result:
    return run({"bakeImage": True})


def test_bake_image_makes_an_ami_of_the_controller_after_the_smoke_step(baked):
    (image,) = baked.of_type(IMAGE)
    assert image.name == "dev-baked-image"
    assert image.inputs["sourceInstanceId"] == "dev-instance-id"
    assert image.inputs["name"] == "openstack-on-aws-dev-dev-instance-id"
    assert baked.depends_on("dev-baked-image") >= {"dev-smoke", "dev-instance-state"}
    assert image.custom_timeouts["create"] == "90m"
    assert "host:Host" in image.parent
    assert baked.outputs["bakedImageId"] == "dev-baked-image-id" and "bakedImageId" not in baked.secret_outputs


def test_no_image_and_no_output_without_the_key(running):
    assert running.of_type(IMAGE) == [] and "bakedImageId" not in running.outputs


def test_bake_image_while_parked_images_the_stopped_controller():
    first = run({"portForwards": [FORWARD]})
    result = run({"portForwards": [FORWARD], "parked": True, "bakeImage": True}, prior=first)
    assert result.one("dev-instance-state").inputs["state"] == "stopped"
    assert "dev-instance-state" in result.depends_on("dev-baked-image")


# ---- refusals by key -------------------------------------------------------------------------


def problems(**keys: Any) -> list[str]:
    with pytest.raises(SettingsError) as err:
        load_settings(harness.config_strings({**harness.BASE_CONFIG, **keys}), lambda t: M8I)
    return err.value.problems


def test_bake_image_needs_the_smoke_test_naming_both_keys():
    (problem,) = problems(bakeImage=True, smokeTest=False)
    assert problem.startswith("openstack-on-aws:bakeImage: needs openstack-on-aws:smokeTest true")


def test_bake_image_refuses_compute_nodes_naming_both_keys():
    (problem,) = problems(bakeImage=True, computeNodes={"count": 1}, elasticIpQuota=10)
    assert problem.startswith("openstack-on-aws:bakeImage: the image holds the controller only")
    assert "openstack-on-aws:computeNodes.count is 1" in problem


@pytest.mark.parametrize("name", ["parked", "spot", "bakeImage"])
def test_each_key_takes_a_boolean_only(name):
    (problem,) = problems(**{name: "sometimes"})
    assert problem.startswith(f"openstack-on-aws:{name}: ")


def test_the_defaults_change_nothing():
    s = Settings(allowed_cidrs=["203.0.113.0/24"])
    assert (s.parked, s.spot, s.bake_image) == (False, False, False)
    assert s.lifecycle_problems(True, 0) == [] and s.lifecycle_warnings(0) == []
