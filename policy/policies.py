"""The policies of the openstack-on-aws policy pack (`__main__.py` only builds the pack from them).

Props are what the engine sends a policy pack: a resource's inputs, camelCase keys
(`metadataOptions.httpTokens`). The stack's own config reaches the pack too (the engine passes it
as PULUMI_CONFIG), which is how the security-group policy knows the configured port forwards.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi_policy.policy as _policy_module
from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY

# The step table (standard library only) is the project's: the pack runs from policy/, one level down.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
from onhost.chain import CHAIN, Step  # noqa: E402
from onhost.compute_chain import NODE_CHAIN, NodeStep  # noqa: E402

PROJECT = "openstack-on-aws"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
ENI = "aws:ec2/networkInterface:NetworkInterface"
ENI_ATTACHMENT = "aws:ec2/networkInterfaceAttachment:NetworkInterfaceAttachment"
REMOTE_COMMAND = "command:remote:Command"

WORLD = {"0.0.0.0/0", "::/0"}
# What config/ingress.py plans (components/network.py registers it) on a port forward's (or forward
# range's) ingress rule, and on a floating-IP ingress rule.
FORWARD_DESCRIPTION = "forward to "
FLOATING_DESCRIPTION = "floating IP ingress: "
# How the provider ENI is recognised: this tag, or the description components/host.py gives it.
ROLE_TAG = f"{PROJECT}:role"
PROVIDER_DESCRIPTION = f"{PROJECT} provider"
# Config keys whose values are secrets (config/settings.py SECRET_KEYS).
SECRET_CONFIG_KEYS = ("sshPrivateKey", "adminPassword")
COMMAND_FIELDS = ("create", "update", "delete")
# The remote connection's credentials (secret in pulumi-command's schema): where a key belongs.
CONNECTION_CREDENTIALS = ("privateKey", "password", "privateKeyPassword")

SECRET_PATTERNS = [
    ("a private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    # NAME_PASSWORD=literal / password: literal; a `$VAR`, `%s` or quoted expansion is not a literal.
    (
        "a password assignment",
        re.compile(
            r"(?i)\b\w*(?:password|passwd|secret)\w*[ \t]*[=:][ \t]*[\"']?(?P<v>[^\s\"'$`{}()%<>\\]{8,})"
        ),
    ),
    (
        "a password option",
        re.compile(r"(?i)--[\w-]*password(?:=|[ \t]+)[\"']?(?P<v>[^\s\"'$`{}()%<>\\-][^\s\"'$`{}()%<>\\]{7,})"),
    ),
]


# ---- secrets as the engine sends them ------------------------------------------------------


class SecretText(str):
    """A string that the engine sent marked as a Pulumi secret (it compares like the plain text)."""


def _mark_secrets(value: Any, secret: bool = False) -> Any:
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
            return _mark_secrets(value.get("value"), True)
        return {k: _mark_secrets(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_secrets(v, secret) for v in value]
    if secret and isinstance(value, str):
        return SecretText(value)
    return value


def keep_secret_marks() -> None:
    """Keep the engine's secret marks on string props, as `SecretText`.

    The engine sends secret inputs wrapped (KeepSecrets), but pulumi-policy 1.21's `Analyze`
    unwraps them to plain values before a policy sees them. This swaps the deserializer that
    module uses for one that first turns each secret string into a `SecretText` (a `str`, so
    every other policy reads it as before). Idempotent.
    """
    original = _policy_module.deserialize_properties
    if getattr(original, "_keeps_secret_marks", False):
        return

    def deserialize(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
        return original(_mark_secrets(props), proxy_secrets)

    deserialize._keeps_secret_marks = True  # type: ignore[attr-defined]
    _policy_module.deserialize_properties = deserialize


# ---- helpers ---------------------------------------------------------------------------------


def _stack_config(key: str) -> str | None:
    return pulumi.runtime.get_config(f"{PROJECT}:{key}")


def configured_forwards() -> set[tuple[str, int, str]]:
    """(protocol, public port, source CIDR) of each `portForwards` entry in the stack's config."""
    out = set()
    for fwd in _config_list("portForwards"):
        if "publicPort" not in fwd:
            continue
        for cidr in fwd.get("sourceCidrs") or []:
            out.add((str(fwd.get("protocol", "tcp")), int(fwd["publicPort"]), str(cidr)))
    return out


