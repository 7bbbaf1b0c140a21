"""The policy pack (policy/): each policy with a passing and a violating resource, the program itself.

Resources reach the policies the way the engine sends them: an `AnalyzeRequest` (protobuf) handed
to pulumi-policy's own analyzer servicer, so its deserialization, unknown and secret handling and
violation reporting are the real ones. Secrets are wrapped as the engine wraps them (signature
objects), and the stack's config reaches the pack as the engine passes it (PULUMI_CONFIG).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pulumi
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY
from pulumi_policy.policy import _PolicyAnalyzerServicer

from onhost import compute_chain, remote
from onhost.chain import CHAIN
from policy import policies
from tests import harness

FORWARD_CONFIG = [
    {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22,
     "sourceCidrs": ["0.0.0.0/0"]},
]


def secret(value: Any) -> dict[str, Any]:
    """A value as the engine sends a Pulumi secret."""
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(props)
    return s


def _urn(typ: str, name: str) -> str:
    return f"urn:pulumi:dev::{harness.PROJECT}::{typ}::{name}"


def _servicer() -> _PolicyAnalyzerServicer:
    return _PolicyAnalyzerServicer(
        "openstack-on-aws", "0.1.0", policies.POLICIES, EnforcementLevel.MANDATORY
    )


# The stack config the pack sees; each analyze passes it as the engine does (PULUMI_CONFIG).
_CONFIG: dict[str, str] = {}


@pytest.fixture(autouse=True)
def pack_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = dict(pulumi.runtime.config.CONFIG.get())
    _CONFIG.clear()
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)  # restored after the test
    policies.keep_secret_marks()  # as policy/__main__.py does
    yield
    pulumi.runtime.set_all_config(saved)


def _pass_config() -> None:
    pulumi.runtime.set_all_config({})
    os.environ["PULUMI_CONFIG"] = json.dumps(_CONFIG)


def analyze(typ: str, props: dict[str, Any], name: str = "r") -> list[tuple[str, str]]:
    """(policy, message) of every violation the pack reports for one resource."""
    _pass_config()
    request = analyzer_pb2.AnalyzeRequest(type=typ, name=name, urn=_urn(typ, name), properties=_struct(props))
    response = _servicer().Analyze(request, None)
    return [(d.policyName, d.message) for d in response.diagnostics]


def analyze_stack(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Violations of the stack policies; each resource: type, name, props, dependencies (names)."""
    _pass_config()
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r["type"],
                name=r["name"],
                urn=_urn(r["type"], r["name"]),
                properties=_struct(r["props"]),
                dependencies=[_urn(d["type"], d["name"]) for d in r.get("dependencies", [])],
            )
            for r in resources
        ]
    )
    response = _servicer().AnalyzeStack(request, None)
    return [(d.policyName, d.message) for d in response.diagnostics]


def names(violations: list[tuple[str, str]]) -> set[str]:
    return {policy for policy, _ in violations}


# ---- imdsv2-required -------------------------------------------------------------------------

INSTANCE = {
    "ami": "ami-0123456789abcdef0",
    "instanceType": "m8i.2xlarge",
    "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required"},
    "rootBlockDevice": {"encrypted": True, "volumeSize": 200, "volumeType": "gp3"},
}


def test_imdsv2_required_passes() -> None:
    assert analyze(policies.INSTANCE, INSTANCE) == []


def test_imdsv2_optional_violates() -> None:
    props = {**INSTANCE, "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "optional"}}
    assert names(analyze(policies.INSTANCE, props)) == {"imdsv2-required"}
    no_options = {k: v for k, v in INSTANCE.items() if k != "metadataOptions"}
    assert names(analyze(policies.INSTANCE, no_options)) == {"imdsv2-required"}


# ---- encrypted-volumes -----------------------------------------------------------------------


def test_encrypted_volumes_pass() -> None:
    props = {**INSTANCE, "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True}]}
    assert analyze(policies.INSTANCE, props) == []
    assert analyze(policies.EBS_VOLUME, {"availabilityZone": "us-east-1a", "size": 10, "encrypted": True}) == []


def test_unencrypted_volumes_violate() -> None:
    root = {**INSTANCE, "rootBlockDevice": {"volumeSize": 200}}
    assert names(analyze(policies.INSTANCE, root)) == {"encrypted-volumes"}
    ebs = {**INSTANCE, "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": False}]}
    [(_, message)] = analyze(policies.INSTANCE, ebs)
    assert "ebsBlockDevices[0]" in message
    assert names(analyze(policies.EBS_VOLUME, {"availabilityZone": "us-east-1a", "size": 10})) == {
        "encrypted-volumes"
    }


