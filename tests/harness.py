"""Run the real program (`__main__.py`) under Pulumi's mocks and record what it registers.

No Pulumi CLI or cloud is involved: `pulumi.runtime.set_mocks` stands in for the engine, the
`Mocks` below for the providers. `run_program(config)` returns every registered resource's
request (type, parent, dependencies, options, inputs) and every stack output with its secretness,
read as the engine receives them (`engine_outputs`).

Secret outputs are marked as the engine marks them: each provider SDK registers its resources with
`additionalSecretOutputs` (from the provider's schema: random.RandomPassword `result`/`bcryptHash`,
tls.PrivateKey's private keys), and the recording monitor answers with those outputs wrapped as
secrets, so the program sees them as secret Outputs as it would in a real deployment. Their values
are kept in `Result.generated_secrets`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import runpy
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.rpc import is_rpc_secret, wrap_rpc_secret
from pulumi.runtime.stack import massage, wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "openstack-on-aws"

# What AWS would answer for the instance types the tests use.
INSTANCE_TYPES = {
    "m8i.2xlarge": {"maximumNetworkInterfaces": 4, "maximumIpv4AddressesPerInterface": 15, "bareMetal": False,
                    "defaultVcpus": 8},
    "m8i.xlarge": {"maximumNetworkInterfaces": 4, "maximumIpv4AddressesPerInterface": 15, "bareMetal": False,
                   "defaultVcpus": 4},
    "c7i.metal-24xl": {"maximumNetworkInterfaces": 15, "maximumIpv4AddressesPerInterface": 50, "bareMetal": True},
    "m5.large": {"maximumNetworkInterfaces": 3, "maximumIpv4AddressesPerInterface": 10, "bareMetal": False,
                 "defaultVcpus": 2},
    "t3.nano": {"maximumNetworkInterfaces": 2, "maximumIpv4AddressesPerInterface": 2, "bareMetal": False},
    "t2.nano": {"maximumNetworkInterfaces": 1, "maximumIpv4AddressesPerInterface": 2, "bareMetal": False},
}
MOCK_AMI = "ami-0mockubuntu2404"
SECRET_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nbW9jay1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n"
MOCK_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockMockMockMockMockMockMockMockMockMock"
# The instance's SSH host key pair (components/host.py), as pulumi-tls returns it (trailing newline).
SECRET_HOST_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\naG9zdC1rZXktbW9jaw==\n-----END OPENSSH PRIVATE KEY-----\n"
)
MOCK_HOST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostHostHostHostHostHostHostHostHostHostHost\n"


def mock_host_key(name: str) -> tuple[str, str]:
    """(private, public) OpenSSH host key pair pulumi-tls answers for the PrivateKey `name`: the
    controller's (`<stack>-host-key`) are the constants above; a compute node's
    (`<stack>-compute-<i>-host-key`) its own, derived from the name, so that a test can tell whose key
    reached which user data and connection."""
    if not re.search(r"-compute-\d+-host-key$", name):
        return SECRET_HOST_PRIVATE_KEY, MOCK_HOST_PUBLIC_KEY
    digest = hashlib.sha256(f"host-key:{name}".encode()).digest()
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + digest  # RFC 8709 public key
    body = base64.b64encode(f"mock host private key of {name}".encode()).decode()
    private = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    return private, f"ssh-ed25519 {base64.b64encode(blob).decode()}\n"


def fake(kind: str, name: str) -> str:
    """A deterministic mock value (mac, ip or id) for resource `name`."""
    digest = hashlib.sha256(f"{kind}:{name}".encode()).digest()
    if kind == "mac":
        return "0e:" + ":".join(f"{b:02x}" for b in digest[:5])
    if kind == "ip":
        return f"198.51.{digest[0]}.{digest[1] % 250 + 1}"
    return digest.hex()[:17]


# The stack's TLS (components/tls.py), as pulumi-tls returns it: one PEM per certificate, and a
# private key per key name (the server's is a secret the tls-front step carries on its stdin).
MOCK_CA_PEM = "-----BEGIN CERTIFICATE-----\nbW9jay1jYS1jZXJ0\n-----END CERTIFICATE-----\n"
MOCK_SERVER_PEM = "-----BEGIN CERTIFICATE-----\nbW9jay1zZXJ2ZXItY2VydA==\n-----END CERTIFICATE-----\n"
SECRET_TLS_KEYS = {
    suffix: f"-----BEGIN EC PRIVATE KEY-----\n{fake('id', suffix)}\n-----END EC PRIVATE KEY-----\n"
    for suffix in ("-ca-key", "-server-key")
}


def _private_key(name: str) -> dict[str, str]:
    for suffix, pem in SECRET_TLS_KEYS.items():
        if name.endswith(suffix):
            return {"privateKeyPem": pem, "publicKeyPem": "public of " + name}
    private, public = mock_host_key(name) if name.endswith("-host-key") else (SECRET_PRIVATE_KEY, MOCK_PUBLIC_KEY)
    return {"privateKeyOpenssh": private, "privateKeyPem": private, "publicKeyOpenssh": public}


# Computed outputs per resource type: (name, inputs) -> extra outputs.
COMPUTED: dict[str, Any] = {
    "aws:ec2/networkInterface:NetworkInterface": lambda n, i: {
        "macAddress": fake("mac", n),
        "privateIp": (i.get("privateIpLists") or i.get("privateIps") or ["10.0.0.1"])[0],
    },
    "aws:ec2/eip:Eip": lambda n, i: {"publicIp": fake("ip", n), "allocationId": "eipalloc-" + fake("id", n)},
    "aws:ec2/instance:Instance": lambda n, i: {"arn": "arn:aws:ec2:::instance/" + n},
    "aws:ec2/keyPair:KeyPair": lambda n, i: {"keyName": n},
    "tls:index/privateKey:PrivateKey": lambda n, i: _private_key(n),
    "tls:index/selfSignedCert:SelfSignedCert": lambda n, i: {"certPem": MOCK_CA_PEM},
    "tls:index/certRequest:CertRequest": lambda n, i: {"certRequestPem": "csr of " + n},
    "tls:index/locallySignedCert:LocallySignedCert": lambda n, i: {"certPem": MOCK_SERVER_PEM},
}


class Mocks(pulumi_mocks.Mocks):
    def __init__(self) -> None:
        self.invokes: list[str] = []  # every invoke token the program called, in order

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        outputs = dict(args.inputs)
        extra = COMPUTED.get(args.typ)
        if extra:
            outputs.update(extra(args.name, args.inputs))
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi_mocks.MockCallArgs):
        self.invokes.append(args.token)
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            known = INSTANCE_TYPES.get(args.args["instanceType"])
            if known is None:  # as a provider reports a failed invoke: failures, not an exception
                return {}, [("instanceType", f"InvalidInstanceType: {args.args['instanceType']}")]
            return {"instanceType": args.args["instanceType"], **known}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": MOCK_AMI, "imageId": MOCK_AMI, "name": "ubuntu-noble-24.04-mock"}
        raise NotImplementedError(args.token)


@dataclass
class Registered:
    """One RegisterResource request, decoded."""

    type: str
    name: str
    parent: str
    custom: bool
    dependencies: list[str]
    delete_before_replace: bool
    ignore_changes: list[str]
    replace_on_changes: list[str]
    additional_secret_outputs: list[str]
    custom_timeouts: dict[str, str]
    deleted_with: str
    inputs: dict[str, Any]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: Mocks, prior: dict[str, dict[str, Any]] | None = None):
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.urns: dict[str, str] = {}
        self.generated_secrets: set[str] = set()
        self.prior = prior or {}

    def _ignore_changes(self, request) -> None:
        """The engine's `ignoreChanges`: an ignored input takes its value from the state (`prior`:
        resource name -> its recorded inputs), which the provider then gets and answers with."""
        recorded = self.prior.get(request.name)
        if not recorded or not request.ignoreChanges:
            return
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        for name in request.ignoreChanges:
            if name in recorded:
                inputs[name] = recorded[name]
        request.object.CopyFrom(_sync_await(rpc.serialize_properties(inputs, {})))

    def RegisterResource(self, request):
        self._ignore_changes(request)
        response = super().RegisterResource(request)
        self._mark_secret_outputs(request, response)
        self.urns[response.urn] = request.name
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        timeouts = request.customTimeouts
        self.registered.append(
            Registered(
                type=request.type,
                name=request.name,
                parent=request.parent,
                custom=request.custom,
                dependencies=list(request.dependencies),
                delete_before_replace=request.deleteBeforeReplace,
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                custom_timeouts={"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete},
                deleted_with=request.deletedWith,
                inputs=inputs,
            )
        )
        return response

    def _mark_secret_outputs(self, request, response) -> None:
        """Wrap the outputs the resource names in `additionalSecretOutputs` as secrets, as the engine does."""
        names = set(request.additionalSecretOutputs)
        if not names or not response.HasField("object"):
            return
        state = rpc.deserialize_properties(response.object, keep_unknowns=True)
        inputs = set(request.object.fields) if request.HasField("object") else set()
        for key in names & set(state):
            if key not in inputs:  # made by the provider (e.g. a password), not an input given back
                self.generated_secrets |= {text for _, text in strings(reveal(state[key])) if text}
            state[key] = wrap_rpc_secret(state[key])
        response.object.CopyFrom(_sync_await(rpc.serialize_properties(state, {})))


@dataclass
class Result:
    resources: list[Registered]
    urns: dict[str, str]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    generated_secrets: set[str] = field(default_factory=set)
    """Values of the outputs the providers mark secret (see the module docstring)."""
    invokes: list[str] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def one(self, name: str) -> Registered:
        (found,) = [r for r in self.resources if r.name == name]
        return found

    def name_of(self, urn: str) -> str:
        return self.urns[urn]

    def depends_on(self, name: str) -> set[str]:
        return {self.name_of(u) for u in self.one(name).dependencies}


def config_strings(config: dict[str, Any]) -> dict[str, str]:
    """Config as Pulumi hands it to the program: full keys, structured values as JSON."""
    out = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        out[full] = value if isinstance(value, str) else json.dumps(value)
    return out


BASE_CONFIG: dict[str, Any] = {"aws:region": "us-east-1", "allowedCidrs": ["203.0.113.0/24"]}


def run_program(config: dict[str, Any] | None = None, secret_keys: list[str] | None = None,
                stack: str = "dev", base: dict[str, Any] | None = None,
                prior: dict[str, dict[str, Any]] | None = None) -> Result:
    """Run `__main__.py` under mocks with `config` (short keys get the project namespace) on top of
    `base` (default BASE_CONFIG, the AWS mode's required keys); `prior`: the state's inputs of
    resources by name, for those registered with `ignoreChanges`."""
    full = config_strings({**(BASE_CONFIG if base is None else base), **(config or {})})
    pulumi.runtime.set_all_config(full, [k if ":" in k else f"{PROJECT}:{k}" for k in secret_keys or []])
    mocks = Mocks()
    monitor = RecordingMonitor(mocks, prior)
    pulumi.runtime.settings.ROOT.set(None)  # a fresh root stack: no outputs left from an earlier run
    # nor an earlier run's failure (as pulumi's own `mocks.test` starts)
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    warnings: list[str] = []
    original_warn = pulumi.log.warn
    pulumi.log.warn = lambda msg, *a, **k: warnings.append(msg)  # type: ignore[assignment]
    try:
        try:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        finally:
            _sync_await(wait_for_rpcs())  # also on failure: every registration is recorded
        result = Result(resources=monitor.registered, urns=monitor.urns, warnings=warnings,
                        generated_secrets=monitor.generated_secrets, invokes=mocks.invokes)
        root = pulumi.runtime.settings.get_root_resource()
        result.outputs, result.secret_outputs = engine_outputs(root.outputs)  # type: ignore[union-attr]
    finally:
        pulumi.log.warn = original_warn  # type: ignore[assignment]
    return result

def engine_outputs(exported: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The stack outputs as the engine gets them at the end of a real run: massaged and serialized
    by the SDK's own code (the root stack's `_finish` and `register_outputs`, which the mocks run
    before the program, with no output yet), then decoded as `pulumi stack output --json` shows
    them (whole numbers as ints); with the keys whose value carries a secret anywhere inside.

    Not `Output.from_input` on each value: that makes an Output and a task of every element of
    every list and dict (5,000 for 1,000 port forwards), which no deployment does."""
    wire = _sync_await(rpc.serialize_properties(massage(exported, []), {}))
    values = rpc.deserialize_properties(wire, keep_unknowns=True)
    secret = {key for key, value in values.items() if _carries_secret(value)}
    return {key: _json_numbers(reveal(value)) for key, value in values.items()}, secret


def _carries_secret(value: Any) -> bool:
    if is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(_carries_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_carries_secret(v) for v in value)
    return False


def _json_numbers(value: Any) -> Any:
    """Protobuf numbers are doubles; the engine's JSON writes a whole one as an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


# ---- the remote steps (components/openstack.py) ----
MOCK_ROUTER_ID = "6f1d3c2a-0b4e-4c1f-9a7d-2e5b8c9d0a11"
MOCK_GATEWAY_PORT_ID = "a3b2c1d0-e9f8-4a7b-8c6d-5e4f3a2b1c0d"
MOCK_ADMIN_PASSWORD = "MockGeneratedPassword24c"
COMPUTED["command:remote:Command"] = lambda n, i: {
    "stdout": json.dumps({"router_id": MOCK_ROUTER_ID, "gateway_port_id": MOCK_GATEWAY_PORT_ID})
    if n.endswith("-external-gateway")
    else "",
    "stderr": "",
}
COMPUTED["random:index/randomPassword:RandomPassword"] = lambda n, i: {
    "result": MOCK_ADMIN_PASSWORD,
    "bcryptHash": "$2a$10$mock",
}


def strings(value: Any, skip_secrets: bool = False) -> Iterator[tuple[str, str]]:
    """(path, text) of every string leaf; with skip_secrets, not those inside a Pulumi secret."""

    def walk(v: Any, path: str) -> Iterator[tuple[str, str]]:
        if skip_secrets and is_rpc_secret(v):
            return
        if isinstance(v, dict):
            for k, sub in v.items():
                yield from walk(sub, f"{path}.{k}")
        elif isinstance(v, list | tuple):
            for i, sub in enumerate(v):
                yield from walk(sub, f"{path}[{i}]")
        elif isinstance(v, str):
            yield path, v
        elif v is not None and not isinstance(v, bool | int | float):
            yield path, str(v)  # assets and the like: their text

    yield from walk(value, "")


def reveal(value: Any) -> Any:
    """`value` with every Pulumi secret inside it unwrapped (to read what a secret carries)."""
    if is_rpc_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v) for v in value]
    return value


def command_failure(command: str, returncode: int, output: str) -> str:
    """The message pulumi-command v1.2.1 fails a step with (provider/pkg/provider/remote/
    commandOutputs.go: `fmt.Errorf("%w: running %q:\n%s", err, cmd, stdout and stderr)`; Go's %q
    quotes as JSON does for this text): what `pulumi up` shows of a failing step."""
    return f"Process exited with status {returncode}: running {json.dumps(command)}:\n{output}"
