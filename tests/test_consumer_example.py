"""examples/consumer under Pulumi's mocks: it reads this stack's outputs and uses them, over TLS.

The StackReference is mocked with the outputs this stack exports (the names and meanings of the
README's outputs contract: https `keystoneAuthUrl`, `caCertificate`). Checked: the
explicit OpenStack provider is configured from those outputs (https auth URL, the admin password as
a secret, the stack's CA as `cacertFile`, `insecure` false), every OpenStack resource is registered
with that provider, the floating IP is one of `floatingIps`, the router is the stack's, and bad
outputs (plain http, no floating IPs) stop the program. What the real provider and cloud do with
it is for a real deployment (the lab proves the TLS front with openstackclient).
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime.rpc import is_rpc_secret
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from tests import harness

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "consumer"
PROJECT = "openstack-on-aws-consumer"
STACK_NAME = "my-org/openstack-on-aws/dev"
CA = "-----BEGIN CERTIFICATE-----\nstack-ca\n-----END CERTIFICATE-----\n"
SECRET_ADMIN = "Stack-Admin-Passw0rd-xyz"
ROUTER = "6f1d3c2a-0b4e-4c1f-9a7d-2e5b8c9d0a11"


def stack_outputs(**over: Any) -> dict[str, Any]:
    outputs = {
        "keystoneAuthUrl": "https://198.51.100.7/identity/v3",
        "horizonUrl": "https://198.51.100.7/dashboard",
        "caCertificate": CA,
        "adminPassword": SECRET_ADMIN,
        "routerId": ROUTER,
        "floatingIps": {"10.42.2.12": "203.0.113.12", "10.42.2.11": "203.0.113.11"},
    }
    outputs.update(over)
    return outputs


class ConsumerMocks(harness.Mocks):
    def __init__(self, outputs: dict[str, Any]):
        self.outputs = outputs
        self.references: list[str] = []

    def new_resource(self, args):
        if args.typ == "pulumi:pulumi:StackReference":
            self.references.append(args.inputs["name"])
            return args.inputs["name"], {**args.inputs, "outputs": self.outputs, "secretOutputNames": ["adminPassword"]}
        rid, outputs = super().new_resource(args)
        if args.typ == "openstack:networking/floatingIp:FloatingIp":
            outputs.setdefault("address", args.inputs.get("address"))
        return rid, outputs


class ProviderRecordingMonitor(harness.RecordingMonitor):
    def __init__(self, mocks):
        super().__init__(mocks)
        self.providers: dict[str, str] = {}

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)
        self.providers[request.name] = request.provider
        return response


def run_example(outputs: dict[str, Any], config: dict[str, str] | None = None):
    full = {f"{PROJECT}:stackName": STACK_NAME, **{f"{PROJECT}:{k}": v for k, v in (config or {}).items()}}
    pulumi.runtime.set_all_config(full, [])
    mocks = ConsumerMocks(outputs)
    monitor = ProviderRecordingMonitor(mocks)
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False, monitor=monitor)
    try:
        runpy.run_path(str(EXAMPLE / "__main__.py"), run_name="__main__")
    finally:
        _sync_await(wait_for_rpcs())
    root = pulumi.runtime.settings.get_root_resource()
    exported = {k: _sync_await(pulumi.Output.from_input(v).future()) for k, v in root.outputs.items()}  # type: ignore[union-attr]
    return mocks, monitor, exported


def test_provider_is_configured_from_the_stack_outputs_with_its_ca():
    mocks, monitor, _ = run_example(stack_outputs())
    assert mocks.references == [STACK_NAME]
    (provider,) = [r for r in monitor.registered if r.type == "pulumi:providers:openstack"]
    inputs = provider.inputs
    assert inputs["authUrl"] == "https://198.51.100.7/identity/v3"
    assert inputs["cacertFile"] == CA  # the stack's CA itself (path or contents)
    assert inputs["insecure"] in (False, "false")  # certificates are verified
    assert inputs["userName"] == "admin" and inputs["tenantName"] == "admin"
    assert inputs["endpointType"] == "public"
    assert is_rpc_secret(inputs["password"]) and inputs["password"]["value"] == SECRET_ADMIN


def test_every_openstack_resource_uses_that_provider():
    _, monitor, _ = run_example(stack_outputs())
    (provider,) = [r for r in monitor.registered if r.type == "pulumi:providers:openstack"]
    provider_urn = next(u for u, n in monitor.urns.items() if n == provider.name)
    cloud = [r for r in monitor.registered if r.type.startswith("openstack:")]
    assert {r.type for r in cloud} >= {
        "openstack:networking/network:Network",
        "openstack:networking/subnet:Subnet",
        "openstack:compute/instance:Instance",
        "openstack:networking/floatingIp:FloatingIp",
        "openstack:networking/floatingIpAssociate:FloatingIpAssociate",
    }
    for r in cloud:
        assert monitor.providers[r.name].startswith(provider_urn + "::"), r.name


def test_the_floating_ip_router_and_exports_come_from_the_stack():
    _, monitor, exported = run_example(stack_outputs())
    by_type = {r.type: r for r in monitor.registered}
    fip = by_type["openstack:networking/floatingIp:FloatingIp"].inputs
    assert fip["address"] == "10.42.2.11" and fip["pool"] == "public"  # the lowest of floatingIps
    assert by_type["openstack:networking/routerInterface:RouterInterface"].inputs["routerId"] == ROUTER
    assert exported["publicIp"] == "203.0.113.11"
    assert exported["sshCommand"] == "ssh cirros@203.0.113.11"
    _, monitor, exported = run_example(stack_outputs(), {"floatingIp": "10.42.2.12"})
    fip = next(r for r in monitor.registered if r.type == "openstack:networking/floatingIp:FloatingIp")
    assert fip.inputs["address"] == "10.42.2.12" and exported["publicIp"] == "203.0.113.12"


@pytest.mark.parametrize(
    "outputs,config,message",
    [
        (stack_outputs(keystoneAuthUrl="http://198.51.100.7/identity/v3"), {}, "is not https"),
        (stack_outputs(floatingIps={}), {}, "has no floatingIps"),
        (stack_outputs(), {"floatingIp": "10.42.2.99"}, "is not one of the stack's floatingIps"),
    ],
)
def test_unusable_outputs_stop_the_program(outputs, config, message):
    # In a fresh interpreter: a failed program leaves pending RPCs and its error in the Pulumi
    # runtime's process-wide state, which would fail the next test's program.
    code = (
        "import json, sys\n"
        "from tests.test_consumer_example import run_example\n"
        "try:\n"
        "    run_example(json.loads(sys.argv[1]), json.loads(sys.argv[2]))\n"
        "except Exception as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(outputs), json.dumps(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert message in proc.stdout
