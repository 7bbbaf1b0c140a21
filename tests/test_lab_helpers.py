"""The lab's own helpers: its daemon bookkeeping (tests/lab/neutron.py: a daemon that exits at once is
seen as gone and its own last words are at hand, so a wait on it ends with its cause instead of its
timeout) and the machine's CPU count behind the summary's lower bound (tests/lab/conftest.py)."""

from __future__ import annotations

import subprocess
import time

from tests.lab.conftest import machine_busy_cpu
from tests.lab.neutron import Neutron, wait_for


def test_a_daemon_that_exits_is_not_running_and_its_output_says_why(tmp_path):
    neutron = Neutron(tmp_path, "unused", tmp_path)
    neutron.log.mkdir()
    out = neutron.log / "neutron-api.out"
    out.write_text("".join(f"line {i}\n" for i in range(20)) + "bind(): Address already in use\n")
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    neutron.groups["neutron-api"] = p.pid
    try:
        assert neutron.running("neutron-api")
        p.kill()
        wait_for("sleep to be gone", lambda: not neutron.running("neutron-api"), 10, 0.05)
    finally:
        p.kill()
        p.wait()
    assert not neutron.running("never-started")
    tail = neutron.log_tail("neutron-api")
    assert tail.splitlines()[-1] == "bind(): Address already in use"
    assert len(tail.splitlines()) == 15 and tail.splitlines()[0] == "line 6"


def test_the_machines_busy_cpu_counts_work_done_outside_this_process():
    before = machine_busy_cpu()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    started = time.monotonic()
    subprocess.run(["python3", "-c", spin], check=True)  # a child this process does not account for
    used = machine_busy_cpu() - before
    assert 0.4 <= used <= 0.5 + 2 * (time.monotonic() - started) + 0.1  # at most both cores the whole time