# ---- no-world-ingress ------------------------------------------------------------------------

FORWARD_RULE = {
    "securityGroupId": "sg-provider",
    "ipProtocol": "tcp",
    "fromPort": 522,
    "toPort": 522,
    "cidrIpv4": "0.0.0.0/0",
    "description": "forward to 192.168.100.10:22",
}


def test_configured_forward_open_to_the_world_passes() -> None:
    _CONFIG["openstack-on-aws:portForwards"] = json.dumps(FORWARD_CONFIG)
    assert analyze(policies.SG_INGRESS_RULE, FORWARD_RULE, "dev-fwd-tcp-522-0-0-0-0-0") == []


def test_restricted_ingress_passes() -> None:
    rule = {**FORWARD_RULE, "fromPort": 22, "toPort": 22, "cidrIpv4": "203.0.113.0/24", "description": "SSH"}
    assert analyze(policies.SG_INGRESS_RULE, rule) == []


def test_forward_not_in_config_violates() -> None:
    # The same rule, but the stack's config does not forward 522 from the world.
    assert names(analyze(policies.SG_INGRESS_RULE, FORWARD_RULE)) == {"no-world-ingress"}
    _CONFIG["openstack-on-aws:portForwards"] = json.dumps(
        [{**FORWARD_CONFIG[0], "sourceCidrs": ["203.0.113.0/24"]}]
    )
    assert names(analyze(policies.SG_INGRESS_RULE, FORWARD_RULE)) == {"no-world-ingress"}


def test_world_ingress_violates() -> None:
    _CONFIG["openstack-on-aws:portForwards"] = json.dumps(FORWARD_CONFIG)
    ssh = {**FORWARD_RULE, "fromPort": 22, "toPort": 22, "description": "SSH"}
    assert names(analyze(policies.SG_INGRESS_RULE, ssh)) == {"no-world-ingress"}
    v6 = {k: v for k, v in FORWARD_RULE.items() if k != "cidrIpv4"} | {"cidrIpv6": "::/0"}
    assert names(analyze(policies.SG_INGRESS_RULE, v6)) == {"no-world-ingress"}
    # A forward's description on a port that is not forwarded does not make it one.
    other = {**FORWARD_RULE, "fromPort": 523, "toPort": 523}
    assert names(analyze(policies.SG_INGRESS_RULE, other)) == {"no-world-ingress"}
    legacy_rule = {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0,
                   "cidrBlocks": ["0.0.0.0/0"], "securityGroupId": "sg-1"}
    # (every protocol, and tcp/80 to the host: clear text, which the TLS front serves on 443)
    assert names(analyze(policies.SG_RULE, legacy_rule)) == {"no-world-ingress", "no-cleartext-host-ingress"}
    inline = {"vpcId": "vpc-1", "ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80,
                                             "ipv6CidrBlocks": ["::/0"]}]}
    assert names(analyze(policies.SECURITY_GROUP, inline)) == {"no-world-ingress", "no-cleartext-host-ingress"}


def test_a_world_open_forward_range_passes_only_if_every_port_is_forwarded_from_the_world() -> None:
    world = [{**FORWARD_CONFIG[0], "publicPort": p} for p in range(1000, 1010)]
    _CONFIG["openstack-on-aws:portForwards"] = json.dumps(world)
    rng = {**FORWARD_RULE, "fromPort": 1000, "toPort": 1009, "description": "forward to 10 tenant ports: tcp/1000-1009"}
    assert analyze(policies.SG_INGRESS_RULE, rng) == []
    _CONFIG["openstack-on-aws:portForwards"] = json.dumps(world[:-1])  # 1009 not forwarded
    assert names(analyze(policies.SG_INGRESS_RULE, rng)) == {"no-world-ingress"}


