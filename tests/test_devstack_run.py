"""What a real DevStack run showed (docs/proven.md), checked here on the step scripts' own functions.

1. install-openstack's progress: `run_stack` runs a stand-in stack.sh (`tests/data/fake-devstack/
   stack.sh`, faithful to DevStack stable/2026.1: xtrace first, then the summary log growing, then
   a banner with the password) and the test reads exactly what the user sees, as it arrives.
2. prepare-host installs what it runs itself (sysctl is procps) before it runs it: `apply` with
   fake `apt-get`, `ip` and `sysctl` on PATH and the host-changing helpers replaced.
3. `nic_by_mac` over fake `/sys/class/net` trees shaped like what the kernel shows (checked on real
   devices in a throw-away network namespace: veth, macvlan, bridge, vxlan, tap; the rest from
   the kernel's source), with a fake `ip` answering the rtnetlink link kind.

The scripts are sourced (they only define their functions then) and the functions run in bash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from components.contract import contract_for_render
from components.openstack import local_conf_for
from config.settings import Settings
from onhost.localconf import (
    INTERFACE_PLACEHOLDER,
    LIBVIRT_PLACEHOLDER,
    LOGFILE,
    PASSWORD_PLACEHOLDER,
)

ROOT = Path(__file__).resolve().parent.parent
STEPS = ROOT / "onhost" / "steps"
FAKE_STACK = ROOT / "tests" / "data" / "fake-devstack" / "stack.sh"
PASSWORD = "Abcdefgh1234-_xyz"
MASKED = "********"
BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _settings_of(script: str, *names: str) -> dict[str, str]:
    """The values of a step script's settings, as the script itself sets them."""
    body = 'set -euo pipefail; . "$1"; shift; for n in "$@"; do printf "%s=%s\\n" "$n" "${!n}"; done'
    proc = subprocess.run(
        ["bash", "-c", body, "_", str(STEPS / script), *names],
        env={"PATH": BASE_PATH},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


# --- 1. install-openstack: the progress the user sees ---

INSTALL = _settings_of("install-openstack.sh", "STACK_LOG", "PROGRESS_LINES", "TAIL_LINES", "STACK_TIMEOUT")
PROGRESS = re.compile(r"^\[install-openstack\] \+(\d\d):(\d\d) (.*)$")
# Runs install-openstack's run_stack on DIR with the log under LOGS, stack.sh as this user.
RUN_STACK = """set -euo pipefail
. "$1"
STACK_LOG=$2/stack.sh.log STACK_SUMMARY=$2/stack.sh.log.summary PROGRESS_POLL=0.2
read -r -a AS_STACK <<<"${AS_STACK_TEST:-}" # default: stack.sh as this user, no sudo
install -d -m 0700 "$STATE"
run_stack "$3"
"""


def test_the_step_follows_the_log_local_conf_sets():
    assert INSTALL["STACK_LOG"] == LOGFILE


def _devstack(tmp: Path) -> tuple[Path, Path]:
    """A DevStack checkout with the fake stack.sh and the rendered local.conf (LOGFILE under tmp)."""
    devstack, logs = tmp / "devstack", tmp / "logs"
    devstack.mkdir()
    shutil.copy(FAKE_STACK, devstack / "stack.sh")
    conf = local_conf_for(contract_for_render(Settings(allowed_cidrs=["203.0.113.0/24"]), "<key>"))
    conf = conf.replace(PASSWORD_PLACEHOLDER, PASSWORD).replace(f"LOGFILE={LOGFILE}", f"LOGFILE={logs}/stack.sh.log")
    conf = conf.replace(LIBVIRT_PLACEHOLDER, "qemu").replace(INTERFACE_PLACEHOLDER, "ens6")
    (devstack / "local.conf").write_text(conf)
    return devstack, logs


def _read_bounded(proc: subprocess.Popen, start: float, bound: float = 60):
    """The step's stderr lines with the seconds since START each arrived, and its stdout; fails (after
    stopping it) when the step has not ended within BOUND seconds or its output stays open."""
    stderr, stdout = proc.stderr, proc.stdout
    assert stderr is not None and stdout is not None
    seen: list[tuple[float, str]] = []
    out: list[str] = []
    readers = [
        threading.Thread(target=lambda: seen.extend((time.monotonic() - start, ln.rstrip("\n")) for ln in stderr)),
        threading.Thread(target=lambda: out.append(stdout.read())),
    ]
    for r in readers:
        r.start()
    try:
        status = proc.wait(timeout=bound)
        for r in readers:
            r.join(timeout=max(0.1, bound - (time.monotonic() - start)))
        assert not any(r.is_alive() for r in readers), f"the step ended ({status}) but its output stayed open"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the step did not end within {bound} s; it said: {[line for _, line in seen]}")
    return status, seen, "".join(out)


def _run_stack(
    tmp: Path,
    mode: str,
    step: str = "1",
    timeout: str | None = None,
    script: str = "install-openstack.sh",
    leave: bool = False,
    as_stack: str = "",
):
    """run_stack (as SCRIPT has it) against the fake: (status, [(seconds since start, line the user
    sees)], stdout, logs). AS_STACK: how stack.sh is run (default: as this user)."""
    devstack, logs = _devstack(tmp)
    env = {
        "AS_STACK_TEST": as_stack,
        "PATH": BASE_PATH,
        "OOA_STATE": str(tmp / "state"),
        "ADMIN_PASSWORD": PASSWORD,  # set by load_params in apply
        "FAKE_MODE": mode,
        "FAKE_STEP": step,
        **({"STACK_TIMEOUT": timeout} if timeout else {}),
        **({"FAKE_LEAVE": "1"} if leave else {}),
    }
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", RUN_STACK, "_", str(STEPS / script), str(logs), str(devstack)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    status, seen, stdout = _read_bounded(proc, start)
    return status, seen, stdout, logs


def _progress(lines: list[str], pattern: re.Pattern[str] = PROGRESS) -> list[tuple[int, str]]:
    """The progress lines: (elapsed seconds shown, text)."""
    out = []
    for line in lines:
        m = pattern.match(line)
        if m:
            out.append((int(m[1]) * 60 + int(m[2]), m[3]))
    return out


def test_progress_is_the_summary_lines_as_they_happen_with_elapsed_time(tmp_path):
    # A previous run's summary (the link stack.sh leaves) must not be shown as this run's progress.
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "old.summary").write_text("2026-01-01 00:00:00.000 | Starting Keystone (old run)\n")
    (tmp_path / "logs" / "stack.sh.log.summary").symlink_to(tmp_path / "logs" / "old.summary")

    status, seen, stdout, logs = _run_stack(tmp_path, "ok")
    lines = [line for _, line in seen]
    assert status == 0, lines
    assert stdout == ""
    timeout = INSTALL["STACK_TIMEOUT"]
    assert lines[0] == f"[install-openstack] running stack.sh (timeout {timeout}); full log: {logs}/stack.sh.log"
    progress = _progress(lines)
    assert len(progress) == len(lines) - 1  # nothing else: no xtrace, no banner
    texts = [text for _, text in progress]
    assert re.fullmatch(rf"stack\.sh log {re.escape(str(logs))}/stack\.sh\.log\.\d{{4}}-\d\d-\d\d-\d{{6}}", texts[0])
    assert texts[1:5] == [
        "Installing package prerequisites",
        "Installing OpenStack project source",
        "Starting Keystone",
        "Starting Nova",
    ]
    assert re.fullmatch(r"stack\.sh completed in \d+ seconds\.", texts[5]) and len(texts) == 6
    assert "(old run)" not in "\n".join(lines)
    assert PASSWORD not in "\n".join(lines)  # the banner ("The password: ...") is not shown

    # Elapsed time: the fake sleeps 1 s after each of the three phases before "Starting Nova".
    elapsed = [seconds for seconds, _ in progress]
    assert elapsed == sorted(elapsed)
    assert elapsed[0] <= 1 and 2 <= elapsed[4] <= 6
    # As they happen: the first phase reached the reader seconds before the run ended.
    arrived = {line: at for at, line in seen}
    first = next(at for line, at in arrived.items() if line.endswith("Installing package prerequisites"))
    assert seen[-1][0] - first >= 2

    assert not (tmp_path / "state" / "install-openstack" / "output").exists()
    assert not (tmp_path / "state" / "install-openstack" / "rc").exists()