def configured_floating_ingress() -> set[tuple[str, int, int, str]]:
    """(protocol, from, to, source CIDR) of each `floatingIpIngress` entry with explicit sources."""
    out = set()
    for rule in _config_list("floatingIpIngress"):
        protocol = str(rule.get("protocol", "tcp"))
        if protocol == "icmp":
            low = high = -1
        elif "port" in rule:
            low = int(rule["port"])
            high = int(rule.get("toPort") or low)
        else:
            continue
        for cidr in rule.get("sourceCidrs") or []:
            out.add((protocol, low, high, str(cidr)))
    return out


def _config_list(key: str) -> list[dict[str, Any]]:
    """A structured list key of the stack's config; [] when absent or malformed."""
    raw = _stack_config(key)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _num(value: Any) -> Any:
    """Numbers arrive as floats (protobuf); show 522, not 522.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _protocol(value: Any) -> str:
    return {"6": "tcp", "17": "udp", "1": "icmp"}.get(str(value), str(value).lower())


def _ingress_rules(args: ResourceValidationArgs) -> Iterator[dict[str, Any]]:
    """Each ingress rule of the resource as {protocol, from, to, cidrs, description}."""
    p = args.props
    if args.resource_type == SG_INGRESS_RULE:
        yield {
            "protocol": p.get("ipProtocol"),
            "from": p.get("fromPort"),
            "to": p.get("toPort"),
            "cidrs": [c for c in (p.get("cidrIpv4"), p.get("cidrIpv6")) if c],
            "description": p.get("description") or "",
        }
    elif args.resource_type == SG_RULE and p.get("type") == "ingress":
        yield {
            "protocol": p.get("protocol"),
            "from": p.get("fromPort"),
            "to": p.get("toPort"),
            "cidrs": [*(p.get("cidrBlocks") or []), *(p.get("ipv6CidrBlocks") or [])],
            "description": p.get("description") or "",
        }
    elif args.resource_type == SECURITY_GROUP:
        for rule in p.get("ingress") or []:
            yield {
                "protocol": rule.get("protocol"),
                "from": rule.get("fromPort"),
                "to": rule.get("toPort"),
                "cidrs": [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])],
                "description": rule.get("description") or "",
            }


def is_provider_eni(props: Mapping[str, Any]) -> bool:
    tags = props.get("tags") or {}
    return tags.get(ROLE_TAG) == "provider" or str(props.get("description") or "").startswith(
        PROVIDER_DESCRIPTION
    )


def secret_findings(text: str, secret_values: list[str]) -> list[str]:
    """Why `text` (a command line) carries a secret; empty if it does not."""
    found = []
    if isinstance(text, SecretText):
        found.append("a Pulumi secret value")
    for what, pattern in SECRET_PATTERNS:
        if pattern.search(text):
            found.append(what)
    if any(v and v in text for v in secret_values):
        found.append("a secret value of the stack's config")
    return found


# ---- validations -----------------------------------------------------------------------------


def validate_imdsv2(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return
    meta = args.props.get("metadataOptions") or {}
    if meta.get("httpEndpoint") == "disabled" or meta.get("httpTokens") == "required":
        return
    report_violation(
        f"{args.name}: the instance metadata service must require IMDSv2 tokens "
        "(metadataOptions.httpTokens = \"required\")",
        None,
    )


def validate_encrypted_volumes(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == EBS_VOLUME:
        if args.props.get("encrypted") is not True:
            report_violation(f"{args.name}: EBS volume must be encrypted", None)
        return
    if args.resource_type != INSTANCE:
        return
    root = args.props.get("rootBlockDevice") or {}
    if root.get("encrypted") is not True:
        report_violation(f"{args.name}: root volume must be encrypted (rootBlockDevice.encrypted)", None)
    for i, dev in enumerate(args.props.get("ebsBlockDevices") or []):
        if dev.get("encrypted") is not True:
            report_violation(f"{args.name}: ebsBlockDevices[{i}] must be encrypted", None)


def validate_no_world_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (SG_INGRESS_RULE, SG_RULE, SECURITY_GROUP):
        return
    forwards = floating = None
    for rule in _ingress_rules(args):
        for cidr in rule["cidrs"]:
            if cidr not in WORLD:
                continue
            if forwards is None or floating is None:
                forwards, floating = configured_forwards(), configured_floating_ingress()
            protocol = _protocol(rule["protocol"])
            low, high = rule["from"], rule["to"]
            description = str(rule["description"])
            if low is not None and high is not None:
                low, high = int(low), int(high)
                # A forward rule covers a range of public ports, each one a configured forward.
                if description.startswith(FORWARD_DESCRIPTION) and 0 < low <= high and all(
                    (protocol, port, cidr) in forwards for port in range(low, high + 1)
                ):
                    continue
                if description.startswith(FLOATING_DESCRIPTION) and (protocol, low, high, cidr) in floating:
                    continue
            report_violation(
                f"{args.name}: ingress {protocol} {_num(rule['from'])}-{_num(rule['to'])} from {cidr} is open to the "
                "world and is neither a configured port forward (portForwards[].sourceCidrs) nor a configured "
                "floating-IP ingress (floatingIpIngress[].sourceCidrs)",
                None,
            )


# The host's clear-text ports: DevStack's Apache (Horizon and the APIs) and nova-novncproxy.
# The tls-front step serves both on 443; a rule opening them lets passwords and tokens cross in clear.
CLEARTEXT_HOST_PORTS = {80: "Horizon and the OpenStack APIs in plain HTTP", 6080: "the noVNC console proxy"}


def validate_no_cleartext_host_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (SG_INGRESS_RULE, SG_RULE, SECURITY_GROUP):
        return
    for rule in _ingress_rules(args):
        description = str(rule["description"])
        # Port forwards and floating-IP ingress reach tenant VMs (a web server on 80), not the host;
        # a rule without CIDRs names a security group (the compute nodes' cluster rule): inside the VPC.
        if description.startswith((FORWARD_DESCRIPTION, FLOATING_DESCRIPTION)) or not rule["cidrs"]:
            continue
        protocol = _protocol(rule["protocol"])
        if protocol in ("-1", "all"):
            covered = sorted(CLEARTEXT_HOST_PORTS)
        elif protocol == "tcp" and rule["from"] is not None and rule["to"] is not None:
            low, high = int(rule["from"]), int(rule["to"])
            covered = [p for p in sorted(CLEARTEXT_HOST_PORTS) if low <= p <= high]
        else:
            covered = []
        for port in covered:
            report_violation(
                f"{args.name}: ingress tcp/{port} ({CLEARTEXT_HOST_PORTS[port]}) opens the host in clear text; "
                "Horizon, the APIs and noVNC are served over TLS on 443 (the tls-front step)",
                None,
            )


def validate_provider_eni(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != ENI or not is_provider_eni(args.props):
        return
    if args.props.get("sourceDestCheck") is not False:
        report_violation(
            f"{args.name}: the provider ENI must have sourceDestCheck = false (tenant traffic "
            "leaves it with its own addresses)",
            None,
        )


def validate_provider_attachment(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Each provider ENI is attached once, at device index 1 (the instance's second NIC)."""
    enis = [r for r in args.resources if r.resource_type == ENI and is_provider_eni(r.props)]
    attachments = [r for r in args.resources if r.resource_type == ENI_ATTACHMENT]
    for eni in enis:
        mine = []
        for att in attachments:
            by_prop = att.property_dependencies.get("networkInterfaceId")
            deps = by_prop if by_prop else [d for d in att.dependencies if d.resource_type == ENI]
            if any(d.urn == eni.urn for d in deps):
                mine.append(att)
        if len(mine) != 1:
            report_violation(
                f"{eni.name}: the provider ENI must have exactly one NetworkInterfaceAttachment "
                f"(found {len(mine)})",
                eni.urn,
            )
        for att in mine:
            if att.props.get("deviceIndex") != 1:
                report_violation(
                    f"{att.name}: the provider ENI must be attached at device index 1 "
                    f"(got {_num(att.props.get('deviceIndex'))})",
                    att.urn,
                )