def test_world_open_floating_ip_ingress_passes_only_when_configured() -> None:
    web = {**FORWARD_RULE, "fromPort": 80, "toPort": 80, "description": "floating IP ingress: tcp/80"}
    assert names(analyze(policies.SG_INGRESS_RULE, web)) == {"no-world-ingress"}
    _CONFIG["openstack-on-aws:floatingIpIngress"] = json.dumps(
        [{"protocol": "tcp", "port": 80, "sourceCidrs": ["0.0.0.0/0"]}, {"protocol": "icmp", "sourceCidrs": ["::/0"]}]
    )
    assert analyze(policies.SG_INGRESS_RULE, web) == []
    ping6 = {k: v for k, v in web.items() if k != "cidrIpv4"} | {
        "ipProtocol": "icmp", "fromPort": -1, "toPort": -1, "cidrIpv6": "::/0",
        "description": "floating IP ingress: icmp"}
    assert analyze(policies.SG_INGRESS_RULE, ping6) == []
    # The description alone does not open a port that is not configured.
    assert names(analyze(policies.SG_INGRESS_RULE, {**web, "fromPort": 81, "toPort": 81})) == {"no-world-ingress"}


# ---- provider ENI ----------------------------------------------------------------------------

PROVIDER_ENI = {
    "subnetId": "subnet-provider",
    "sourceDestCheck": False,
    "description": "openstack-on-aws provider: br-ex, router gateway, floating IPs",
    "tags": {"Name": "dev-provider"},
}


def test_provider_eni_source_dest_check_off_passes() -> None:
    assert analyze(policies.ENI, PROVIDER_ENI) == []
    management = {"subnetId": "subnet-management", "description": "openstack-on-aws management"}
    assert analyze(policies.ENI, management) == []


def test_provider_eni_source_dest_check_on_violates() -> None:
    assert names(analyze(policies.ENI, {**PROVIDER_ENI, "sourceDestCheck": True})) == {
        "provider-eni-source-dest-check-off"
    }
    by_tag = {"subnetId": "s", "tags": {"openstack-on-aws:role": "provider"}}
    assert names(analyze(policies.ENI, by_tag)) == {"provider-eni-source-dest-check-off"}


def _eni_stack(device_index: int | None) -> list[dict[str, Any]]:
    eni = {"type": policies.ENI, "name": "dev-provider-eni", "props": PROVIDER_ENI}
    instance = {"type": policies.INSTANCE, "name": "dev-instance", "props": INSTANCE}
    stack = [eni, instance]
    if device_index is not None:
        stack.append({
            "type": policies.ENI_ATTACHMENT, "name": "dev-provider-attachment",
            "props": {"instanceId": "i-1", "networkInterfaceId": "eni-1", "deviceIndex": device_index},
            "dependencies": [instance, eni],
        })
    return stack


def test_provider_eni_attached_at_index_1_passes() -> None:
    assert analyze_stack(_eni_stack(1)) == []


def test_provider_eni_elsewhere_or_unattached_violates() -> None:
    assert names(analyze_stack(_eni_stack(2))) == {"provider-eni-at-device-index-1"}
    assert names(analyze_stack(_eni_stack(None))) == {"provider-eni-at-device-index-1"}


# ---- no-secret-in-remote-command -------------------------------------------------------------

COMMAND = {
    # pulumi-command sends the whole connection as a secret (it holds the key).
    "connection": secret({"host": "198.51.100.1", "user": "ubuntu", "privateKey": secret(harness.SECRET_PRIVATE_KEY)}),
    "environment": {"OOA_STATE": "/var/lib/openstack-on-aws"},
    "create": "set -euo pipefail\nread -r ADMIN_PASSWORD\nprintf 'ADMIN_PASSWORD=%s\\n' \"$ADMIN_PASSWORD\"\n",
    "delete": "exec sudo -n /usr/local/lib/openstack-on-aws/step.sh remove\n",
    "stdin": secret("ADMIN_PASSWORD=correct-horse-battery\n"),
}


