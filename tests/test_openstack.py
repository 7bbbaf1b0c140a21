"""The remote step chain under Pulumi mocks: order, options, secrets, what a forward change touches."""

from __future__ import annotations

import base64
import json
import re

import pytest
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from onhost.chain import STEPS, chain_for, scripts_of
from onhost.remote import UPLOAD, UPLOAD_COMMAND, command, texts, upload
from tests import harness
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
    first = run.depends_on("dev-scripts")
    assert {"dev-instance", "dev-provider-attachment", "dev-management-eip"} <= first
    assert "dev-scripts" in run.depends_on("dev-prepare-host")


def _reaches(run, name: str, target: str) -> bool:
    """`name` depends on `target`, directly or through what it depends on."""
    seen, todo = set(), [name]
    while todo:
        for dep in run.depends_on(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return target in seen


@pytest.mark.parametrize("config", [{}, {"computeNodes": {"count": 1}, "elasticIpQuota": 10}], ids=["alone", "nodes"])
def test_every_step_runs_after_the_upload_and_is_deleted_before_it(config):
    """Pulumi creates a resource after what it depends on and deletes it before: every step's
    stored remove runs the installed scripts, so the upload row is the last delete on its host (the
    controller's steps of the compute nodes too; each node's steps run after the node's own row)."""
    run = run_program(config)
    steps = [r.name for r in run.of_type(CMD)]
    for name in steps:
        if name.startswith("dev-compute-") and not name.endswith("-compute-record"):
            node = name[: len("dev-compute-0")]
            assert name == f"{node}-scripts" or _reaches(run, name, f"{node}-scripts"), name
        if name != "dev-scripts":
            assert _reaches(run, name, "dev-scripts"), name
    assert not run.one("dev-scripts").delete_before_replace  # a new machine: its scripts first, then the steps'


def test_the_upload_row_installs_the_chains_scripts_and_the_steps_call_them(run):
    """The upload row's stdin holds lib.sh and every script of the chain, its command is one constant
    line; each step's is one short line."""
    chain = scripts_of(s.name for s in chain_for("devstack", {"smokeTest"}))
    scripts = run.one("dev-scripts")
    assert scripts.inputs["create"] == scripts.inputs["update"] == UPLOAD_COMMAND
    assert scripts.inputs["stdin"] == upload(chain) and scripts.custom_timeouts["create"] == "30m"
    for r in run.of_type(CMD):
        if r.name != "dev-scripts":
            assert len(r.inputs["create"]) <= 300 and len(r.inputs["delete"]) <= 300, r.name
            assert "\n" not in r.inputs["create"] + r.inputs["delete"], r.name


def test_parented_to_the_component(run):
    (component,) = run.of_type("openstack-on-aws:openstack:OpenStack")
    parent = [u for u, n in run.urns.items() if n == component.name and "OpenStack" in u][0]
    assert all(r.parent == parent for r in run.of_type(CMD))


def test_step_options(run):
    instance_urn = [u for u, n in run.urns.items() if n == "dev-instance"][0]
    scripts = scripts_of(STEPS)
    for r in run.of_type(CMD):
        step = r.name.removeprefix("dev-")
        assert r.delete_before_replace == (step != UPLOAD), step
        assert r.deleted_with == instance_urn, step
        apply, remove = texts(step, scripts)
        assert r.inputs["create"] == r.inputs["update"] == apply
        assert r.inputs["delete"] == remove
        assert step == UPLOAD or apply == command(step, "apply")
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
        "scripts": {"create": "30m", "update": "30m", "delete": "15m"},
        "prepare-host": {"create": "30m", "update": "30m", "delete": "15m"},
        "install-openstack": {"create": "90m", "update": "90m", "delete": "30m"},
        "external-gateway": short,
        "gateway-mac": short,
        "port-forwards": short,
        "smoke": {"create": "25m", "update": "25m", "delete": "15m"},
        "tls-front": {"create": "10m", "update": "10m", "delete": "15m"},
        "public-endpoints": short,
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
                # A PEM private key (the tls-front script only names the armour in a pattern).
                assert secret not in text and not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text), (r.name, key)
                assert not any(k.strip() in text for k in harness.SECRET_TLS_KEYS.values()), (r.name, key)
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
    assert run.outputs["keystoneAuthUrl"] == f"https://{ip}/identity/v3"
    assert run.outputs["horizonUrl"] == f"https://{ip}/dashboard"
    assert f"auth_url: https://{ip}/identity/v3" in run.outputs["cloudsYaml"]
    # A consumer's clouds.yaml: the catalog's public interface, verified against the stack's CA.
    assert "    interface: public\n    cacert: openstack-on-aws-ca.pem\n    verify: true\n" in run.outputs["cloudsYaml"]
    assert run.outputs["caCertificate"] == harness.MOCK_CA_PEM
    assert "caCertificate" not in run.secret_outputs and "cloudsYaml" in run.secret_outputs


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_tls_front_step_installs_the_stacks_certificate_as_a_secret(run):
    """tls-front runs after DevStack with the Tls component's PEMs (base64) on a secret stdin; its
    stdout/stderr are secret too; the certificate names the management Elastic IP."""
    front = run.one("dev-tls-front")
    assert is_rpc_secret(front.inputs["stdin"])
    assert {"stdout", "stderr"} <= set(front.additional_secret_outputs)
    stdin = unwrap_rpc_secret(front.inputs["stdin"])
    ip = run.outputs["managementPublicIp"]
    server_key = next(v for k, v in harness.SECRET_TLS_KEYS.items() if k == "-server-key")
    assert f"PUBLIC_ADDRESS={ip}\n" in stdin and "DNS_NAME=\n" in stdin
    assert f"SERVER_KEY={_b64(server_key)}\n" in stdin
    assert f"SERVER_CERT={_b64(harness.MOCK_SERVER_PEM)}\n" in stdin
    assert f"CA_CERT={_b64(harness.MOCK_CA_PEM)}\n" in stdin
    assert "dev-install-openstack" in run.depends_on("dev-tls-front")
    assert "dev-tls-front" in run.depends_on("dev-external-gateway")
    request = run.one("dev-server-request")
    assert request.inputs["ipAddresses"] == [ip] and request.inputs.get("dnsNames", []) == []
    assert "Tls" in run.one("dev-server").parent and "Tls" in request.parent