def test_progress_is_bounded_and_masked(tmp_path):
    status, seen, _, logs = _run_stack(tmp_path, "chatty", step="0")
    lines = [line for _, line in seen]
    assert status == 0
    bound = int(INSTALL["PROGRESS_LINES"])
    assert len(lines) == 1 + bound + 1
    assert len(_progress(lines)) == bound
    assert lines[-1] == f"[install-openstack] (more in {logs}/stack.sh.log.summary)"
    assert _progress(lines)[1][1] == f"A plugin says: the admin password is {MASKED}"
    assert PASSWORD not in "\n".join(lines)


def test_failure_shows_the_masked_tail_of_this_runs_log(tmp_path):
    status, seen, stdout, logs = _run_stack(tmp_path, "fail")
    lines = [line for _, line in seen]
    assert status == 1 and stdout == ""
    assert [text for _, text in _progress(lines)][1:] == [
        "Installing package prerequisites",
        "Installing OpenStack project source",
        "Starting Keystone",
    ]
    tail_lines = int(INSTALL["TAIL_LINES"])
    header = lines.index(f"[install-openstack] stack.sh failed (1); last {tail_lines} lines of {logs}/stack.sh.log:")
    log = (logs / "stack.sh.log").resolve().read_text().splitlines()
    assert lines[header + 1 : -1] == [line.replace(PASSWORD, MASKED) for line in log[-tail_lines:]]
    assert any(f"mysql -uroot -p{MASKED}" in line for line in lines[header + 1 :])
    assert any("stack.sh failed: full log in" in line for line in lines[header + 1 :])
    assert lines[-1] == f"[install-openstack] error: DevStack install failed; see {logs}/stack.sh.log on the host"
    assert PASSWORD not in "\n".join(lines)


def test_a_run_over_its_time_is_stopped_and_said_so(tmp_path):
    status, seen, _, logs = _run_stack(tmp_path, "ok", step="5", timeout="1s")
    lines = [line for _, line in seen]
    assert status == 1
    assert seen[-1][0] < 5  # stack.sh and its children stopped; nobody waited for the sleep
    assert "[install-openstack] stack.sh did not finish within 1s" in lines
    assert f"[install-openstack] stack.sh failed (124); last 80 lines of {logs}/stack.sh.log:" in lines
    assert "Starting Keystone" not in "\n".join(lines)