def test_command_without_secret_passes() -> None:
    assert analyze(policies.REMOTE_COMMAND, COMMAND) == []


def test_command_with_secret_violates() -> None:
    key = {**COMMAND, "create": f"echo '{harness.SECRET_PRIVATE_KEY}' > key"}
    assert names(analyze(policies.REMOTE_COMMAND, key)) == {"no-secret-in-remote-command"}
    assignment = {**COMMAND, "update": "ADMIN_PASSWORD=correct-horse-battery ./stack.sh"}
    assert names(analyze(policies.REMOTE_COMMAND, assignment)) == {"no-secret-in-remote-command"}
    option = {**COMMAND, "create": "openstack --os-password correct-horse-battery server list"}
    assert names(analyze(policies.REMOTE_COMMAND, option)) == {"no-secret-in-remote-command"}


def test_command_text_marked_secret_violates() -> None:
    # Text built from a secret Output: the engine sends it wrapped; nothing in it looks secret.
    marked = {**COMMAND, "create": secret("echo nothing-recognisable")}
    [(policy, message)] = analyze(policies.REMOTE_COMMAND, marked)
    assert policy == "no-secret-in-remote-command" and "Pulumi secret" in message


def test_command_with_secret_config_value_violates() -> None:
    _CONFIG["openstack-on-aws:adminPassword"] = "s3cr3t-Admin-pw"
    leaky = {**COMMAND, "delete": "curl -u admin:s3cr3t-Admin-pw http://localhost/identity"}
    [(policy, message)] = analyze(policies.REMOTE_COMMAND, leaky)
    assert policy == "no-secret-in-remote-command" and "config" in message


CONFIG_PASSWORD = "s3cr3t-Admin-pw"


def _config_secrets() -> None:
    _CONFIG["openstack-on-aws:adminPassword"] = CONFIG_PASSWORD
    _CONFIG["openstack-on-aws:sshPrivateKey"] = harness.SECRET_PRIVATE_KEY


def test_command_with_configured_secrets_in_their_places_passes() -> None:
    """The configured key in the connection's credentials, the password on stdin: no violation."""
    _config_secrets()
    assert analyze(policies.REMOTE_COMMAND, COMMAND) == []
    proxy = {"host": "bastion", "user": "jump", "privateKey": secret(harness.SECRET_PRIVATE_KEY),
             "password": secret(CONFIG_PASSWORD)}
    via_proxy = {**COMMAND, "connection": secret({**COMMAND["connection"]["value"], "proxy": proxy})}
    assert analyze(policies.REMOTE_COMMAND, via_proxy) == []


@pytest.mark.parametrize(
    "environment",
    [
        {"OS_PASSWORD": CONFIG_PASSWORD},  # a value of the secret config
        {"ADMIN_PASSWORD": "correct-horse-battery"},  # a password literal
        {"X": secret("nothing-recognisable")},  # built from a secret
    ],
    ids=["config-value", "literal", "marked"],
)
def test_command_environment_with_secret_violates(environment: dict[str, Any]) -> None:
    _config_secrets()
    [(policy, message)] = analyze(policies.REMOTE_COMMAND, {**COMMAND, "environment": environment})
    assert policy == "no-secret-in-remote-command" and "environment variable" in message


@pytest.mark.parametrize(
    "connection",
    [
        {"host": "198.51.100.1", "user": CONFIG_PASSWORD},
        {"host": "198.51.100.1", "user": "ubuntu", "hostKey": harness.SECRET_PRIVATE_KEY},
        {"host": "198.51.100.1", "user": "ubuntu", "proxy": {"host": "bastion", "user": CONFIG_PASSWORD}},
    ],
    ids=["user", "host-key", "proxy-user"],
)
def test_command_connection_with_secret_outside_its_credentials_violates(connection: dict[str, Any]) -> None:
    _config_secrets()
    leaky = {**COMMAND, "connection": secret({**connection, "privateKey": secret(harness.SECRET_PRIVATE_KEY)})}
    [(policy, message)] = analyze(policies.REMOTE_COMMAND, leaky)
    assert policy == "no-secret-in-remote-command" and "connection." in message


