"""onhost/remote.py: the stdin parameters of a step (`params()`) and the command text's upload."""

from __future__ import annotations

import pytest

from onhost import remote


def test_params_are_key_value_lines_in_order() -> None:
    assert remote.params({"ROUTER_ID": "r-1", "GATEWAY_IP": "10.42.2.10", "FORWARDS": ""}) == (
        "ROUTER_ID=r-1\nGATEWAY_IP=10.42.2.10\nFORWARDS=\n"
    )
    assert remote.params({"N": 3, "A_2": "x=y"}) == "N=3\nA_2=x=y\n"  # str() of a value; '=' in it kept


@pytest.mark.parametrize("key", ["router_id", "1KEY", "KEY-NAME", "KEY NAME", "", "K=V", "KEY\n"])
def test_params_refuse_a_key_the_scripts_could_not_read(key: str) -> None:
    with pytest.raises(ValueError, match="parameter name"):
        remote.params({"GOOD": "1", key: "value"})


@pytest.mark.parametrize("value", ["two\nlines", "carriage\rreturn", "trailing\n"])
def test_params_refuse_a_value_of_more_than_one_line(value: str) -> None:
    # A second line would be read as a parameter of its own (KEY=value injection).
    with pytest.raises(ValueError, match="parameter SECRET must be one line") as err:
        remote.params({"SECRET": value})
    assert value not in str(err.value)  # the value, maybe a secret, is not echoed


def test_a_script_holding_the_heredoc_end_marker_is_refused(monkeypatch, tmp_path) -> None:
    (tmp_path / "lib.sh").write_text("# lib\n")
    (tmp_path / "evil.sh").write_text("echo a\nOPENSTACK_ON_AWS_EOF\nrm -rf /\n")
    monkeypatch.setattr(remote, "STEPS_DIR", tmp_path)
    with pytest.raises(ValueError, match="evil.sh contains the line OPENSTACK_ON_AWS_EOF"):
        remote.command("evil", "apply")


def test_settings_for_the_script_go_on_its_sudo_line() -> None:
    text = remote.command("gateway-mac", "apply", state="/s", env={"OOA_ROUTER_WAIT": "0"})
    script = "/usr/local/lib/openstack-on-aws/gateway-mac.sh"
    assert text.endswith(f"exec sudo -n OOA_STATE=/s OOA_ROUTER_WAIT=0 {script} apply\n")
    assert text.replace(" OOA_ROUTER_WAIT=0", "") == remote.command("gateway-mac", "apply", state="/s")


@pytest.mark.parametrize("env", [{"PATH": "/tmp"}, {"OOA_WAIT": "1 x"}, {"OOA_WAIT": "$(reboot)"}, {"OOA_WAIT": ""}])
def test_settings_for_the_script_are_ooa_words_only(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="env must be OOA_NAME=word settings"):
        remote.command("gateway-mac", "apply", env=env)
