"""The remote step chain under Pulumi mocks: order, options, secrets, what a forward change touches."""

from __future__ import annotations

import json

import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from onhost.chain import STEPS
from onhost.remote import command
from tests.harness import MOCK_ADMIN_PASSWORD, MOCK_ROUTER_ID, SECRET_PRIVATE_KEY, run_program, strings

CMD = "command:remote:Command"
USER_PASSWORD = "User-Chosen-Passw0rd"


@pytest.fixture(scope="module")
def run():
    return run_program()


def test_chain_order_and_dependencies(run):
    names = [r.name for r in run.of_type(CMD)]
    assert names == [f"dev-{s}" for s in STEPS]
    for before, after in zip(STEPS, STEPS[1:], strict=False):
        assert f"dev-{before}" in run.depends_on(f"dev-{after}")
    first = run.depends_on("dev-prepare-host")
    assert {"dev-instance", "dev-provider-attachment", "dev-management-eip"} <= first


def test_parented_to_the_component(run):
    (component,) = run.of_type("openstack-on-aws:openstack:OpenStack")
    parent = [u for u, n in run.urns.items() if n == component.name and "OpenStack" in u][0]
    assert all(r.parent == parent for r in run.of_type(CMD))


def test_step_options(run):
    instance_urn = [u for u, n in run.urns.items() if n == "dev-instance"][0]
    for r in run.of_type(CMD):
        step = r.name.removeprefix("dev-")
        assert r.delete_before_replace, step
        assert r.deleted_with == instance_urn, step
        assert r.inputs["create"] == command(step, "apply")
        assert r.inputs["update"] == command(step, "apply")
        assert r.inputs["delete"] == command(step, "remove")
        assert r.inputs["addPreviousOutputInEnv"] is False
        assert is_rpc_secret(r.inputs["connection"]), step  # it holds the private key
        conn = unwrap_rpc_secret(r.inputs["connection"])
        assert conn["user"] == "ubuntu"
        assert conn["dialErrorLimit"] >= 60 and conn["perDialTimeout"] >= 15
    install = run.one("dev-install-openstack")
    assert {"stdout", "stderr"} <= set(install.additional_secret_outputs)


def test_step_timeouts(run):
    """DevStack's install gets 90 minutes, preparing the host 30, the networking steps 15."""
    timeouts = {r.name.removeprefix("dev-"): r.custom_timeouts for r in run.of_type(CMD)}
    short = {"create": "15m", "update": "15m", "delete": "15m"}
    assert timeouts == {
        "prepare-host": {"create": "30m", "update": "30m", "delete": "15m"},
        "install-openstack": {"create": "90m", "update": "90m", "delete": "30m"},
        "external-gateway": short,
        "gateway-mac": short,
        "port-forwards": short,
        "smoke": {"create": "25m", "update": "25m", "delete": "15m"},
    }


def test_gateway_ids_flow_from_external_gateway_json(run):
    mac = run.one("dev-gateway-mac").inputs["stdin"]
    fwd = run.one("dev-port-forwards").inputs["stdin"]
    assert f"ROUTER_ID={MOCK_ROUTER_ID}\n" in mac and "GATEWAY_PORT_ID=a3b2c1d0-" in mac
    assert "EXTERNAL_BRIDGE=br-ex\n" in mac and "VPC_GATEWAY_IP=10.42.2.1\n" in mac
    provider_mac = run.outputs["providerMac"]
    assert f"PROVIDER_MAC={provider_mac}\n" in mac
    assert f"ROUTER_ID={MOCK_ROUTER_ID}\n" in fwd and "GATEWAY_IP=10.42.2.10\n" in fwd
    assert run.outputs["routerId"] == MOCK_ROUTER_ID


@pytest.mark.parametrize(
    "config,secret", [({}, MOCK_ADMIN_PASSWORD), ({"adminPassword": USER_PASSWORD}, USER_PASSWORD)]
)
def test_secrets_only_on_stdin(config, secret):
    run = run_program(config, secret_keys=list(config))
    seen_on_stdin = False
    for r in run.of_type(CMD):
        for key in ("create", "update", "delete", "environment", "triggers"):
            for _, text in strings(r.inputs.get(key)):
                assert secret not in text and "PRIVATE KEY" not in text, (r.name, key)
        if f"ADMIN_PASSWORD={secret}\n" in unwrap_rpc_secret(r.inputs["stdin"]):
            seen_on_stdin = True
            assert is_rpc_secret(r.inputs["stdin"]), r.name
        assert unwrap_rpc_secret(r.inputs["connection"])["privateKey"] == SECRET_PRIVATE_KEY
        assert "environment" not in r.inputs
    assert seen_on_stdin
    assert {"adminPassword", "cloudsYaml"} <= run.secret_outputs
    assert "routerId" not in run.secret_outputs
    assert f"password: {secret}" in run.outputs["cloudsYaml"]


def test_generated_password_has_no_special_characters(run):
    (pw,) = run.of_type("random:index/randomPassword:RandomPassword")
    assert pw.inputs["special"] is False and pw.inputs["length"] >= 16
    assert "openstack-on-aws:openstack:OpenStack" in pw.parent


def test_a_given_password_generates_none():
    run = run_program({"adminPassword": "Given_password-123"}, secret_keys=["adminPassword"])
    assert not run.of_type("random:index/randomPassword:RandomPassword")


def test_changing_only_the_forwards_changes_only_port_forwards():
    forwards = [{"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}]
    a = run_program({"portForwards": forwards})
    b = run_program(
        {
            "portForwards": [
                *forwards,
                {"protocol": "udp", "publicPort": 5000, "tenantIp": "192.168.100.11", "tenantPort": 53},
            ]
        }
    )
    changed = [
        r.name
        for r in a.of_type(CMD)
        if json.dumps(r.inputs, sort_keys=True) != json.dumps(b.one(r.name).inputs, sort_keys=True)
    ]
    assert changed == ["dev-port-forwards"]
    assert (
        "FORWARDS=tcp:522:192.168.100.10:22,udp:5000:192.168.100.11:53\n" in b.one("dev-port-forwards").inputs["stdin"]
    )


def test_outputs(run):
    ip = run.outputs["managementPublicIp"]
    assert run.outputs["keystoneAuthUrl"] == f"http://{ip}/identity/v3"
    assert run.outputs["horizonUrl"] == f"http://{ip}/dashboard"
    assert f"auth_url: http://{ip}/identity/v3" in run.outputs["cloudsYaml"]
