"""Secrets end to end: the whole program under mocks never carries a secret value in plain.

The scan is generic: it walks every input of every registered resource and every stack output,
so it covers whatever resources the program grows. Secret values are those of the secret config
keys, every output the providers mark secret (random.RandomPassword `result`, tls.PrivateKey's
private keys: `harness.Result.generated_secrets`) and whatever the program itself exports as
secret. A value is "in plain" anywhere outside a Pulumi secret (the engine's secret signature
object that the harness records for secret inputs) -- except in a remote command's text, where a
secret wrapper is no protection: pulumi-command prints the whole command when it fails. There,
every string (create/update/delete, environment, the connection but its credentials) is read
through its secret wrappers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.runtime.rpc import wrap_rpc_secret

from tests import harness

CONFIG_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nY29uZmlnLXByaXZhdGUta2V5LWZvci10ZXN0cw==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
CONFIG_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIConfigKeyConfigKeyConfigKeyConfigKeyConfig user@host"
CONFIG_ADMIN_PASSWORD = "Config-Admin-Passw0rd-xyz"
SECRET_KEYS = ["sshPrivateKey", "adminPassword"]
FORWARDS = [{"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}]
MIN_SECRET_LEN = 8  # shorter leaves of a secret output (e.g. a port) are not secrets on their own

REMOTE_COMMAND = "command:remote:Command"
# What a remote command shows of itself (pulumi-command v1.2.1 puts the command in its errors).
COMMAND_TEXT = ("create", "update", "delete", "environment")
# The connection's credentials (secret in pulumi-command's schema): the one place a key belongs.
CONNECTION_CREDENTIALS = {"privateKey", "password", "privateKeyPassword"}


def secret_values(result: harness.Result, config_secrets: set[str]) -> set[str]:
    values = set(config_secrets) | result.generated_secrets
    for key in result.secret_outputs:
        values |= {s for _, s in harness.strings(result.outputs[key], False) if len(s) >= MIN_SECRET_LEN}
    return values


def _variants(secret: str) -> set[str]:
    """The secret and the forms it may take in a command line or JSON: stripped, one line, escaped."""
    forms = {secret, secret.strip(), json.dumps(secret)[1:-1]}
    forms |= {line for line in secret.splitlines() if len(line) >= MIN_SECRET_LEN and "-----" not in line}
    # Base64: how the tls-front step carries the server key (one stdin line).
    forms.add(base64.b64encode(secret.encode()).decode())
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def _without_credentials(connection: Any) -> Any:
    if isinstance(connection, dict):
        return {k: _without_credentials(v) for k, v in connection.items() if k not in CONNECTION_CREDENTIALS}
    return connection


def command_text(inputs: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, text) of every string a remote command shows, secret-wrapped or not."""
    for key in COMMAND_TEXT:
        for path, text in harness.strings(harness.reveal(inputs.get(key))):
            yield f".{key}{path}", text
    for path, text in harness.strings(_without_credentials(harness.reveal(inputs.get("connection")))):
        yield f".connection{path}", text


def plain_leaks(result: harness.Result, secrets: set[str]) -> list[str]:
    """Where a secret value appears outside a Pulumi secret (or in a command's text at all)."""
    forms = set().union(*(_variants(s) for s in secrets)) if secrets else set()
    leaks = []
    for r in result.resources:
        for path, text in harness.strings(r.inputs, True):
            leaks += [f"{r.type} {r.name} input {path}" for f in forms if f in text]
        if r.type == REMOTE_COMMAND:
            for path, text in command_text(r.inputs):
                leaks += [f"{r.type} {r.name} command {path}" for f in forms if f in text]
    for key, value in result.outputs.items():
        if key in result.secret_outputs:
            continue
        for path, text in harness.strings(value, False):
            leaks += [f"output {key}{path}" for f in forms if f in text]
    for warning in result.warnings:
        leaks += [f"warning {warning[:40]!r}" for f in forms if f in warning]
    return sorted(set(leaks))


@pytest.fixture(scope="module")
def generated() -> harness.Result:
    """No key pair or admin password configured: the program generates them."""
    return harness.run_program({"portForwards": FORWARDS})


@pytest.fixture(scope="module")
def configured() -> harness.Result:
    """Key pair and admin password from the stack's config, set as secrets."""
    return harness.run_program(
        {
            "portForwards": FORWARDS,
            "sshPublicKey": CONFIG_PUBLIC_KEY,
            "sshPrivateKey": CONFIG_PRIVATE_KEY,
            "adminPassword": CONFIG_ADMIN_PASSWORD,
        },
        secret_keys=SECRET_KEYS,
    )


def _fake_command(inputs: dict[str, Any]) -> harness.Registered:
    return harness.Registered(
        type=REMOTE_COMMAND, name="leaky", parent="", custom=True, dependencies=[],
        delete_before_replace=False, ignore_changes=[], replace_on_changes=[],
        additional_secret_outputs=[], custom_timeouts={}, deleted_with="", inputs=inputs,
    )