def _connection_texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) of the connection's strings but its credentials (also in a proxy connection)."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if key not in CONNECTION_CREDENTIALS:
                yield from _connection_texts(sub, f"{path}.{key}")
    elif isinstance(value, str):
        yield path, value


def command_texts(props: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, text) of each string a remote command shows of itself; `SecretText` if marked secret.

    The connection's strings come as plain `str`: pulumi-command marks the whole connection secret
    (it holds the key), so a secret mark there says nothing about the string itself.
    """
    for field in COMMAND_FIELDS:
        text = props.get(field)
        if isinstance(text, str):
            yield f"the {field} command", text
    environment = props.get("environment")
    if isinstance(environment, Mapping):
        for key, value in environment.items():
            if isinstance(value, str):  # as KEY=value, so a password literal reads as an assignment
                line = f"{key}={value}"
                yield f"environment variable {key}", SecretText(line) if isinstance(value, SecretText) else line
    for where, text in _connection_texts(props.get("connection"), "connection"):
        yield where, str(text)  # str() of a SecretText is a plain str


def validate_command_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """No secret in what a remote command shows: its create/update/delete text, its environment,
    its connection (but the credentials), be the secret marked (a Pulumi secret), recognisable (a
    key, a password literal) or a value of the stack's secret config."""
    if args.resource_type != REMOTE_COMMAND:
        return
    secret_values = [v for k in SECRET_CONFIG_KEYS if (v := _stack_config(k))]
    for where, text in command_texts(args.props):
        findings = secret_findings(text, secret_values)
        if findings:
            report_violation(
                f"{args.name}: {where} carries {', '.join(findings)}; pass secrets on stdin "
                "(a failing command's error message shows its whole command line)",
                None,
            )