def test_failure_before_the_log_shows_the_masked_tail_of_its_output(tmp_path):
    status, seen, _, _ = _run_stack(tmp_path, "early")
    lines = [line for _, line in seen]
    assert status == 1
    tail_lines = int(INSTALL["TAIL_LINES"])
    header = lines.index("[install-openstack] stack.sh failed (1) before it started its log; its last output:")
    output = lines[header + 1 : -1]
    assert len(output) == tail_lines  # of some 3000 lines of xtrace
    assert output[-3:] == [
        "+ echo 'ERROR: stackrc: cannot use this local.conf'",
        "ERROR: stackrc: cannot use this local.conf",
        "+ exit 1",
    ]
    assert f"ADMIN_PASSWORD={MASKED}" in "\n".join(output)  # stackrc traced the password
    assert PASSWORD not in "\n".join(lines)
    assert lines[-1] == "[install-openstack] error: DevStack install failed before it started its log"
    assert not _progress(lines)


def _live(*pids: int) -> list[int]:
    """Those of PIDS that still run (a zombie has ended: this machine's init reaps it when it will)."""
    live = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            live.append(pid)
    return live


def _running(text: str) -> list[int]:
    """The live processes whose command line has TEXT."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return _live(*pids)


@pytest.mark.parametrize("mode", ["fail", "leave"])
def test_the_step_ends_with_stack_sh_and_stops_what_it_left_running(tmp_path, mode):
    """DevStack's create_flavors job, blocked on its fifo after stack.sh failed, holds stack.sh's
    output open (through the log filters too), as on the real host: the step ends with stack.sh, not
    with its output, and stops the job. The same for a run that succeeds and leaves one."""
    status, seen, stdout, logs = _run_stack(
        tmp_path, "ok" if mode == "leave" else mode, step="0", leave=mode == "leave"
    )
    lines = [line for _, line in seen]
    assert seen[-1][0] < 15, lines  # within seconds (the bound on a busy machine), not at the step's timeout
    job = int(re.search(r"^pid = (\d+)$", (tmp_path / "async" / "create_flavors.ini").read_text(), re.M)[1])
    assert not _live(job) and not _running(str(tmp_path / "async" / "create_flavors.fifo"))
    stopped = [
        line for line in lines if line.startswith("[install-openstack] stack.sh has ended; stopping what it left")
    ]
    assert len(stopped) == 1 and "cat x1" in stopped[0] and "bash x" in stopped[0], lines
    texts = [text for _, text in _progress(lines)]
    if mode == "fail":
        assert status == 1 and texts[-1] == "Starting Keystone"
        # the error's line, written by a log filter once stack.sh had ended, is in the tail
        assert any(f"stack.sh failed: full log in {(logs / 'stack.sh.log').resolve()}" in line for line in lines)
        assert lines[-1] == f"[install-openstack] error: DevStack install failed; see {logs}/stack.sh.log on the host"
    else:
        assert status == 0 and re.fullmatch(r"stack\.sh completed in \d+ seconds\.", texts[-1]), lines
    assert stdout == "" and PASSWORD not in "\n".join(lines)
    assert not (tmp_path / "state" / "install-openstack" / "session").exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("sudo") is None or not any(p.pw_name == "nobody" for p in pwd.getpwall()),
    reason="needs root, sudo and the user nobody",
)
def test_through_sudo_stack_sh_and_its_job_stay_in_the_session_the_step_stops():
    """As on the host: stack.sh through the real sudo (Debian's and Ubuntu's sudoers set use_pty)
    as another user. With no terminal in stack.sh's session sudo makes no pty (which would be a
    session of its own), so the job stack.sh leaves is in the session the step stops."""
    base = Path(tempfile.mkdtemp(prefix="ooa-sudo-"))  # not under pytest's root-only folder
    try:
        base.chmod(0o755)
        os.chown(base, pwd.getpwnam("nobody").pw_uid, -1)  # DEST: the fake's async folder and lock
        env = "env FAKE_MODE=fail FAKE_STEP=0"  # sudo resets the environment
        status, seen, _, logs = _run_stack(base, "fail", as_stack=f"sudo -n -u nobody -H {env}")
        lines = [line for _, line in seen]
        assert status == 1 and "Starting Keystone" in "\n".join(lines), lines
        assert seen[-1][0] < 15
        ini = (base / "async" / "create_flavors.ini").read_text()
        assert not _live(int(re.search(r"^pid = (\d+)$", ini, re.M)[1]))
        assert not _running(str(base / "async" / "create_flavors.fifo"))
        assert any("stack.sh has ended; stopping what it left running: " in line for line in lines)
    finally:
        shutil.rmtree(base)


# --- 1b. install-compute: a compute node's stack.sh runs the same way (lib.sh's run_stack) ---

COMPUTE = _settings_of("install-compute.sh", "STACK_LOG", "PROGRESS_LINES", "TAIL_LINES", "STACK_TIMEOUT")
COMPUTE_PROGRESS = re.compile(r"^\[install-compute\] \+(\d\d):(\d\d) (.*)$")


def test_install_compute_has_the_same_settings_but_its_own_timeout():
    assert {k: v for k, v in COMPUTE.items() if k != "STACK_TIMEOUT"} == {
        k: v for k, v in INSTALL.items() if k != "STACK_TIMEOUT"
    }
    assert (COMPUTE["STACK_TIMEOUT"], INSTALL["STACK_TIMEOUT"]) == ("50m", "80m")  # each within its Pulumi timeout


def test_install_compute_shows_the_summary_lines_not_stack_sh_output(tmp_path):
    status, seen, stdout, logs = _run_stack(tmp_path, "ok", script="install-compute.sh")
    lines = [line for _, line in seen]
    assert status == 0, lines
    assert stdout == ""
    assert lines[0] == f"[install-compute] running stack.sh (timeout 50m); full log: {logs}/stack.sh.log"
    progress = _progress(lines, COMPUTE_PROGRESS)
    assert len(progress) == len(lines) - 1  # no xtrace, no banner
    assert [text for _, text in progress][1:5] == [
        "Installing package prerequisites",
        "Installing OpenStack project source",
        "Starting Keystone",
        "Starting Nova",
    ]
    assert PASSWORD not in "\n".join(lines)
    assert not (tmp_path / "state" / "install-compute" / "output").exists()


def test_install_compute_failure_shows_the_masked_tail_of_this_runs_log(tmp_path):
    status, seen, stdout, logs = _run_stack(tmp_path, "fail", script="install-compute.sh")
    lines = [line for _, line in seen]
    assert status == 1 and stdout == ""
    header = lines.index(f"[install-compute] stack.sh failed (1); last 80 lines of {logs}/stack.sh.log:")
    log = (logs / "stack.sh.log").resolve().read_text().splitlines()
    assert lines[header + 1 : -1] == [line.replace(PASSWORD, MASKED) for line in log[-80:]]
    assert lines[-1] == f"[install-compute] error: DevStack install failed; see {logs}/stack.sh.log on the host"
    assert PASSWORD not in "\n".join(lines)


# --- 1c. install_devstack (lib.sh, both install steps): clone, stamp, re-run only on a change ---

# `sudo -n -u stack -H cmd...` runs cmd as is (the test user stands in for `stack`); chown: recorded.
FAKE_SUDO = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do case $1 in -n | -H) shift ;; -u) shift 2 ;; *) break ;; esac; done
exec "$@"
"""
# The step's apply after its checks ("current" when nothing is to do, else install_devstack), or
# its remove (clean_devstack).
INSTALL_DEVSTACK = """set -euo pipefail
. "$1"
DEVSTACK=$2 STACK_LOG=$3/stack.sh.log STACK_SUMMARY=$3/stack.sh.log.summary AS_STACK=() PROGRESS_POLL=0.2
BRANCH=master
if [ "$5" = remove ]; then clean_devstack; exit 0; fi
conf=$(cat "$4")
lock_devstack
if devstack_is_current "$conf"; then echo current; exit 0; fi
install_devstack "$conf"
echo installed
"""


