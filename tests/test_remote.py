"""onhost/remote.py: the stdin parameters of a step (`params()`), the upload row's command and the
script on its stdin that installs the scripts, its remove, and the steps' one-line command texts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from onhost import remote
from onhost.chain import CHAIN, scripts_of
from onhost.compute_chain import CONTROLLER_SCRIPTS, DISCOVER, NODE_CHAIN
from tests.harness import command_failure

SUDO_SHIM = Path(__file__).resolve().parent / "shims" / "sudo"
# Every step that runs a script: the controller's rows, the compute nodes' rows and discover-hosts.
STEPS = sorted({s.name for s in (*CHAIN, *NODE_CHAIN, DISCOVER)} - {remote.UPLOAD})


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
        remote.upload(["evil"])


def test_settings_for_the_script_go_on_its_sudo_line() -> None:
    text = remote.command("gateway-mac", "apply", state="/s", env={"OOA_ROUTER_WAIT": "0"})
    script = "/usr/local/lib/openstack-on-aws/gateway-mac.sh"
    assert text.startswith(f"exec sudo -n OOA_STATE=/s OOA_ROUTER_WAIT=0 {script} apply # ")
    assert text.replace(" OOA_ROUTER_WAIT=0", "") == remote.command("gateway-mac", "apply", state="/s")


@pytest.mark.parametrize("env", [{"PATH": "/tmp"}, {"OOA_WAIT": "1 x"}, {"OOA_WAIT": "$(reboot)"}, {"OOA_WAIT": ""}])
def test_settings_for_the_script_are_ooa_words_only(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="env must be OOA_NAME=word settings"):
        remote.command("gateway-mac", "apply", env=env)


# ---- the command texts ---------------------------------------------------------------------------


def test_a_steps_command_is_one_short_line_without_any_script() -> None:
    """What pulumi-command repeats in a failure's message: one line, no script body."""
    lib = (remote.STEPS_DIR / "lib.sh").read_text()
    for step in STEPS:
        body = remote.script_path(step).read_text()
        for action in ("apply", "remove"):
            text = remote.command(step, action)
            assert len(text.encode()) <= 300 and "\n" not in text, (step, text)
            assert text.startswith(f"exec sudo -n OOA_STATE=/var/lib/openstack-on-aws "
                                   f"/usr/local/lib/openstack-on-aws/{step}.sh {action} # ")
            assert "set -euo pipefail" not in text and body not in text and lib not in text


def test_the_upload_holds_lib_and_each_script_whole() -> None:
    text = remote.upload(STEPS)
    for name in ("lib", *STEPS):
        body = (remote.STEPS_DIR / f"{name}.sh").read_text()
        assert f"<<'OPENSTACK_ON_AWS_EOF'\n{body}OPENSTACK_ON_AWS_EOF\n" in text, name
    # Its own lines never wait for a password (the scripts' lines are the heredocs' text).
    own = text.split("<<'OPENSTACK_ON_AWS_EOF'\n")[0] + text.rsplit("OPENSTACK_ON_AWS_EOF\n", 1)[1]
    assert all(line.startswith("sudo -n ") for line in own.splitlines() if "sudo" in line), own
    # The row's command is one constant line; the upload is its stdin, any other row's its parameters.
    assert remote.texts(remote.UPLOAD, STEPS) == (remote.UPLOAD_COMMAND, remote.unload())
    assert remote.stdin(remote.UPLOAD, STEPS, {}) == text
    assert remote.stdin("gateway-mac", STEPS, {"ROUTER_ID": "r"}) == "ROUTER_ID=r\n"
    assert remote.texts("gateway-mac", STEPS) == (remote.command("gateway-mac", "apply"),
                                                   remote.command("gateway-mac", "remove"))


def _all_texts(scripts: list[str]) -> dict[str, str]:
    out = {step: remote.command(step, "apply") + remote.command(step, "remove") for step in scripts}
    return {**out, remote.UPLOAD: remote.stdin(remote.UPLOAD, scripts, {})}


def test_a_change_of_lib_changes_every_steps_text_and_of_a_script_only_its_own(monkeypatch, tmp_path) -> None:
    """A changed text re-runs the step (an update: apply again), and only where what it runs changed."""
    steps = tmp_path / "steps"
    shutil.copytree(remote.STEPS_DIR, steps)
    monkeypatch.setattr(remote, "STEPS_DIR", steps)
    before = _all_texts(STEPS)
    with (steps / "lib.sh").open("a") as f:
        f.write("# a change\n")
    after_lib = _all_texts(STEPS)
    assert [k for k in before if before[k] != after_lib[k]] == list(before)  # every step and the upload
    with (steps / "gateway-mac.sh").open("a") as f:
        f.write("# a change\n")
    after_one = _all_texts(STEPS)
    assert sorted(k for k in before if after_lib[k] != after_one[k]) == ["gateway-mac", remote.UPLOAD]


# ---- on a host: the upload, a failing step, the upload's remove ---------------------------------


def _host(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A prefix and a state folder under tmp_path, and an environment whose `sudo` runs the command
    as the caller (tests/shims/sudo) and nothing else of the shims."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").symlink_to(SUDO_SHIM)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LC_ALL": "C"}
    return tmp_path / "usr/lib/ooa", tmp_path / "var/lib/ooa", env


