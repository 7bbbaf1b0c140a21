"""Each mode's whole graph under Pulumi's mocks: an existing machine (no AWS resource, no AWS invoke)
with DevStack or with an OpenStack already on it; bad configs per mode refused by key before any
resource; the example stack config of each mode validates and renders.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pulumi
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from config.host import InstanceLimits
from config.settings import AWS_ONLY_KEYS, SettingsError, load_settings
from onhost.chain import CHAIN, chain_for, scripts_of
from onhost.remote import UPLOAD, command, texts
from tests import harness
from tests.test_secrets import plain_leaks, secret_values

CMD = "command:remote:Command"
EXAMPLES = harness.ROOT / "examples" / "stacks"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKeyHostKeyHostKeyHost"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nZXhpc3RpbmctbWFjaGluZS1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n"
HOST = {
    "kind": "existing",
    "address": "198.51.100.20",
    "port": 2222,
    "user": "admin",
    "hostKey": HOST_KEY,
    "jumpHost": {"address": "198.51.100.5", "user": "ops"},
    "managementIp": "10.0.1.15",
    "providerMac": "02:00:0A:00:02:05",
    "providerCidr": "10.0.2.0/24",
    "providerGateway": "10.0.2.1",
    "providerIp": "10.0.2.20",
    "providerPublicIp": "198.51.100.21",
    "floatingIps": {"10.0.2.21": "198.51.100.22", "10.0.2.22": "198.51.100.23"},
    "publicAddress": "cloud.example.org",
    "dnsServer": "10.0.0.2",
}
FORWARD = {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}
OPENSTACK = {
    "install": "existing",
    "cloud": "kolla-admin",
    "cloudsYaml": "/etc/kolla/clouds.yaml",
    "externalNetwork": "public1",
    "router": "demo-router",
    "physicalNetwork": "physnet1",
}
# Outputs per mode (README "Outputs"): what an AWS host adds, what DevStack adds.
COMMON = {"managementPrivateIp", "managementPublicIp", "sshCommand", "providerMac", "providerPrivateIp",
          "floatingIps", "routerId", "portForwards"}
HOST_KEY_OUT = {"sshHostKey", "sshKnownHosts"}  # AWS: always (generated); existing: with host.hostKey
PROVIDER_PUBLIC = {"providerPublicIp"}
DEVSTACK = {"keystoneAuthUrl", "horizonUrl", "adminPassword", "cloudsYaml", "caCertificate"}
# The Tls component's resources whose PEMs the tls-front step carries.
TLS_PEMS = {"dev-ca", "dev-server", "dev-server-key"}
AWS = {"region", "availabilityZone", "vpcId", "managementSubnetId", "providerSubnetId", "instanceId", "hostState",
       "sshPrivateKey", "providerEniId"}


def existing(openstack: dict | None = None, **host) -> harness.Result:
    config = {"host": {**HOST, **host}, "sshPrivateKey": PRIVATE_KEY, "portForwards": [FORWARD]}
    if openstack:
        config["openstack"] = openstack
        config["tenantCidr"] = "192.168.100.0/24"
    return harness.run_program(config, secret_keys=["sshPrivateKey"], base={})


@pytest.fixture(scope="module")
def machine() -> harness.Result:
    """An existing machine, DevStack installed by the steps."""
    return existing()


@pytest.fixture(scope="module")
def cloud() -> harness.Result:
    """An existing machine with OpenStack already on it."""
    return existing(OPENSTACK)


@pytest.mark.parametrize("case", ["machine", "cloud"])
def test_an_existing_machine_registers_no_aws_resource_and_calls_no_aws_api(case, request):
    run: harness.Result = request.getfixturevalue(case)
    types = {r.type for r in run.resources}
    assert not [t for t in types if t.startswith("aws:") or t == "pulumi:providers:aws"], types
    assert run.invokes == []
    assert "openstack-on-aws:host:ExistingMachine" in types
    (urn,) = [u for u in run.urns if "openstack-on-aws:host:ExistingMachine" in u]
    assert not [r.name for r in run.resources if r.parent == urn]  # a contract, no child resource


def test_the_aws_mode_calls_aws():
    """The check above can fail: the AWS mode registers AWS resources and asks AWS about the type."""
    run = harness.run_program()
    assert "aws:ec2/getInstanceType:getInstanceType" in run.invokes
    assert any(r.type.startswith("aws:") for r in run.resources)


def _connection(run: harness.Result, step: str) -> dict:
    conn = run.one(f"dev-{step}").inputs["connection"]
    assert is_rpc_secret(conn)  # it holds the private key
    return unwrap_rpc_secret(conn)


@pytest.mark.parametrize(("case", "install"), [("machine", "devstack"), ("cloud", "existing")])
def test_the_mode_selects_its_rows_of_the_chain(case, install, request):
    run: harness.Result = request.getfixturevalue(case)
    steps = [s.name for s in chain_for(install, {"smokeTest"})]  # smokeTest defaults to on
    assert ("smoke" in steps) == (install == "devstack")  # the smoke VM needs DevStack's CirrOS and flavors
    assert [r.name for r in run.of_type(CMD)] == [f"dev-{s}" for s in steps]
    for before, after in zip(steps, steps[1:], strict=False):
        assert f"dev-{before}" in run.depends_on(f"dev-{after}")
        # only earlier steps (their outputs) and the generated password: nothing of a host
        # (with DevStack, the TLS front's certificate and key: the Tls component's, not the host's)
        assert run.depends_on(f"dev-{after}") <= {f"dev-{s}" for s in steps} | {"dev-admin-password"} | TLS_PEMS
    assert run.depends_on(f"dev-{steps[0]}") == set()  # nothing to wait for on an existing machine
    for r in run.of_type(CMD):
        step = r.name.removeprefix("dev-")
        row = next(s for s in CHAIN if s.name == step)
        assert (r.inputs["create"], r.inputs["delete"]) == texts(step, scripts_of(steps))
        # the machine outlives the stack: always undo; the upload row is replaced create-first
        assert r.delete_before_replace == (step != UPLOAD) and r.deleted_with == ""
        # the machine's identity, then the stdout of the steps whose runs re-run this one
        reruns = ["" for _ in row.reruns_after]  # those steps' stdout (empty under the mocks)
        assert r.inputs["triggers"] == ["admin@198.51.100.20:2222/02:00:0a:00:02:05", *reruns], step
        assert r.custom_timeouts == {"create": row.timeout, "update": row.timeout, "delete": row.delete_timeout}
        assert is_rpc_secret(r.inputs["stdin"]) == row.secret, step
        conn = _connection(run, step)
        assert (conn["host"], conn["port"], conn["user"]) == ("198.51.100.20", 2222, "admin")
        assert conn["hostKey"] == HOST_KEY
        assert conn["privateKey"] == PRIVATE_KEY
        assert (conn["proxy"]["host"], conn["proxy"]["user"], conn["proxy"]["port"]) == ("198.51.100.5", "ops", 22)
        assert conn["proxy"]["privateKey"] == PRIVATE_KEY


def test_an_existing_machine_with_devstack_gets_its_addresses(machine):
    stdin = {r.name: unwrap_rpc_secret(r.inputs["stdin"]) for r in machine.of_type(CMD)}
    assert stdin["dev-prepare-host"] == "PROVIDER_MAC=02:00:0a:00:02:05\n"
    gateway = stdin["dev-external-gateway"]
    for line in ("CLOUD=devstack-admin", "CLOUDS_YAML=/etc/openstack/clouds.yaml", "EXTERNAL_NETWORK=public",
                 "ROUTER=router1", "PROVIDER_CIDR=10.0.2.0/24", "VPC_GATEWAY_IP=10.0.2.1", "POOL_START=10.0.2.20",
                 "POOL_END=10.0.2.22", "GATEWAY_IP=10.0.2.20", "TENANT_DNS=10.0.0.2"):
        assert line + "\n" in gateway
    assert "FORWARDS=tcp:522:192.168.100.10:22\n" in stdin["dev-port-forwards"]
    assert "GATEWAY_IP=10.0.2.20\n" in stdin["dev-port-forwards"]
    assert f"ROUTER_ID={harness.MOCK_ROUTER_ID}\n" in stdin["dev-gateway-mac"]
    for line in ("TENANT_IP=192.168.100.10", "VPC_GATEWAY_IP=10.0.2.1", "EXPECTED_PUBLIC_IP=198.51.100.21"):
        assert line + "\n" in stdin["dev-smoke"]


def test_without_a_provider_public_ip_the_smoke_step_expects_no_address():
    smoke = unwrap_rpc_secret(existing(providerPublicIp=None).one("dev-smoke").inputs["stdin"])
    assert "EXPECTED_PUBLIC_IP=\n" in smoke  # smoke.sh: any IPv4 answer of the internet passes


def test_an_existing_openstack_is_configured_not_installed(cloud):
    assert not cloud.of_type("random:index/randomPassword:RandomPassword")
    gateway = cloud.one("dev-external-gateway").inputs["stdin"]
    for line in ("CLOUD=kolla-admin", "CLOUDS_YAML=/etc/kolla/clouds.yaml", "EXTERNAL_NETWORK=public1",
                 "ROUTER=demo-router", "PHYSICAL_NETWORK=physnet1"):
        assert line + "\n" in gateway
    assert "EXTERNAL_BRIDGE=br-ex\n" in cloud.one("dev-gateway-mac").inputs["stdin"]


def test_outputs_per_mode(machine, cloud):
    aws = harness.run_program({"portForwards": [FORWARD]})
    assert set(aws.outputs) == COMMON | PROVIDER_PUBLIC | DEVSTACK | AWS | HOST_KEY_OUT
    assert set(machine.outputs) == COMMON | PROVIDER_PUBLIC | DEVSTACK | HOST_KEY_OUT
    assert set(cloud.outputs) == COMMON | PROVIDER_PUBLIC | HOST_KEY_OUT
    assert set(existing(providerPublicIp=None).outputs) == COMMON | DEVSTACK | HOST_KEY_OUT
    assert set(existing(hostKey=None).outputs) == COMMON | PROVIDER_PUBLIC | DEVSTACK
    out = machine.outputs
    assert out["managementPrivateIp"] == "10.0.1.15" and out["managementPublicIp"] == "cloud.example.org"
    assert out["providerMac"] == "02:00:0a:00:02:05" and out["providerPrivateIp"] == "10.0.2.20"
    assert out["providerPublicIp"] == "198.51.100.21"
    assert out["floatingIps"] == {"10.0.2.21": "198.51.100.22", "10.0.2.22": "198.51.100.23"}
    assert out["sshCommand"] == "ssh -p 2222 -J ops@198.51.100.5 admin@198.51.100.20"
    # host.publicAddress is a DNS name: the certificate names it (and the management IP), the URLs use it
    assert out["keystoneAuthUrl"] == "https://cloud.example.org/identity/v3"
    assert out["horizonUrl"] == "https://cloud.example.org/dashboard"
    request = machine.one("dev-server-request").inputs
    assert request["dnsNames"] == ["cloud.example.org"] and request["ipAddresses"] == ["10.0.1.15"]
    front = unwrap_rpc_secret(machine.one("dev-tls-front").inputs["stdin"])
    assert "DNS_NAME=cloud.example.org\n" in front
    # the host firewall: an existing machine has no compute nodes, only the host reaches its plain
    # ports; on AWS, the management subnet the program made (where compute nodes join from)
    assert "PLAIN_SOURCES=\n" in front
    assert "PLAIN_SOURCES=10.42.1.0/24\n" in unwrap_rpc_secret(aws.one("dev-tls-front").inputs["stdin"])
    # the key the steps pin, for the address and port they dial (behind the jump host)
    assert out["sshHostKey"] == HOST_KEY and out["sshKnownHosts"] == f"[198.51.100.20]:2222 {HOST_KEY}"
    assert out["portForwards"] == [FORWARD] == cloud.outputs["portForwards"]
    assert out["routerId"] == harness.MOCK_ROUTER_ID == cloud.outputs["routerId"]
    assert machine.secret_outputs == {"adminPassword", "cloudsYaml"}
    assert cloud.secret_outputs == set()


@pytest.mark.parametrize("case", ["machine", "cloud"])
def test_no_secret_in_plain(case, request):
    run: harness.Result = request.getfixturevalue(case)
    assert plain_leaks(run, secret_values(run, {PRIVATE_KEY})) == []


def test_a_missing_host_key_warns_and_is_not_checked():
    run = existing(hostKey=None)
    assert any(w.startswith("openstack-on-aws:host.hostKey: not set") for w in run.warnings)
    assert "hostKey" not in _connection(run, "prepare-host")


# ---- bad configs per mode: refused by key, before anything is registered -------------------------

BAD = [
    # AWS-only keys for an existing machine, each named
    ({"host": HOST, "sshPrivateKey": "k", "vpcCidr": "10.42.0.0/16", "instanceType": "m8i.large",
      "allowedCidrs": ["203.0.113.0/24"], "aws:region": "us-east-1"},
     ["openstack-on-aws:vpcCidr: AWS-only", "openstack-on-aws:instanceType: AWS-only",
      "openstack-on-aws:allowedCidrs: AWS-only", "aws:region: AWS-only"]),
    ({"host": HOST}, ["openstack-on-aws:sshPrivateKey: required with host.kind existing"]),
    ({"host": {**HOST, "providerIp": "10.0.3.20"}, "sshPrivateKey": "k"},
     ["openstack-on-aws:host.providerIp: 10.0.3.20 is not a host address of providerCidr"]),
    ({"host": {**HOST, "floatingIps": {"10.0.2.30": "198.51.100.22"}}, "sshPrivateKey": "k"},
     ["openstack-on-aws:host.floatingIps: 10.0.2.30 does not follow providerIp contiguously"]),
    ({"host": {**HOST, "providerMac": "02-00-0a-00-02-05", "vpcId": "x"}, "sshPrivateKey": "k"},
     ["openstack-on-aws:host.providerMac: String should match pattern", "openstack-on-aws:host.vpcId: unknown key"]),
    ({"host": {**HOST, "hostKey": "not a key"}, "sshPrivateKey": "k"},
     ["openstack-on-aws:host.hostKey: not an OpenSSH public key"]),
    ({"host": {**HOST, "managementIp": "10.0.2.99"}, "sshPrivateKey": "k", "tenantCidr": "10.0.2.0/24"},
     ["openstack-on-aws:host.managementIp: 10.0.2.99 is inside providerCidr",
      "openstack-on-aws:tenantCidr: 10.0.2.0/24 overlaps host.providerCidr"]),
    ({"host": {**HOST, "kind": "aws"}, "sshPrivateKey": "k"}, ["openstack-on-aws:host.kind: Input should be"]),
    # existing OpenStack
    ({"host": HOST, "sshPrivateKey": "k", "openstack": {"install": "existing"}, "openstackBranch": "master",
      "adminPassword": "Good_pass-word-123", "smokeTest": True},
     ["openstack-on-aws:openstack.cloud: required", "openstack-on-aws:openstackBranch: DevStack only",
      "openstack-on-aws:adminPassword: DevStack only", "openstack-on-aws:smokeTest: DevStack only"]),
    ({"allowedCidrs": ["203.0.113.0/24"], "openstack": {"install": "existing", "cloud": "c"}},
     ["openstack-on-aws:openstack.install: existing needs an existing machine"]),
    ({"allowedCidrs": ["203.0.113.0/24"], "openstack": {"cloud": "c", "cloudsYaml": "/x.yaml"}},
     ["openstack-on-aws:openstack.cloud: only with install existing",
      "openstack-on-aws:openstack.cloudsYaml: only with install existing"]),
    ({"host": HOST, "sshPrivateKey": "k", "openstack": {**OPENSTACK, "router": "a b", "cloudsYaml": "rel.yaml"}},
     ["openstack-on-aws:openstack.router: String should match pattern",
      "openstack-on-aws:openstack.cloudsYaml: String should match pattern"]),
    ({"host": HOST, "sshPrivateKey": "k", "portForwards": [{**FORWARD, "sourceCidrs": ["0.0.0.0/0"]}]},
     ["openstack-on-aws:portForwards[0].sourceCidrs: AWS-only"]),
]


@pytest.mark.parametrize(("config", "expected"), BAD, ids=[e[0].split(": ")[0] for _, e in BAD])
def test_bad_configs_are_refused_by_key(config, expected):
    asked: list[str] = []

    def limits(instance_type: str) -> InstanceLimits:
        asked.append(instance_type)
        return InstanceLimits(4, 15, False)

    with pytest.raises(SettingsError) as err:
        load_settings(harness.config_strings(config), limits)
    assert asked == ([] if "host" in config else ["m8i.2xlarge"])  # an existing machine asks AWS nothing
    for message in expected:
        assert any(p.startswith(message) for p in err.value.problems), (message, err.value.problems)


def test_every_aws_only_key_is_refused_for_an_existing_machine():
    values = {"region": "us-east-1", "availabilityZone": "us-east-1a", "instanceType": "m8i.large",
              "rootVolumeGiB": 100, "amiId": "ami-0123456789abcdef0", "sshPublicKey": "ssh-ed25519 AAAA x",
              "vpcCidr": "10.42.0.0/16", "managementSubnetCidr": "10.42.1.0/24",
              "providerSubnetCidr": "10.42.2.0/24", "floatingIpCount": 1, "allowedCidrs": ["203.0.113.0/24"],
              "floatingIpIngress": [{"protocol": "tcp", "port": 80}], "securityGroupRuleQuota": 100,
              "elasticIpQuota": 10,
              "computeNodes": {"count": 1}, "parked": True, "spot": True, "bakeImage": True}
    assert set(values) == set(AWS_ONLY_KEYS)
    config = {("aws:region" if k == "region" else k): v for k, v in values.items()}
    with pytest.raises(SettingsError) as err:
        load_settings(harness.config_strings({"host": HOST, "sshPrivateKey": "k", **config}))
    named = {p.split(": ")[0] for p in err.value.problems if "AWS-only" in p}
    assert named == {"aws:region" if k == "region" else f"openstack-on-aws:{k}" for k in values}


@pytest.mark.parametrize("openstack", [None, OPENSTACK])
def test_a_bad_config_registers_nothing(openstack):
    config = {"host": {**HOST, "providerGateway": "10.0.2.20"}, "sshPrivateKey": PRIVATE_KEY, "vpcCidr": "10.0.0.0/16"}
    if openstack:
        config["openstack"] = openstack
    with pytest.raises(pulumi.RunError) as err:
        harness.run_program(config, secret_keys=["sshPrivateKey"], base={})
    assert "openstack-on-aws:host.providerGateway: 10.0.2.20 is providerIp" in str(err.value)
    assert "openstack-on-aws:vpcCidr: AWS-only" in str(err.value)
    assert PRIVATE_KEY.splitlines()[1] not in str(err.value)
    registered = pulumi.runtime.settings.SETTINGS.monitor.registered  # type: ignore[attr-defined]
    assert [r.type for r in registered if r.type != "pulumi:pulumi:Stack"] == []


# ---- the example stack config of each mode ---------------------------------------------------------

def _example(path: Path, with_secret: bool) -> dict[str, str]:
    config = yaml.safe_load(path.read_text())["config"]
    if with_secret and "openstack-on-aws:host" in config:
        config["openstack-on-aws:sshPrivateKey"] = PRIVATE_KEY  # set with --secret, never in the file
    return harness.config_strings(config)


EXAMPLE_MODES = {"aws.yaml": "aws/devstack", "existing-machine.yaml": "existing/devstack",
                 "existing-openstack.yaml": "existing/existing"}


def test_there_is_an_example_per_mode():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_MODES)


@pytest.mark.parametrize("name", sorted(EXAMPLE_MODES))
def test_each_example_validates_clean(name):
    limits = harness.INSTANCE_TYPES["m8i.2xlarge"]
    aws = InstanceLimits(limits["maximumNetworkInterfaces"], limits["maximumIpv4AddressesPerInterface"], False)
    s = load_settings(_example(EXAMPLES / name, True), lambda _t: aws)
    assert s.mode == EXAMPLE_MODES[name]
    assert s.warnings() == []
    assert "secure" not in (EXAMPLES / name).read_text()  # no secret in an example


def test_the_aws_example_is_the_dev_stack():
    assert yaml.safe_load((EXAMPLES / "aws.yaml").read_text()) == yaml.safe_load(
        (harness.ROOT / "Pulumi.dev.yaml").read_text())


@pytest.mark.parametrize("name", ["existing-machine.yaml", "existing-openstack.yaml"])
def test_each_existing_example_runs_under_mocks_without_aws(name):
    config = yaml.safe_load((EXAMPLES / name).read_text())["config"]
    run = harness.run_program({**config, "sshPrivateKey": PRIVATE_KEY}, secret_keys=["sshPrivateKey"], base={})
    assert run.invokes == [] and not [r for r in run.resources if r.type.startswith("aws:")]
    # DevStack: + smoke, tls-front and public-endpoints
    assert len(run.of_type(CMD)) == (9 if name == "existing-machine.yaml" else 4)


@pytest.mark.parametrize("name", sorted(EXAMPLE_MODES))
@pytest.mark.parametrize("with_key", [True, False], ids=["key-set", "as-shipped"])
def test_render_in_each_mode(name, with_key, tmp_path):
    stack = tmp_path / name
    text = (EXAMPLES / name).read_text()
    if name != "aws.yaml" and with_key:
        text += "  openstack-on-aws:sshPrivateKey:\n    secure: AAABAMockCiphertext==\n"
    stack.write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "tools/render.py", "--config", str(stack), "--out", str(out)],
                          cwd=harness.ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    install = "existing" if name == "existing-openstack.yaml" else "devstack"
    steps = [s.name for s in chain_for(install, {"smokeTest"})]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"{i}-{s}" for i, s in enumerate(steps, 1)]
    assert (out / "local.conf").exists() == (install == "devstack")
    for i, step in enumerate(steps, 1):
        assert (out / f"{i}-{step}" / "command.sh").read_text() == texts(step, scripts_of(steps))[0]
        assert step == UPLOAD or texts(step, [])[0] == command(step, "apply")
    params = (out / f"{steps.index('external-gateway') + 1}-external-gateway" / "params.env").read_text()
    config = yaml.safe_load(text)["config"]
    if install == "existing":
        assert f"CLOUD={config['openstack-on-aws:openstack']['cloud']}\n" in params
    assert "AAABAMockCiphertext" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())


def test_render_and_the_program_send_the_same_parameters(machine, tmp_path):
    """One contract, one table: what render writes is what the program sends (existing machine)."""
    config = {"openstack-on-aws:host": {**HOST}, "openstack-on-aws:portForwards": [FORWARD],
              "openstack-on-aws:sshPrivateKey": {"secure": "AAABAMock=="}}
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text(yaml.safe_dump({"config": config}))
    sys.path.insert(0, str(harness.ROOT / "tools"))
    import render

    render.render(None, tmp_path / "out", config_file=stack)
    for i, step in enumerate(chain_for("devstack", {"smokeTest"}), 1):
        sent = unwrap_rpc_secret(machine.one(f"dev-{step.name}").inputs["stdin"])
        given = "stdin.sh" if step.name == UPLOAD else "params.env"
        written = (tmp_path / "out" / f"{i}-{step.name}" / given).read_text()
        sent = sent.replace(harness.MOCK_ROUTER_ID, "<router id from external-gateway>")
        sent = sent.replace(harness.MOCK_GATEWAY_PORT_ID, "<gateway port id from external-gateway>")
        sent = sent.replace(f"ADMIN_PASSWORD={harness.MOCK_ADMIN_PASSWORD}", "ADMIN_PASSWORD=<secret: masked>")
        pems = {"SERVER_CERT": (harness.MOCK_SERVER_PEM, "<server certificate from tls, base64>"),
                "CA_CERT": (harness.MOCK_CA_PEM, "<CA certificate from tls, base64>"),
                "SERVER_KEY": (harness.SECRET_TLS_KEYS["-server-key"], "<secret: masked>")}
        for key, (pem, shown) in pems.items():
            sent = sent.replace(f"{key}={base64.b64encode(pem.encode()).decode()}\n", f"{key}={shown}\n")
        assert written == sent, step.name
    assert json.dumps(machine.outputs["floatingIps"])


# ---- property-based: the existing host's registered IPs ---------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.integers(2, 200), st.lists(st.integers(1, 40), max_size=5, unique=True))
def test_floating_ips_must_follow_the_provider_ip(start, offsets):
    """Any contiguous run after providerIp is accepted (in any order); any gap is refused by key."""
    provider = IPv4Address("10.0.2.0") + start
    floating = {str(provider + o): "198.51.100.9" for o in offsets}
    contiguous = sorted(offsets) == list(range(1, len(offsets) + 1)) and start + len(offsets) < 255
    config = {"host": {**HOST, "providerIp": str(provider), "providerGateway": "10.0.2.1",
                       "floatingIps": floating}, "sshPrivateKey": "k"}
    if contiguous:
        s = load_settings(harness.config_strings(config))
        assert s.host is not None and sorted(s.host.floating_ips) == [provider + i for i in range(1, len(offsets) + 1)]
    else:
        with pytest.raises(SettingsError) as err:
            load_settings(harness.config_strings(config))
        assert any(p.startswith("openstack-on-aws:host.") for p in err.value.problems), err.value.problems