def test_public_endpoints_runs_before_smoke_with_the_public_base_url(run):
    endpoints = run.one("dev-public-endpoints")
    ip = run.outputs["managementPublicIp"]
    assert endpoints.inputs["stdin"] == f"PUBLIC_BASE_URL=https://{ip}\nBACKEND_HOST=10.42.1.10\n"
    assert [r.name for r in run.of_type(CMD)][-2:] == ["dev-public-endpoints", "dev-smoke"]
    assert "dev-port-forwards" in run.depends_on("dev-public-endpoints")
    assert "dev-public-endpoints" in run.depends_on("dev-smoke")
    # DevStack's noVNC links: the same public base URL fills local.conf's placeholder on the host
    install = unwrap_rpc_secret(run.one("dev-install-openstack").inputs["stdin"])
    assert f"PUBLIC_BASE_URL=https://{ip}\n" in install


def test_a_dns_name_goes_into_the_certificate_and_the_urls():
    run = run_program({"publicDnsName": "cloud.example.org"})
    assert run.one("dev-server-request").inputs["dnsNames"] == ["cloud.example.org"]
    assert run.outputs["keystoneAuthUrl"] == "https://cloud.example.org/identity/v3"
    assert run.outputs["horizonUrl"] == "https://cloud.example.org/dashboard"
    assert "DNS_NAME=cloud.example.org\n" in unwrap_rpc_secret(run.one("dev-tls-front").inputs["stdin"])
    assert "PUBLIC_BASE_URL=https://cloud.example.org\n" in run.one("dev-public-endpoints").inputs["stdin"]