def _bash(text: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", text], input=stdin, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def _upload(scripts: list[str], prefix: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The upload row as sshd runs it: its command as `bash -c`'s argument, the upload on stdin."""
    return _bash(remote.UPLOAD_COMMAND, env, remote.upload(scripts, str(prefix)))


def test_a_failing_step_shows_its_error_at_the_top_of_pulumi_commands_message(tmp_path) -> None:
    """pulumi-command v1.2.1 fails with `<exit status>: running <the command quoted>:\n<output>`
    (provider/pkg/provider/remote/commandOutputs.go): the error line is in its first lines now."""
    prefix, state, env = _host(tmp_path)
    assert _upload(["port-forwards"], prefix, env).returncode == 0
    text = remote.command("port-forwards", "apply", str(prefix), str(state))
    bad = remote.params({"ROUTER_ID": "6f1d3c2a-0b4e-4c1f-9a7d-2e5b8c9d0a11", "GATEWAY_IP": "10.0.2.10",
                         "FORWARDS": "tcp:70000:192.168.100.10:22"})
    p = _bash(text, env, bad)
    assert p.returncode == 1 and p.stdout == ""
    message = command_failure(text, p.returncode, p.stdout + p.stderr)
    error = "[port-forwards] error: forward 'tcp:70000:192.168.100.10:22': public port '70000' is not a port"
    assert error in message[:500], message[:500]
    assert not state.exists()  # refused before any change


def test_the_upload_installs_the_scripts_and_its_remove_takes_them_and_the_empty_state(tmp_path) -> None:
    prefix, state, env = _host(tmp_path)
    up = _upload(["gateway-mac", "port-forwards"], prefix, env)
    assert up.returncode == 0, up.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["gateway-mac.sh", "lib.sh", "port-forwards.sh"]
    for name in ("lib", "gateway-mac", "port-forwards"):
        assert (prefix / f"{name}.sh").read_text() == (remote.STEPS_DIR / f"{name}.sh").read_text()
    assert os.access(prefix / "gateway-mac.sh", os.X_OK)
    again = _upload(["gateway-mac"], prefix, env)  # an update: the others stay
    assert again.returncode == 0 and (prefix / "port-forwards.sh").exists()
    # A step still keeps state: its scripts stay (they are what undoes it), and it is said.
    (state / "port-forwards").mkdir(parents=True)
    kept = _bash(remote.unload(str(prefix), str(state)), env)
    assert kept.returncode == 0 and "steps still keep state there: port-forwards" in kept.stderr
    assert (prefix / "port-forwards.sh").exists() and state.exists()
    # Every step removed: nothing of the project is left.
    (state / "port-forwards").rmdir()
    gone = _bash(remote.unload(str(prefix), str(state)), env)
    assert gone.returncode == 0 and f"removed {prefix} and {state}" in gone.stderr
    assert not prefix.exists() and not state.exists() and state.parent.exists()
    assert _bash(remote.unload(str(prefix), str(state)), env).returncode == 0  # twice = once


# sshd runs a command as `$SHELL -c <command>`: one argument, which Linux takes up to MAX_ARG_STRLEN
# (32 pages: 131072 bytes with its NUL); a longer one fails before the shell starts (E2BIG).
MAX_ARG_STRLEN = 32 * 4096


def _padded_steps(monkeypatch, tmp_path: Path) -> list[str]:
    """Three fake step scripts of 100 KB each (and lib.sh) as STEPS_DIR: an upload of about 300 KB."""
    steps = tmp_path / "steps"
    steps.mkdir()
    shutil.copy(remote.STEPS_DIR / "lib.sh", steps / "lib.sh")
    names = ["big-1", "big-2", "big-3"]
    for name in names:
        (steps / f"{name}.sh").write_text("#!/bin/bash\n" + f"# {name} {'x' * 96}\n" * 1000 + "echo done\n")
    monkeypatch.setattr(remote, "STEPS_DIR", steps)
    return names


def test_an_upload_far_above_one_arguments_limit_installs_through_the_short_command(monkeypatch, tmp_path) -> None:
    """The upload row's command is one short constant line whatever it installs; an upload of
    about 300 KB, which no single argument could carry, goes on its stdin and installs whole."""
    assert len(remote.UPLOAD_COMMAND) < 80 and "\n" not in remote.UPLOAD_COMMAND
    prefix, _, env = _host(tmp_path)
    names = _padded_steps(monkeypatch, tmp_path)
    text = remote.upload(names, str(prefix))
    assert len(text.encode()) > 2 * MAX_ARG_STRLEN
    with pytest.raises(OSError, match="Argument list too long"):
        _bash(text, env)  # the old way: the upload as the command's text
    assert remote.texts(remote.UPLOAD, names)[0] == remote.UPLOAD_COMMAND
    up = _upload(names, prefix, env)
    assert up.returncode == 0, up.stderr
    for name in ("lib", *names):
        assert (prefix / f"{name}.sh").read_text() == (remote.STEPS_DIR / f"{name}.sh").read_text()
    assert sorted(p.name for p in prefix.iterdir()) == sorted(["lib.sh", *(f"{n}.sh" for n in names)])
    monkeypatch.undo()  # and the largest upload the program sends: the controller's with the nodes' scripts
    largest = scripts_of(s.name for s in CHAIN) + CONTROLLER_SCRIPTS
    up = _upload(largest, prefix, env)
    assert up.returncode == 0, up.stderr
    assert (prefix / f"{largest[-1]}.sh").read_text() == remote.script_path(largest[-1]).read_text()


def test_an_upload_cut_short_installs_nothing_and_fails(monkeypatch, tmp_path) -> None:
    """A stream that ends early (a dropped connection) is not run in part: bash reads the upload
    whole before it runs any of it, so nothing is installed and the row fails."""
    prefix, _, env = _host(tmp_path)
    names = _padded_steps(monkeypatch, tmp_path)
    text = remote.upload(names, str(prefix))
    for cut in (len(text) // 2, len(text) - 3):
        p = _bash(remote.UPLOAD_COMMAND, env, text[:cut])
        assert p.returncode != 0 and not prefix.exists(), (cut, p.stderr)
