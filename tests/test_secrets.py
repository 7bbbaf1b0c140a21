"""Secrets end to end: the whole program under mocks never carries a secret value in plain.

The scan is generic: it walks every input of every registered resource and every stack output,
so it covers whatever resources the program grows. Secret values are those of the secret config
keys, every `SECRET_*` string the mocks hand out (tests/harness.py) and whatever the program
itself exports as secret. A value is "in plain" anywhere outside a Pulumi secret (the engine's
secret signature object that the harness records for secret inputs).
"""

from __future__ import annotations

import json

import pytest

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


def mock_secrets() -> set[str]:
    """Every secret value the mocks produce (harness.SECRET_PRIVATE_KEY and any later SECRET_*)."""
    return {
        v for k, v in vars(harness).items() if k.startswith("SECRET_") and isinstance(v, str) and v
    }


def secret_values(result: harness.Result, config_secrets: set[str]) -> set[str]:
    values = set(config_secrets) | mock_secrets()
    for key in result.secret_outputs:
        values |= {s for _, s in harness.strings(result.outputs[key], False) if len(s) >= MIN_SECRET_LEN}
    return values


def _variants(secret: str) -> set[str]:
    """The secret and the forms it may take in a command line or JSON: stripped, one line, escaped."""
    forms = {secret, secret.strip(), json.dumps(secret)[1:-1]}
    forms |= {line for line in secret.splitlines() if len(line) >= MIN_SECRET_LEN and "-----" not in line}
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def plain_leaks(result: harness.Result, secrets: set[str]) -> list[str]:
    """Where a secret value appears outside a Pulumi secret: resource inputs, outputs, warnings."""
    forms = set().union(*(_variants(s) for s in secrets)) if secrets else set()
    leaks = []
    for r in result.resources:
        for path, text in harness.strings(r.inputs, True):
            leaks += [f"{r.type} {r.name} input {path}" for f in forms if f in text]
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


def test_scan_finds_a_plain_secret() -> None:
    """The scanner itself: a secret in a plain input or output is found, a wrapped one is not."""
    fake = harness.Result(
        resources=[
            harness.Registered(
                type="command:remote:Command", name="leaky", parent="", custom=True, dependencies=[],
                delete_before_replace=False, ignore_changes=[], replace_on_changes=[],
                additional_secret_outputs=[], custom_timeouts={}, deleted_with="",
                inputs={
                    "create": "echo 'c2VjcmV0LXZhbHVl' | base64 -d",
                    "stdin": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                              "value": "PW=secret-value-xyz"},
                },
            )
        ],
        urns={},
        outputs={"hidden": "secret-value-xyz", "shown": "x secret-value-xyz"},
        secret_outputs={"hidden"},
    )
    assert plain_leaks(fake, {"c2VjcmV0LXZhbHVl", "secret-value-xyz"}) == [
        "command:remote:Command leaky input .create",
        "output shown",
    ]


def test_generated_secrets_stay_secret(generated: harness.Result) -> None:
    secrets = secret_values(generated, set())
    assert harness.SECRET_PRIVATE_KEY in secrets
    assert plain_leaks(generated, secrets) == []


def test_generated_private_key_is_a_secret_output(generated: harness.Result) -> None:
    assert generated.outputs["sshPrivateKey"] == harness.SECRET_PRIVATE_KEY
    assert "sshPrivateKey" in generated.secret_outputs


def test_configured_secrets_stay_secret(configured: harness.Result) -> None:
    secrets = secret_values(configured, {CONFIG_PRIVATE_KEY, CONFIG_ADMIN_PASSWORD})
    assert plain_leaks(configured, secrets) == []
    # A configured key pair is the user's: the program does not export the private half.
    assert "sshPrivateKey" not in configured.outputs


@pytest.mark.parametrize("case", ["generated", "configured"])
def test_outputs_carrying_secrets_are_secret(case: str, request: pytest.FixtureRequest) -> None:
    result: harness.Result = request.getfixturevalue(case)
    config = {CONFIG_PRIVATE_KEY, CONFIG_ADMIN_PASSWORD} if case == "configured" else set()
    forms = set().union(*(_variants(s) for s in config | mock_secrets()))
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