@dataclasses.dataclass
class Run:
    """A started step: its process, and the files its stdout and stderr go to."""

    proc: subprocess.Popen[str]
    out: Path
    err: Path


def _install_run(tmp: Path, conf: str, script: str, action: str = "apply", **fake: str) -> Run:
    """The step's apply (or remove) against a clone of a fake DevStack repository, started: its
    stdout and stderr go to tmp/<action>-<n>.out/.err. FAKE: the fake stack.sh's settings."""
    fakebin = tmp / "bin"
    if not fakebin.exists():
        fakebin.mkdir()
        (fakebin / "sudo").write_text(FAKE_SUDO)
        (fakebin / "chown").write_text('#!/bin/sh\necho "chown $*" >>"$CALLS"\n')
        for name in ("sudo", "chown"):
            (fakebin / name).chmod(0o755)
        repo = tmp / "repo"  # DevStack's repository: the fake stack.sh, unstack.sh and clean.sh say they ran
        repo.mkdir()
        shutil.copy(FAKE_STACK, repo / "stack.sh")
        for name in ("unstack", "clean"):
            (repo / f"{name}.sh").write_text(f'#!/bin/sh\necho {name} >>"$CALLS"\n')
            (repo / f"{name}.sh").chmod(0o755)
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
        subprocess.run([*git, "init", "-q", "-b", "master"], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "fake devstack"], check=True)
    (tmp / "local.conf").write_text(conf)
    env = {
        "PATH": f"{fakebin}:{BASE_PATH}",
        "HOME": str(tmp),
        "OOA_STATE": str(tmp / "state"),
        "ADMIN_PASSWORD": PASSWORD,
        "DEVSTACK_REPO": str(tmp / "repo"),
        "CALLS": str(tmp / "calls"),
        "SYSTEMD_RUN_DIR": str(tmp / "no-systemd"),  # this machine's systemd (if any) is not touched
        "FAKE_STEP": "0",
        **{f"FAKE_{k.upper()}": v for k, v in fake.items()},
    }
    args = [str(STEPS / script), str(tmp / "devstack"), str(tmp / "logs"), str(tmp / "local.conf"), action]
    n = len(list(tmp.glob(f"{action}-*.err")))
    with open(tmp / f"{action}-{n}.out", "w") as out, open(tmp / f"{action}-{n}.err", "w") as err:
        proc = subprocess.Popen(
            ["bash", "-c", INSTALL_DEVSTACK, "_", *args],
            env=env,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    _STARTED.append(proc)
    return Run(proc, tmp / f"{action}-{n}.out", tmp / f"{action}-{n}.err")


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _stop_what_a_test_left(tmp_path):
    """After each test: nothing it started runs on (a failed test's steps, stack.sh sessions)."""
    yield
    sessions = {proc.pid for proc in _STARTED}  # each started in a session of its own
    sessions |= {os.getsid(pid) for pid in _live(*_stack_pids(tmp_path))}
    _STARTED.clear()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) in sessions:
                os.kill(int(stat.parent.name), signal.SIGKILL)


def _finish(run: Run, bound: float = 60) -> subprocess.CompletedProcess[str]:
    """The started step's result, once it ended (within BOUND seconds)."""
    try:
        run.proc.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the step did not end within {bound} s: {run.err.read_text()}")
    return subprocess.CompletedProcess(run.proc.args, run.proc.returncode, run.out.read_text(), run.err.read_text())