def test_step_scripts_are_not_mistaken_for_secrets() -> None:
    """The command text the program sends for every step script passes the pattern checks."""
    steps = sorted(p.stem for p in remote.STEPS_DIR.glob("*.sh") if p.name != "lib.sh")
    # Every step of the controller's and the compute nodes' tables, the TLS steps and smoke included, is
    # found and checked, not none of them.
    assert steps == sorted(["prepare-host", "install-openstack", "external-gateway", "gateway-mac", "port-forwards",
                            *compute_chain.STEPS[1:], "smoke", "tls-front", "public-endpoints"])
    for step in steps:
        for action in ("apply", "remove"):
            text = remote.command(step, action)
            assert policies.secret_findings(text, []) == [], f"{step} {action}"
    # the upload row's command, the script on its stdin (every script whole) and its remove
    for text in (remote.UPLOAD_COMMAND, remote.upload(steps), remote.unload()):
        assert policies.secret_findings(text, []) == []


# ---- secret-step-stdin-is-secret (derived from the step table) ----------------------------------

SECRET_ROWS = [s.name for s in (*CHAIN, *compute_chain.NODE_CHAIN) if s.secret]
PLAIN_ROWS = [s.name for s in (*CHAIN, *compute_chain.NODE_CHAIN) if not s.secret]


def test_the_table_has_both_kinds_of_rows() -> None:
    assert SECRET_ROWS == ["install-openstack", "tls-front", "install-compute"] and "compute-record" in PLAIN_ROWS


def test_a_compute_node_step_is_found_by_its_row() -> None:
    plain = {**COMMAND, "stdin": "BRANCH=master\n"}
    [(policy, message)] = analyze(policies.REMOTE_COMMAND, plain, name="dev-compute-2-install-compute")
    assert policy == "secret-step-stdin-is-secret" and "install-compute" in message


@pytest.mark.parametrize("step", SECRET_ROWS)
def test_a_secret_step_with_plain_stdin_violates(step: str) -> None:
    plain = {**COMMAND, "stdin": "BRANCH=master\n"}
    [(policy, message)] = analyze(policies.REMOTE_COMMAND, plain, name=f"dev-{step}")
    assert policy == "secret-step-stdin-is-secret" and step in message
    assert analyze(policies.REMOTE_COMMAND, COMMAND, name=f"dev-{step}") == []


@pytest.mark.parametrize("step", PLAIN_ROWS)
def test_other_steps_may_send_plain_stdin(step: str) -> None:
    assert analyze(policies.REMOTE_COMMAND, {**COMMAND, "stdin": "ROUTER=router1\n"}, name=f"dev-{step}") == []


def test_step_of_takes_the_longest_row_name() -> None:
    assert policies.step_of("prod-eu-external-gateway").name == "external-gateway"  # type: ignore[union-attr]
    assert policies.step_of("dev-something-else") is None


# ---- the program itself ----------------------------------------------------------------------


