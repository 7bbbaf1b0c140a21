"""Fixtures for the lab: one emulated VPC + host + real Neutron per session, steps removed around each test."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from tests.lab.net import Lab, prerequisites

_started: list[float] = []
_finished: list[float] = []
_busy: list[float] = []  # the machine's busy CPU seconds (all processes) when the lab began and ended
_timings: dict[str, float] = {}
_facts: dict[str, str] = {}


# Package scope: built before the first lab test, torn down after the last one (also on a failure
# or an interrupt: Lab.teardown runs from here, from atexit and on SIGTERM), so the wall time below
# is the lab's own, not the rest of the suite's.
@pytest.fixture(scope="package")
def lab():
    cannot_run("the lab", prerequisites())
    _started.append(time.monotonic())
    _busy.append(machine_busy_cpu())
    built = Lab()
    try:
        built.build()
        _timings.update(built.timings)
        yield built
    finally:
        built.teardown()
        _timings.update(built.timings)  # with what the tests measured (prepare-host, the re-apply timer)
        _facts.update(built.facts)
        _finished.append(time.monotonic())
        _busy.append(machine_busy_cpu())


def machine_busy_cpu() -> float:
    """The CPU seconds this machine's cores have been busy since boot (/proc/stat: all but idle and
    iowait), counting the lab host's and the guests' processes, which are not this session's children."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cannot_run(what: str, problems: list[str]) -> None:
    """Skip the tests that need `what` when `problems` keep it from running here; fail under CI=true,
    where every prerequisite is installed by .ci/run and a missing one is a defect."""
    if not problems:
        return
    reason = f"{what} cannot run here: " + "; ".join(problems)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def clean(lab):
    """Each test starts and ends with neither gateway-mac nor port-forwards applied (remove is what
    a destroy runs); external-gateway stays applied for the whole session."""
    _remove_all(lab)
    yield lab
    _remove_all(lab)


def _remove_all(lab: Lab) -> None:
    for step in ("port-forwards", "gateway-mac"):
        if not (lab.state / step).exists():  # the state folder is bound into the host: skip a no-op SSH
            continue
        p = lab.step(step, "remove")
        assert p.returncode == 0, f"{step} remove failed: {p.stderr}"


def pytest_terminal_summary(terminalreporter):
    if _started and _finished:
        terminalreporter.write_line(
            f"lab suite wall time: {_finished[-1] - _started[0]:.1f} s (build, tests, teardown); "
            + ", ".join(f"{k}: {v:.1f} s" for k, v in _timings.items())
        )
        wall, busy, cores = _finished[-1] - _started[0], _busy[-1] - _busy[0], os.cpu_count() or 1
        terminalreporter.write_line(
            f"machine CPU during the lab: {busy:.0f} s busy of {cores} cores x {wall:.0f} s "
            f"({busy / cores / wall:.0%}); no order of the same work finishes in under {busy / cores:.0f} s here"
        )
        if _facts:
            terminalreporter.write_line("lab facts: " + "; ".join(f"{k}: {v}" for k, v in _facts.items()))
        # Wall times stretch when other work shares the cores: the CPU and the load say how much.
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        terminalreporter.write_line(
            f"CPU of this session's child processes (user+sys): {used.ru_utime + used.ru_stime:.0f} s, "
            f"{os.cpu_count()} cores; load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