def _install_devstack(tmp: Path, conf: str, script: str, **fake: str) -> subprocess.CompletedProcess[str]:
    return _finish(_install_run(tmp, conf, script, **fake))


def _conf(tmp: Path) -> str:
    """The rendered local.conf, its LOGFILE under tmp/logs, as the steps have it (decoded with $(...))."""
    (tmp / "conf").mkdir()
    devstack, _ = _devstack(tmp / "conf")
    return (devstack / "local.conf").read_text().replace(str(tmp / "conf" / "logs"), str(tmp / "logs")).rstrip("\n")


def _calls(tmp: Path) -> list[str]:
    """What ran, in order: stack.sh runs (as "stack.sh"), unstack, clean (chown left out)."""
    calls = (tmp / "calls").read_text().splitlines() if (tmp / "calls").exists() else []
    return [re.sub(r"^stack\.sh \d+$", "stack.sh", c) for c in calls if not c.startswith("chown ")]


def _stack_pids(tmp: Path) -> list[int]:
    calls = (tmp / "calls").read_text().splitlines() if (tmp / "calls").exists() else []
    return [int(c.split()[1]) for c in calls if re.fullmatch(r"stack\.sh \d+", c)]


def _wait_for(what: str, ready, bound: float = 30) -> None:
    deadline = time.monotonic() + bound
    while not ready():
        assert time.monotonic() < deadline, f"no {what} within {bound} s"
        time.sleep(0.05)


SCRIPTS = [("install-openstack.sh", "install-openstack"), ("install-compute.sh", "install-compute")]


@pytest.mark.parametrize(("script", "step"), SCRIPTS)
def test_install_devstack_runs_stack_sh_once_per_branch_and_local_conf(tmp_path, script, step):
    conf = _conf(tmp_path)
    first = _install_devstack(tmp_path, conf, script)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "installed\n"
    assert (tmp_path / "devstack" / "local.conf").read_text() == conf + "\n"
    assert (tmp_path / "devstack" / "local.conf").stat().st_mode & 0o777 == 0o600
    stamp = tmp_path / "state" / step / "stamp"
    assert stamp.read_text() == hashlib.sha256(f"master\n{conf}\n".encode()).hexdigest() + "\n"
    assert "Starting Nova" in first.stderr and PASSWORD not in first.stderr
    assert f"chown stack: {tmp_path}/devstack/local.conf" in (tmp_path / "calls").read_text().splitlines()
    assert _calls(tmp_path) == ["stack.sh"]

    # The same branch and local.conf: nothing runs.
    again = _install_devstack(tmp_path, conf, script)
    assert (again.returncode, again.stdout, again.stderr) == (0, "current\n", "")

    # Another local.conf: the previous run is unstacked, the clone updated, stack.sh runs again.
    changed = _install_devstack(tmp_path, conf + "\n# changed", script)
    assert changed.returncode == 0 and changed.stdout == "installed\n", changed.stderr
    assert f"[{step}] settings changed: unstacking the previous run first" in changed.stderr
    assert _calls(tmp_path) == ["stack.sh", "unstack", "stack.sh"]
    assert stamp.read_text() != hashlib.sha256(f"master\n{conf}\n".encode()).hexdigest() + "\n"


@pytest.mark.parametrize(("script", "step"), SCRIPTS)
def test_a_failed_install_is_unstacked_by_the_next_apply(tmp_path, script, step):
    """After a failure stack.sh must not run over half-started services: the next apply (same
    settings) unstacks first, says so, and succeeds."""
    conf = _conf(tmp_path)
    failed = _install_devstack(tmp_path, conf, script, mode="fail")
    assert failed.returncode == 1 and "error: DevStack install failed" in failed.stderr
    assert not (tmp_path / "state" / step / "stamp").exists()

    retry = _install_devstack(tmp_path, conf, script)
    assert retry.returncode == 0 and retry.stdout == "installed\n", retry.stderr
    assert f"[{step}] the previous install did not finish (failed or interrupted): unstacking it first" in retry.stderr
    assert _calls(tmp_path) == ["stack.sh", "unstack", "stack.sh"]
    assert (tmp_path / "state" / step / "stamp").exists()


@pytest.mark.parametrize(("script", "step"), SCRIPTS)
def test_an_interrupted_install_is_stopped_and_unstacked_by_the_next_apply(tmp_path, script, step):
    """An engine killed mid-install: its apply goes, stack.sh stays (its own session). The next apply
    stops that stack.sh (and what it started), unstacks, and runs its own: never two at once."""
    conf = _conf(tmp_path)
    first = _install_run(tmp_path, conf, script, step="30")
    _wait_for("stack.sh", lambda: _stack_pids(tmp_path))
    os.kill(first.proc.pid, signal.SIGKILL)  # to the apply alone: stack.sh, in its own session, stays
    first.proc.wait()
    old = _stack_pids(tmp_path)[0]
    assert _live(old), "stack.sh should outlive its apply"

    t = time.monotonic()
    retry = _install_devstack(tmp_path, conf, script)
    assert time.monotonic() - t < 20  # not the fake's 30 s phases
    assert retry.returncode == 0 and retry.stdout == "installed\n", retry.stderr
    assert re.search(
        rf"^\[{step}\] stack\.sh of an interrupted run is still running: stopping it \(session \d+\)$",
        retry.stderr,
        re.M,
    ), retry.stderr
    assert f"[{step}] the previous install did not finish (failed or interrupted): unstacking it first" in retry.stderr
    assert _calls(tmp_path) == ["stack.sh", "unstack", "stack.sh"]  # no "two stack.sh at once"
    assert not _live(old) and not _running(str(tmp_path / "async" / "create_flavors.fifo"))