def step_of(resource_name: str) -> Step | NodeStep | None:
    """The step-table row a remote command is named after (`<stack>-<step>`, a compute node's
    `<stack>-compute-<i>-<step>`), if any."""
    table: list[Step | NodeStep] = [*CHAIN, *NODE_CHAIN]
    rows = [s for s in table if resource_name.endswith(f"-{s.name}")]
    return max(rows, key=lambda s: len(s.name)) if rows else None


def validate_step_secrecy(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A step whose row carries a secret (onhost/chain.py) sends its stdin as a Pulumi secret."""
    if args.resource_type != REMOTE_COMMAND:
        return
    step = step_of(args.name)
    if step is None or not step.secret:
        return
    stdin = args.props.get("stdin")
    if isinstance(stdin, str) and not isinstance(stdin, SecretText):
        report_violation(
            f"{args.name}: step {step.name} carries a secret (onhost/chain.py), but its stdin is not a "
            "Pulumi secret: it would be stored in plain in the state",
            None,
        )


POLICIES = [
    ResourceValidationPolicy(
        name="imdsv2-required",
        description="EC2 instances require IMDSv2 (session tokens) for the instance metadata service.",
        validate=validate_imdsv2,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="encrypted-volumes",
        description="Root and EBS volumes are encrypted.",
        validate=validate_encrypted_volumes,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="no-world-ingress",
        description="No security-group ingress from 0.0.0.0/0 or ::/0 except the configured port forwards "
        "and floating-IP ingress.",
        validate=validate_no_world_ingress,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="no-cleartext-host-ingress",
        description="No security-group ingress to the host's plain HTTP (80) or noVNC (6080) ports: the TLS "
        "front serves them on 443 (port forwards and floating-IP ingress, which reach tenant VMs, excepted).",
        validate=validate_no_cleartext_host_ingress,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="provider-eni-source-dest-check-off",
        description="The provider ENI has source/destination checking off.",
        validate=validate_provider_eni,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    StackValidationPolicy(
        name="provider-eni-at-device-index-1",
        description="The provider ENI is attached once, at device index 1.",
        validate=validate_provider_attachment,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="no-secret-in-remote-command",
        description="No remote command's create/update/delete text, environment or connection (but its "
        "credentials) carries a secret.",
        validate=validate_command_secrets,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="secret-step-stdin-is-secret",
        description="A remote step that carries a secret (the step table's `secret` column) has a secret stdin.",
        validate=validate_step_secrecy,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
