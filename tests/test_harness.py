"""tests/harness.py reads the stack outputs as the engine receives them (`engine_outputs`)."""

from __future__ import annotations

import pulumi

from tests import harness


def test_outputs_are_read_as_the_engine_gets_them() -> None:
    """Values through the SDK's own serialization: whole numbers as `pulumi stack output --json`
    shows them, a secret anywhere inside makes the output secret, plain lists stay plain."""
    mocks = harness.Mocks()  # the engine's answer whether it takes secrets: the mock monitor's
    pulumi.runtime.set_mocks(mocks, project=harness.PROJECT, stack="dev", monitor=harness.RecordingMonitor(mocks))
    values, secret = harness.engine_outputs({
        "forwards": [{"publicPort": 522, "tenantIp": "192.168.100.10"}],
        "nested": {"plain": "a", "key": pulumi.Output.secret("s3cret")},
        "count": pulumi.Output.from_input(2),
        "ratio": 0.5,
    })
    assert values == {
        "forwards": [{"publicPort": 522, "tenantIp": "192.168.100.10"}],
        "nested": {"plain": "a", "key": "s3cret"},
        "count": 2,
        "ratio": 0.5,
    }
    assert isinstance(values["forwards"][0]["publicPort"], int)
    assert secret == {"nested"}


def test_a_program_run_reads_every_output_once() -> None:
    result = harness.run_program({"portForwards": [
        {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}]})
    assert result.outputs["portForwards"] == [
        {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}]
    assert {"sshPrivateKey", "adminPassword", "cloudsYaml"} <= result.secret_outputs
    assert "portForwards" not in result.secret_outputs