@pytest.mark.parametrize(("script", "step"), SCRIPTS)
def test_two_applies_at_once_never_run_two_stack_sh(tmp_path, script, step):
    """A second apply while the first runs stack.sh (its engine was killed, the apply still on the
    host): the newer one stops the older one's stack.sh, waits for its lock, unstacks and runs."""
    conf = _conf(tmp_path)
    first = _install_run(tmp_path, conf, script, step="30")
    _wait_for("stack.sh", lambda: _stack_pids(tmp_path))
    second = _finish(_install_run(tmp_path, conf, script))
    older = _finish(first)
    assert second.returncode == 0 and second.stdout == "installed\n", second.stderr
    assert older.returncode == 1 and f"[{step}] stack.sh failed (143)" in older.stderr, older.stderr
    assert f"[{step}] another run of {step} holds {tmp_path}/state/{step}.lock" in second.stderr
    assert f"[{step}] the other run's stack.sh is running: stopping it" in second.stderr
    assert _calls(tmp_path) == ["stack.sh", "unstack", "stack.sh"]  # no "two stack.sh at once"
    assert (tmp_path / "state" / step / "stamp").exists()


@pytest.mark.parametrize(("script", "step"), SCRIPTS)
def test_remove_stops_a_running_install_then_cleans(tmp_path, script, step):
    conf = _conf(tmp_path)
    first = _install_run(tmp_path, conf, script, step="30")
    _wait_for("stack.sh", lambda: _stack_pids(tmp_path))
    removed = _finish(_install_run(tmp_path, conf, script, action="remove"))
    assert removed.returncode == 0, removed.stderr
    assert _finish(first).returncode == 1
    assert f"[{step}] the other run's stack.sh is running: stopping it" in removed.stderr
    assert _calls(tmp_path) == ["stack.sh", "clean"]
    assert not _live(*_stack_pids(tmp_path))
    assert not (tmp_path / "devstack").exists() and list((tmp_path / "state").iterdir()) == []  # nor the lock


# --- 2. prepare-host: what the step runs itself is installed before it runs it ---

MAC = "0e:00:00:00:00:02"
# prepare-host's apply with the host-changing helpers that tests/test_steps.py covers on their own
# (the netplan/cloud-init files) or that would change this machine (the `stack` user) recorded.
PREPARE_APPLY = """set -euo pipefail
. "$1"
write_config() { echo write_config >>"$CALLS"; }
ensure_stack_user() { echo ensure_stack_user >>"$CALLS"; }
apply
"""
FAKE_APT = """#!/bin/bash
echo "apt-get $*" >>"$CALLS"
# The package with sysctl: procps (what a minimal image lacks).
if [[ " $* " == *" install "* && " $* " == *" procps "* && -z "${APT_BROKEN:-}" ]]; then
  printf '#!/bin/sh\\necho "sysctl $*" >>"$CALLS"\\n' >"$FAKEBIN/sysctl"
  chmod +x "$FAKEBIN/sysctl"
fi
"""
FAKE_IP = """#!/bin/bash
echo "ip $*" >>"$CALLS"
"""
# dpkg's answer for the packages in $INSTALLED (installed), as `dpkg-query -W -f=...` gives it; for
# any other package: not found (status 1), as for one never installed.
FAKE_DPKG_QUERY = """#!/bin/bash
echo "dpkg-query $*" >>"$CALLS"
pkg=${*: -1}
[[ " $INSTALLED " == *" $pkg "* ]] || { echo "dpkg-query: no packages found matching $pkg" >&2; exit 1; }
printf installed
"""
PREPARE_PACKAGES = ["git", "jq", "iproute2", "iptables", "procps", "python3", "python3-yaml", "sudo"]


