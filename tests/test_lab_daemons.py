"""The lab's daemon bookkeeping (tests/lab/neutron.py): a daemon that exits at once is seen as gone
and its own last words are at hand, so a wait on it ends with its cause instead of its timeout."""

from __future__ import annotations

import subprocess

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