def test_harness_self_check_the_scanner_finds_plain_and_wrapped_leaks() -> None:
    """A self-check of the scanner above (not of the program): what it must find, and what not.

    The program's own tests are the ones below it (test_*_secrets_stay_secret).
    """
    fake = harness.Result(
        resources=[
            _fake_command({
                "create": "echo 'c2VjcmV0LXZhbHVl' | base64 -d",
                "update": wrap_rpc_secret("run --password secret-value-xyz"),  # wrapped: still shown on failure
                "environment": wrap_rpc_secret({"X": wrap_rpc_secret("secret-value-xyz")}),
                "connection": wrap_rpc_secret(
                    {"host": "h", "user": "secret-value-xyz", "privateKey": wrap_rpc_secret("secret-value-xyz")}
                ),
                "stdin": wrap_rpc_secret("PW=secret-value-xyz"),  # stdin, wrapped: where secrets belong
            }),
            harness.Registered(
                type="aws:ec2/instance:Instance", name="quiet", parent="", custom=True, dependencies=[],
                delete_before_replace=False, ignore_changes=[], replace_on_changes=[],
                additional_secret_outputs=[], custom_timeouts={}, deleted_with="",
                inputs={"userData": wrap_rpc_secret("secret-value-xyz"), "tags": {"x": "secret-value-xyz"}},
            ),
        ],
        urns={},
        outputs={"hidden": "secret-value-xyz", "shown": "x secret-value-xyz"},
        secret_outputs={"hidden"},
    )
    assert plain_leaks(fake, {"c2VjcmV0LXZhbHVl", "secret-value-xyz"}) == [
        "aws:ec2/instance:Instance quiet input .tags.x",
        "command:remote:Command leaky command .connection.user",
        "command:remote:Command leaky command .create",
        "command:remote:Command leaky command .environment.X",
        "command:remote:Command leaky command .update",
        "command:remote:Command leaky input .create",
        "output shown",
    ]


def test_generated_secrets_stay_secret(generated: harness.Result) -> None:
    # The generated key pair and admin password, secret as their providers mark them.
    assert {harness.SECRET_PRIVATE_KEY, harness.MOCK_ADMIN_PASSWORD} <= generated.generated_secrets
    assert harness.SECRET_HOST_PRIVATE_KEY in generated.generated_secrets  # the host key pair's private half
    # the TLS front's server key (tls-front carries it base64 on its stdin) and the CA's key
    assert set(harness.SECRET_TLS_KEYS.values()) <= generated.generated_secrets
    assert plain_leaks(generated, secret_values(generated, set())) == []


def test_configured_secrets_stay_secret(configured: harness.Result) -> None:
    # Both secrets are configured: the only one generated is the instance's SSH host key (always made
    # by the program, installed by cloud-init), and it stays secret too (plain_leaks below).
    # The Tls component's keys (the CA's, the TLS front's server key) are generated in every mode.
    assert configured.generated_secrets == {harness.SECRET_HOST_PRIVATE_KEY, *harness.SECRET_TLS_KEYS.values()}
    secrets = secret_values(configured, {CONFIG_PRIVATE_KEY, CONFIG_ADMIN_PASSWORD})
    assert plain_leaks(configured, secrets) == []


@pytest.mark.parametrize("case", ["generated", "configured"])
def test_outputs_carrying_secrets_are_secret(case: str, request: pytest.FixtureRequest) -> None:
    result: harness.Result = request.getfixturevalue(case)
    config = {CONFIG_PRIVATE_KEY, CONFIG_ADMIN_PASSWORD} if case == "configured" else set()
    forms = set().union(*(_variants(s) for s in config | result.generated_secrets))
    carrying = {
        key for key, value in result.outputs.items()
        if any(f in text for _, text in harness.strings(value, False) for f in forms)
    }
    assert carrying <= result.secret_outputs, carrying - result.secret_outputs


def test_a_bad_secret_setting_is_not_echoed() -> None:
    """A rejected admin password (too short) is named in the error, its value is not."""
    short = "Short-pw-9"
    with pytest.raises(Exception) as err:  # noqa: B017 - pulumi.RunError from the program
        harness.run_program({"adminPassword": short}, secret_keys=SECRET_KEYS)
    assert "adminPassword" in str(err.value)
    assert short not in str(err.value)


def test_the_scanner_finds_the_server_key_in_base64_outside_a_secret_stdin() -> None:
    """Self-check: tls-front carries the server key base64-encoded on one stdin line; the same
    stdin unwrapped (not a Pulumi secret) is a leak the scan reports."""
    key = harness.SECRET_TLS_KEYS["-server-key"]
    line = "SERVER_KEY=" + base64.b64encode(key.encode()).decode() + "\n"
    plain = harness.Result(resources=[_fake_command({"stdin": line})], urns={})
    wrapped = harness.Result(resources=[_fake_command({"stdin": wrap_rpc_secret(line)})], urns={})
    assert plain_leaks(plain, {key}) == ["command:remote:Command leaky input .stdin"]
    assert plain_leaks(wrapped, {key}) == []