def _prepare_apply(tmp: Path, broken_apt: bool = False, installed: list[str] | None = None):
    """prepare-host's apply; dpkg has `installed` (default: every package but procps, as on a
    minimal image); with every package installed, sysctl is there from the start."""
    if installed is None:
        installed = [p for p in PREPARE_PACKAGES if p != "procps"]
    fakebin = tmp / "bin"
    fakebin.mkdir()
    fakes = {"apt-get": FAKE_APT, "ip": FAKE_IP, "dpkg-query": FAKE_DPKG_QUERY}
    if "procps" in installed:
        fakes["sysctl"] = '#!/bin/sh\necho "sysctl $*" >>"$CALLS"\n'
    for name, body in fakes.items():
        (fakebin / name).write_text(body)
        (fakebin / name).chmod(0o755)
    for name in ("python3", "visudo"):  # present on the image; checked after the install
        (fakebin / name).symlink_to("/bin/true")
    for name in ("cloud-init", "netplan", "networkctl"):  # recorded, never this machine's
        (fakebin / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"$CALLS"\n')
        (fakebin / name).chmod(0o755)
    sysfs = _tree(tmp / "sys", [("ens6", MAC, {"device": True})])
    calls = tmp / "calls"
    env = {
        # No sbin: this machine's sysctl (/usr/sbin) is not there, as on a minimal image.
        "PATH": f"{fakebin}:/usr/bin:/bin",
        "OOA_STATE": str(tmp / "state"),
        "NET_SYSFS": str(sysfs),
        "CALLS": str(calls),
        "FAKEBIN": str(fakebin),
        "INSTALLED": " ".join(installed),
        **({"APT_BROKEN": "1"} if broken_apt else {}),
    }
    assert bool(shutil.which("sysctl", path=env["PATH"])) == ("procps" in installed)
    proc = subprocess.run(
        ["bash", "-c", PREPARE_APPLY, "_", str(STEPS / "prepare-host.sh")],
        input=f"PROVIDER_MAC={MAC}\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc, calls.read_text().splitlines() if calls.exists() else []


def test_prepare_host_installs_procps_before_it_runs_sysctl(tmp_path):
    proc, calls = _prepare_apply(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == "cloud-init status --wait"  # cloud-init runs apt too: it goes first
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get") and " install " in c)
    assert " procps " in f"{calls[install]} "
    assert calls.index("sysctl -qw net.ipv6.conf.ens6.disable_ipv6=1") > install
    assert calls.index("write_config") > install  # python3-yaml first: write_config runs it
    assert calls.index("ip link set dev ens6 up") > install
    assert calls[-1] == "ensure_stack_user"
    assert "provider NIC: ens6" in proc.stderr


def test_prepare_host_fetches_nothing_when_every_package_is_installed(tmp_path):
    """A re-run, or an image that has everything (the lab's host: no mirror on its network): dpkg
    says so, apt-get is never run (no index download); the step goes on as when it installed them."""
    proc, calls = _prepare_apply(tmp_path, installed=PREPARE_PACKAGES)
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith("apt-get")]
    assert {c.split()[-1] for c in calls if c.startswith("dpkg-query")} == set(PREPARE_PACKAGES)
    assert "packages already installed" in proc.stderr
    assert "sysctl -qw net.ipv6.conf.ens6.disable_ipv6=1" in calls and calls[-1] == "ensure_stack_user"


def test_prepare_host_installs_all_its_packages_when_one_is_missing(tmp_path):
    proc, calls = _prepare_apply(tmp_path)
    assert proc.returncode == 0, proc.stderr
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt[0].endswith(" update") and apt[1].split()[-len(PREPARE_PACKAGES) :] == PREPARE_PACKAGES
    assert "installing packages: " + " ".join(PREPARE_PACKAGES) in proc.stderr


def test_prepare_host_names_what_is_missing_when_the_install_did_not_provide_it(tmp_path):
    proc, calls = _prepare_apply(tmp_path, broken_apt=True)
    assert proc.returncode == 1
    assert "[prepare-host] error: sysctl not found after installing procps: this step needs it" in proc.stderr
    assert "command not found" not in proc.stderr
    assert not any(c.startswith(("ip ", "write_config")) for c in calls)  # stopped before any change


# --- 3. nic_by_mac: by link kind, over fake /sys/class/net trees ---

# What the kernel shows in sysfs for each kind, and the rtnetlink kind `ip -d -j` reports. Seen on
# real devices (kernel 6.18, iproute2 6.1, in a throw-away namespace i15-probe, since deleted):
# veth and macvlan - type 1, no DEVTYPE, no bus device, kind veth/macvlan; bridge - bridge/,
# DEVTYPE=bridge; vxlan - DEVTYPE=vxlan; tap - tun_flags (tun: type 65534); lo - type 772; and
# nic_by_mac itself found the veth among a bridge, a vxlan and a tap with its MAC. That kernel has
# no vlan, geneve, gre, bond or dummy: from the kernel's source, vlan, geneve and bond set
# DEVTYPE (vlan_type, geneve_type, bond_type), an ipgre device is ARPHRD_IPGRE 778, and an OVS
# internal port (net/openvswitch/vport-internal_dev.c) sets no DEVTYPE and has no bus device:
# only rtnetlink's IFLA_INFO_KIND "openvswitch" tells it from a veth.
KINDS: dict[str, dict] = {
    "pci": {"device": True},  # ENA, ixgbe, ...: a bus device, no kind
    "virtio": {"device": True},
    "veth": {"rtnl": "veth"},
    "macvlan": {"rtnl": "macvlan"},  # systemd-nspawn --network-macvlan
    "bridge": {"dirs": ["bridge"], "devtype": "bridge", "rtnl": "bridge"},
    "ovs-internal": {"rtnl": "openvswitch"},
    "ovs-userspace-internal": {"files": ["tun_flags"], "rtnl": "tun"},  # netdev datapath: a tap
    "vlan": {"devtype": "vlan", "rtnl": "vlan"},
    "vxlan": {"devtype": "vxlan", "rtnl": "vxlan"},
    "geneve": {"devtype": "geneve", "rtnl": "geneve"},
    "gre": {"type": "778", "rtnl": "gre"},
    "gretap": {"rtnl": "gretap"},
    "bond": {"dirs": ["bonding"], "devtype": "bond", "rtnl": "bond"},
    "dummy": {"rtnl": "dummy"},
}
FAKE_RTNL_IP = """#!/bin/bash
# ip -d -j link show dev NAME, as iproute2 prints it (trimmed)
[ "$1 $2 $3 $4 $5" = "-d -j link show dev" ] || exit 2
kind=$(cat "$RTNL/$6" 2>/dev/null) || { echo "Device \\"$6\\" does not exist." >&2; exit 1; }
if [ -n "$kind" ]; then linkinfo=",\\"linkinfo\\":{\\"info_kind\\":\\"$kind\\"}"; else linkinfo=; fi
printf '[{"ifindex":4,"ifname":"%s","flags":["BROADCAST","MULTICAST"],"mtu":1500%s}]\\n' "$6" "$linkinfo"
"""


def _tree(root: Path, devices: list[tuple[str, str, dict]]) -> Path:
    """A fake /sys/class/net with DEVICES (name, MAC, kind attributes); rtnetlink kinds in root/rtnl."""
    net, rtnl = root / "class" / "net", root / "rtnl"
    net.mkdir(parents=True)
    rtnl.mkdir(parents=True, exist_ok=True)
    for ifindex, (name, mac, kind) in enumerate(devices, start=2):
        dev = net / name
        dev.mkdir()
        (dev / "address").write_text(mac + "\n")
        (dev / "type").write_text(kind.get("type", "1") + "\n")
        uevent = f"DEVTYPE={kind['devtype']}\n" if "devtype" in kind else ""
        (dev / "uevent").write_text(f"{uevent}INTERFACE={name}\nIFINDEX={ifindex}\n")
        for sub in kind.get("dirs", []):
            (dev / sub).mkdir()
        for file in kind.get("files", []):
            (dev / file).write_text("0x1002\n")
        if kind.get("device"):
            (root / "devices" / name).mkdir(parents=True)
            (dev / "device").symlink_to(root / "devices" / name)
        (rtnl / name).write_text(kind.get("rtnl", ""))
    (net / "bonding_masters").write_text("bond0\n")  # a file, not a device
    return net


def _nic_by_mac(tmp: Path, devices: list[tuple[str, str, str]], mac: str = MAC):
    net = _tree(tmp / "sys", [(name, m, KINDS[kind]) for name, m, kind in devices])
    fakebin = tmp / "bin"
    fakebin.mkdir()
    (fakebin / "ip").write_text(FAKE_RTNL_IP)
    (fakebin / "ip").chmod(0o755)
    return subprocess.run(
        ["bash", "-c", 'set -euo pipefail; . "$1"; nic_by_mac "$2"', "_", str(STEPS / "lib.sh"), mac],
        env={"PATH": f"{fakebin}:{BASE_PATH}", "NET_SYSFS": str(net), "RTNL": str(tmp / "sys" / "rtnl")},
        capture_output=True,
        text=True,
        check=False,
    )


# Everything that may carry the provider NIC's MAC but is not the NIC.
NOT_NICS = [
    ("br-ex", MAC, "ovs-internal"),
    ("br0", MAC, "bridge"),
    ("ens6.100", MAC, "vlan"),
    ("vxlan_sys_4789", MAC, "vxlan"),
    ("genev_sys_6081", MAC, "geneve"),
    ("gre0", MAC, "gre"),
    ("gretap0", MAC, "gretap"),
    ("bond0", MAC, "bond"),
    ("tap-br-ex", MAC, "ovs-userspace-internal"),
    ("dummy0", MAC, "dummy"),
]


@pytest.mark.parametrize(
    "nic,kind",
    [
        ("ens6", "pci"),  # Nitro
        ("eth1", "virtio"),
        ("eth1", "veth"),  # the lab, a container, a nested host
        ("mv-eth1", "macvlan"),
    ],
)
def test_nic_by_mac_finds_the_nic_among_devices_with_its_mac(tmp_path, nic, kind):
    devices = [("ens5", "0e:00:00:00:00:01", "pci"), *NOT_NICS, (nic, MAC, kind), ("lo", "00:00:00:00:00:00", "pci")]
    proc = _nic_by_mac(tmp_path, devices, mac=MAC.upper())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{nic}\n"


def test_nic_by_mac_says_which_devices_it_skipped_when_no_nic_has_the_mac(tmp_path):
    proc = _nic_by_mac(tmp_path, [("ens5", "0e:00:00:00:00:01", "pci"), NOT_NICS[0], NOT_NICS[1], NOT_NICS[3]])
    assert proc.returncode == 1 and proc.stdout == ""
    skipped = "br-ex (openvswitch), br0 (bridge), vxlan_sys_4789 (vxlan)"
    assert proc.stderr == f"[step] no NIC has the MAC {MAC} (not NICs: {skipped})\n"


def test_nic_by_mac_refuses_to_guess_between_two_nics(tmp_path):
    # e.g. the two slaves of a bond carry the bond's MAC
    proc = _nic_by_mac(tmp_path, [("bond0", MAC, "bond"), ("ens6", MAC, "pci"), ("ens7", MAC, "pci")])
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"[step] several NICs have the MAC {MAC}: ens6 ens7\n"


def _real_devices() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if (p / "address").exists())


@pytest.mark.parametrize("name", _real_devices())
def test_link_kind_on_this_machines_devices_agrees_with_rtnetlink(name):
    # The real sysfs and the real `ip`: a device without a bus device or a sysfs kind marker gets
    # the kind iproute2 reports (parsed here as JSON), a device on a bus "nic".
    ip = shutil.which("ip", path=BASE_PATH)
    if ip is None:
        pytest.skip("no iproute2 here")
    sysfs = Path("/sys/class/net") / name
    proc = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; . "$1"; link_kind "$2"', "_", str(STEPS / "lib.sh"), str(sysfs)],
        env={"PATH": BASE_PATH},
        capture_output=True,
        text=True,
        check=True,
    )
    shown = subprocess.run([ip, "-d", "-j", "link", "show", "dev", name], capture_output=True, text=True, check=True)
    report = json.loads(shown.stdout)
    info_kind = report[0].get("linkinfo", {}).get("info_kind", "")
    arphrd = (sysfs / "type").read_text().strip()
    if arphrd != "1":
        expected = f"arphrd-{arphrd}"
    elif (sysfs / "device").exists():
        expected = "nic"
    else:
        expected = info_kind
    assert proc.stdout == f"{expected}\n"