@pytest.mark.parametrize("secrets", ["generated", "configured"])
def test_the_program_complies(secrets: str) -> None:
    """Every resource the program registers, under mocks, passes every policy: with the key pair
    and admin password generated (secret as their providers mark them), and configured as secrets."""
    # Two compute nodes too: their instances, ENIs, cluster rule and steps comply as well.
    config: dict[str, Any] = {
        "portForwards": [*FORWARD_CONFIG, *({**FORWARD_CONFIG[0], "publicPort": p} for p in (600, 601))],
        "floatingIpCount": 2,
        "floatingIpIngress": [{"protocol": "tcp", "port": 80, "toPort": 81, "sourceCidrs": ["0.0.0.0/0"]}],
        "computeNodes": {"count": 2},
        "elasticIpQuota": 10,  # 2 + 2 floating + 2 nodes
    }
    secret_keys: list[str] = []
    if secrets == "configured":
        config |= {"adminPassword": CONFIG_PASSWORD, "sshPrivateKey": harness.SECRET_PRIVATE_KEY,
                   "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPolicyPolicyPolicyPolicyPolicyPolicy"}
        secret_keys = ["adminPassword", "sshPrivateKey"]
    result = harness.run_program(config, secret_keys=secret_keys)
    _CONFIG.update(harness.config_strings({**harness.BASE_CONFIG, **config}))
    urn_of = {name: urn for urn, name in result.urns.items()}
    custom = [r for r in result.resources if r.custom]
    assert {policies.INSTANCE, policies.ENI, policies.ENI_ATTACHMENT, policies.SG_INGRESS_RULE} <= {
        r.type for r in custom
    }
    for r in custom:
        assert analyze(r.type, r.inputs, r.name) == [], r.name
    by_urn = {urn_of[r.name]: r for r in custom}
    stack = [
        {"type": r.type, "name": r.name, "props": r.inputs,
         "dependencies": [{"type": by_urn[u].type, "name": by_urn[u].name} for u in r.dependencies
                          if u in by_urn]}
        for r in custom
    ]
    assert analyze_stack(stack) == []
    # ... and the pack does see the program's world-open forward rule.
    fwd = [r for r in custom if r.type == policies.SG_INGRESS_RULE and r.inputs.get("cidrIpv4") == "0.0.0.0/0"]
    assert fwd, "the forward from 0.0.0.0/0 was not registered"


# ---- the pack boots --------------------------------------------------------------------------


def test_the_pack_serves_its_policies() -> None:
    """`policy/__main__.py` starts the analyzer the CLI talks to, with every policy in it."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(harness.ROOT / "policy" / "__main__.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = analyzer_pb2_grpc.AnalyzerStub(channel).GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
        assert info.name == "openstack-on-aws"
        assert {p.name for p in info.policies} == {p.name for p in policies.POLICIES}
        assert all(p.enforcementLevel == analyzer_pb2.MANDATORY for p in info.policies)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_existing_machine_complies() -> None:
    """The existing-machine mode's resources (remote steps only) pass every policy too."""
    from tests.test_modes import HOST, PRIVATE_KEY

    config = {"host": HOST, "sshPrivateKey": PRIVATE_KEY}
    result = harness.run_program(config, secret_keys=["sshPrivateKey"], base={})
    _CONFIG.update(harness.config_strings(config))
    commands = [r for r in result.resources if r.type == policies.REMOTE_COMMAND]
    assert len(commands) == len(CHAIN)
    for r in commands:
        assert analyze(r.type, r.inputs, r.name) == [], r.name


# ---- no-cleartext-host-ingress (the TLS front serves Horizon, the APIs and noVNC on 443) ----

MANAGEMENT_RULE = {"securityGroupId": "sg-m", "ipProtocol": "tcp", "cidrIpv4": "203.0.113.0/24"}


@pytest.mark.parametrize(("low", "high", "flagged"), [
    (80, 80, True), (6080, 6080, True), (1, 1024, True), (6000, 6100, True),
    (443, 443, False), (22, 22, False), (81, 6079, False),
])
def test_the_hosts_cleartext_ports_are_refused_from_any_cidr(low, high, flagged) -> None:
    rule = {**MANAGEMENT_RULE, "fromPort": low, "toPort": high, "description": "Horizon"}
    assert ("no-cleartext-host-ingress" in names(analyze(policies.SG_INGRESS_RULE, rule))) is flagged


def test_tenant_rules_and_rules_between_groups_may_use_port_80() -> None:
    """A floating-IP web server and a port forward to a VM's port 80 reach tenants, not the host;
    a rule from another security group (the compute cluster) stays inside the VPC."""
    web = {**MANAGEMENT_RULE, "fromPort": 80, "toPort": 80, "description": "floating IP ingress: tcp/80"}
    fwd = {**web, "description": "forward to 192.168.100.10:80"}
    cluster = {"securityGroupId": "sg-m", "ipProtocol": "-1", "referencedSecurityGroupId": "sg-m"}
    for rule in (web, fwd, cluster):
        assert "no-cleartext-host-ingress" not in names(analyze(policies.SG_INGRESS_RULE, rule)), rule
