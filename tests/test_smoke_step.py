"""The `smoke` step's script (onhost/steps/smoke.sh) driven by a FAKE `openstack` CLI.

What this proves: the script's control flow — which calls it makes, the verdict it draws from what
the cloud answers, the one JSON evidence line, the failure message, and that it deletes everything
it created on every path (pass, each failure, an unexpected CLI error, leftovers of a killed run).
What it does NOT prove: that a real Nova/Neutron/Glance answers like the fake, that CirrOS runs the
user-data script and writes to its console, or that the cloud works — only a deployment proves
that (the step runs at the end of every `up`). The fake `openstack` (Python, below) keeps a small
JSON state of servers, ports and security groups and records every call; a fake `ip` answers the
router namespace's ping as the test says; `sleep` returns at once (the script counts polls).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

STEPS = Path(__file__).resolve().parent.parent / "onhost" / "steps"
ROUTER_ID = "6f1d3c2a-0b4e-4c1f-9a7d-2e5b8c9d0a11"
PUBLIC = "203.0.113.20"
PARAMS = {
    "ROUTER_ID": ROUTER_ID,
    "TENANT_NETWORK": "private",
    "TENANT_IP": "192.168.100.10",
    "VPC_GATEWAY_IP": "10.42.2.1",
    "PROBE_URL": "http://checkip.amazonaws.com/",
    "EXPECTED_PUBLIC_IP": PUBLIC,
}
GOOD_CONSOLE = (
    "=== cirros: current=0.6.3 ===\n"
    "OOA-SMOKE begin\nOOA-SMOKE vpc_router_ping=ok\nOOA-SMOKE vpc_dns=ok\n"
    f"OOA-SMOKE internet_seen_as={PUBLIC}\nOOA-SMOKE end\nlogin:\n"
)

FAKE_OPENSTACK = r'''
import json, os, sys, time
state_file, log_file = os.environ["FAKE_OS_STATE"], os.environ["FAKE_OS_LOG"]
started = time.monotonic()
st = json.load(open(state_file))
argv = sys.argv[1:]
if argv[:2] == ["--os-cloud", "devstack-admin"]:
    argv = argv[2:]
with open(log_file, "a") as f:
    f.write(" ".join(argv) + "\n")
words = [a for a in argv if not a.startswith("-")]
cmd = " ".join(words[:3])
head = " ".join(a for a in argv[:2])
_print = print
def print(text="", **kw):  # like the real CLI with -f value: an empty list prints nothing
    if text != "" or kw:
        _print(text, **kw)
def opt(name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default
def save():  # whole or not at all: the step's first calls (reads) run side by side
    json.dump(st, open(state_file + ".tmp", "w")); os.replace(state_file + ".tmp", state_file)
if st.get("list_seconds") and " list" in " ".join(words[:3]):  # a slow cloud's reads, timed
    time.sleep(st["list_seconds"])
    with open(log_file + ".times", "a") as f:
        f.write("%f %f %s\n" % (started, time.monotonic(), " ".join(words[:2])))
if st.get("fail_on") and " ".join(argv).startswith(st["fail_on"]):
    print("HttpException: 500: injected failure", file=sys.stderr); sys.exit(1)
if head == "image list":
    print("\n".join(st["images"]))
elif head == "flavor list":
    print("\n".join(st["flavors"]))
elif cmd.startswith("security group create"):
    gid = "sg-%d" % len(st["log_ids"]); st["log_ids"].append(1)
    st["sgs"].append({"id": gid, "name": words[3]}); save(); print(gid)
elif cmd.startswith("security group rule"):
    assert any(g["id"] == argv[-1] for g in st["sgs"]), "rule for an unknown group id"
elif cmd.startswith("security group list"):
    print("\n".join("%s %s" % (g["id"], g["name"]) for g in st["sgs"]))
elif cmd.startswith("security group delete"):
    st["sgs"] = [g for g in st["sgs"] if g["id"] != words[3]]; save()
elif cmd.startswith("port list"):
    fixed = opt("--fixed-ip")
    ports = [p for p in st["ports"] if not fixed or "ip-address=" + p["ip"] == fixed]
    if opt("--security-group"):
        assert False, "port list takes no --security-group"
    if opt("-f") == "json":
        print(json.dumps([{"ID": p["id"], "Name": p["name"], "Fixed IP Addresses": [
            {"subnet_id": "s1", "ip_address": p["ip"]}]} for p in ports]))
    elif "Name" in argv:
        print("\n".join("%s %s" % (p["id"], p["name"]) for p in ports))
    else:
        print("\n".join(p["id"] for p in ports))
elif cmd.startswith("port create"):
    assert any(g["id"] == opt("--security-group") for g in st["sgs"]), "port with an unknown group id"
    fixed = opt("--fixed-ip")
    ip = fixed.split("=", 1)[1] if fixed else "192.168.100.77"
    pid = "port-%d" % len(st["log_ids"]); st["log_ids"].append(1)
    st["ports"].append({"id": pid, "name": words[2], "ip": ip}); save()
    assert opt("-f") == "json", "the port's ID and address from one call"
    print(json.dumps({"id": pid, "fixed_ips": [{"subnet_id": "s1", "ip_address": ip}]}))
elif cmd.startswith("port delete"):
    st["ports"] = [p for p in st["ports"] if p["id"] != words[2]]; save()
elif cmd.startswith("server create"):
    sid = "srv-%d" % len(st["log_ids"]); st["log_ids"].append(1)
    st["user_data"] = open(opt("--user-data")).read()
    st["servers"].append({"id": sid, "name": words[2], "image": opt("--image"), "flavor": opt("--flavor"),
                          "port": opt("--port")}); save(); print(sid)
elif cmd.startswith("server show"):
    if opt("-c") == "fault":  # Nova's fault: a JSON object (-f json), absent until there is one
        assert opt("-f") == "json", "the fault is an object: read it as JSON"
        print(json.dumps({"fault": st["fault"]} if "fault" in st else {}))
    else:
        statuses = st["statuses"]
        print(statuses.pop(0) if len(statuses) > 1 else statuses[0]); save()
elif cmd.startswith("server list"):
    name = opt("--name", "").strip("^$")
    print("\n".join(s["id"] for s in st["servers"] if s["name"] == name))
elif cmd.startswith("server delete"):
    if not st.get("undeletable"):
        st["servers"] = [s for s in st["servers"] if s["id"] != words[2]]; save()
elif cmd.startswith("server event list"):  # -f value -c "Request ID"
    assert opt("-c") == "Request ID" and words[3] in [x["id"] for x in st["servers"]]
    print("\n".join(a["request_id"] for a in st.get("actions", [])))
elif cmd.startswith("server event show"):  # the action with its events (admin: with tracebacks)
    (action,) = [a for a in st["actions"] if a["request_id"] == words[4]]
    print(json.dumps(action))
elif cmd.startswith("configuration show"):  # the CLI's view of clouds.yaml, unmasked on request
    assert opt("-c") == "auth.password" and "--unmask" in argv
    print(st.get("password", ""))
elif cmd.startswith("console log show"):
    print(st["console"], end="")
else:
    print("fake openstack: unexpected command: " + " ".join(argv), file=sys.stderr); sys.exit(2)
'''

FAKE_IP = f"""#!/bin/sh
echo "ip $*" >> "$FAKE_OS_LOG"
case "$1 $2" in
  "netns list") echo "qrouter-{ROUTER_ID} (id: 0)" ;;
  "netns exec") [ "$FAKE_PING_OK" = 1 ] ;;
  *) exit 2 ;;
esac
"""


def fake_cloud(tmp: Path, **state) -> dict[str, Path]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "openstack").write_text(f"#!{sys.executable}\n{FAKE_OPENSTACK}")
    (bin_dir / "ip").write_text(FAKE_IP)
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    initial = {"images": ["cirros-0.6.3-x86_64-disk"], "flavors": ["m1.tiny", "cirros256"], "sgs": [],
               "ports": [], "servers": [], "statuses": ["BUILD", "BUILD", "ACTIVE"], "console": GOOD_CONSOLE,
               "log_ids": [], **state}
    (tmp / "state.json").write_text(json.dumps(initial))
    (tmp / "calls.log").write_text("")
    return {"bin": bin_dir, "state": tmp / "state.json", "log": tmp / "calls.log"}


def run_smoke(tmp: Path, action: str = "apply", ping_ok: bool = True, params: dict | None = None, **state):
    fake = fake_cloud(tmp, **state)
    env = {"PATH": f"{fake['bin']}:/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp / "ooa"),
           "FAKE_OS_STATE": str(fake["state"]), "FAKE_OS_LOG": str(fake["log"]),
           "FAKE_PING_OK": "1" if ping_ok else "0"}
    stdin = "".join(f"{k}={v}\n" for k, v in {**PARAMS, **(params or {})}.items())
    proc = subprocess.run(["bash", str(STEPS / "smoke.sh"), action], input=stdin, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    final = json.loads(fake["state"].read_text())
    calls = fake["log"].read_text().splitlines()
    evidence = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    return proc, evidence, final, calls


def nothing_left(state: dict) -> bool:
    return not state["servers"] and not [p for p in state["ports"] if p["name"] == "openstack-on-aws-smoke"] \
        and not state["sgs"]


def test_fake_cloud_pass_prints_the_evidence_and_leaves_nothing(tmp_path):
    proc, ev, state, calls = run_smoke(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1  # one JSON line
    assert ev["ok"] is True and ev["failure"] == ""
    assert ev["image"] == "cirros-0.6.3-x86_64-disk" and ev["flavor"] == "cirros256"
    assert ev["tenant_ip"] == "192.168.100.10" and ev["tenant_ip_in_use"] is False  # at the forward's IP
    assert ev["status"] == "ACTIVE" and ev["answers_from_router"] is True and ev["user_data_ran"] is True
    assert ev["vpc_router_ping"] == "ok" and ev["vpc_dns"] == "ok"
    assert ev["internet_seen_as"] == PUBLIC == ev["expected_public_ip"]
    assert ev["servers_left"] == 0 and nothing_left(state)
    assert any(c.startswith(f"ip netns exec qrouter-{ROUTER_ID} ping") and "192.168.100.10" in c for c in calls)
    # the user-data script the VM got: pings the VPC router, fetches the probe URL, marks its output
    assert "ping -c 3 -W 2 10.42.2.1" in state["user_data"] and "http://checkip.amazonaws.com/" in state["user_data"]
    assert "nslookup checkip.amazonaws.com " in state["user_data"]
    assert "OOA-SMOKE" in state["user_data"] and state["user_data"].startswith("#!/bin/sh\n")
    # each call starts the CLI (a second of CPU on the host): the port's address comes with its
    # creation; a passing run deletes what it made by ID (no listing), so the servers are listed by
    # the clean-up of leftovers before and the final count only
    assert not any(c.startswith("port show") for c in calls)
    assert sum(c.startswith("server list") for c in calls) == 2
    # the first calls side by side, the ports once: for leftovers and for who holds the tenant IP
    assert sorted(c for c in calls if c.startswith(("port list", "security group list"))) == [
        "port list --network private -f json -c ID -c Name -c Fixed IP Addresses",
        "security group list --project admin -f value -c ID -c Name"]
    deleted = [c for c in calls if " delete " in c]
    assert deleted == ["server delete --wait srv-2", "port delete port-1", "security group delete sg-0"], deleted
    # a boot under emulation takes minutes: the step says what it waits for, and how long it took
    said = proc.stderr
    # (the seconds themselves are the machine's: a busy one takes a second or more for the fake calls)
    assert re.search(r"on private \(\d+ s in\); waiting up to 300 s for ACTIVE\n", said), said
    assert re.search(r"\[smoke\] server ACTIVE \(\d+ s in\)", said), said
    assert "waiting up to 240 s for its answer to ping" in said and "the VM answers ping (" in said, said
    assert f"[smoke] passed: the internet sees the VM as {PUBLIC} (" in said, said


def test_the_first_calls_run_side_by_side(tmp_path):
    """Each call is a CLI start-up (1-2 s on a busy host): the leftovers' listings, the images and
    the flavors do not depend on each other, and all five are under way at one moment."""
    proc, _, _, _ = run_smoke(tmp_path, list_seconds=1.0)
    assert proc.returncode == 0, proc.stderr
    times = [line.split(maxsplit=2) for line in (tmp_path / "calls.log.times").read_text().splitlines()]
    first = {name: (float(a), float(b)) for a, b, name in times[:5]}
    assert set(first) == {"server list", "port list", "security group", "image list", "flavor list"}, times
    assert max(a for a, _ in first.values()) < min(b for _, b in first.values()), times


def test_without_an_expected_public_ip_any_internet_answer_passes_and_is_reported(tmp_path):
    # An existing machine without host.providerPublicIp: nothing to compare the probe's answer with.
    proc, ev, state, _ = run_smoke(tmp_path, params={"EXPECTED_PUBLIC_IP": ""})
    assert proc.returncode == 0, proc.stderr
    assert ev["ok"] is True and ev["internet_seen_as"] == PUBLIC and ev["expected_public_ip"] == ""
    assert nothing_left(state)


@pytest.mark.parametrize("seen", ["", "1.2"])
def test_without_an_expected_public_ip_no_ipv4_answer_still_fails(tmp_path, seen):
    console = GOOD_CONSOLE.replace(f"internet_seen_as={PUBLIC}", f"internet_seen_as={seen}")
    proc, ev, state, _ = run_smoke(tmp_path, params={"EXPECTED_PUBLIC_IP": ""}, console=console)
    assert proc.returncode != 0 and ev["ok"] is False and nothing_left(state)
    assert "did not reach the internet" in ev["failure"] or "did not answer with an IPv4 address" in ev["failure"]


def test_fake_cloud_tenant_ip_in_use_takes_another_address(tmp_path):
    user_port = {"id": "users-port", "name": "vm1", "ip": "192.168.100.10"}
    proc, ev, state, _ = run_smoke(tmp_path, ports=[user_port])
    assert proc.returncode == 0, proc.stderr
    assert ev["tenant_ip_in_use"] is True and ev["tenant_ip"] == "192.168.100.77"
    assert state["ports"] == [user_port]  # the user's port is untouched, ours is gone


def test_fake_cloud_without_a_forward_lets_neutron_choose(tmp_path):
    proc, ev, _, calls = run_smoke(tmp_path, params={"TENANT_IP": ""})
    assert proc.returncode == 0, proc.stderr
    assert ev["tenant_ip"] == "192.168.100.77"
    assert not any("--fixed-ip" in c for c in calls)


@pytest.mark.parametrize(
    ("case", "state", "ping_ok", "message", "evidence"),
    [
        ("error", {"statuses": ["BUILD", "ERROR"], "fault": {"code": 500, "message": "No valid host was found. "}},
         True, "server went to ERROR: No valid host was found. ", {"status": "ERROR"}),
        ("never-active", {"statuses": ["BUILD"]}, True, "server not ACTIVE after 300 s", {"status": "BUILD"}),
        ("no-answer", {}, False, "does not answer ping from qrouter-", {"answers_from_router": False}),
        ("no-user-data", {"console": "login:\n"}, True, "left no output in its console log",
         {"user_data_ran": False}),
        ("no-internet", {"console": "OOA-SMOKE begin\nOOA-SMOKE vpc_router_ping=fail\nOOA-SMOKE vpc_dns=fail\n"
                                    "OOA-SMOKE internet_seen_as=\nOOA-SMOKE end\n"}, True,
         "did not reach the internet (http://checkip.amazonaws.com/); VPC router ping: fail, VPC DNS: fail",
         {"vpc_router_ping": "fail", "vpc_dns": "fail", "internet_seen_as": ""}),
        ("wrong-source", {"console": GOOD_CONSOLE.replace(PUBLIC, "198.51.100.9")}, True,
         f"sees the VM as 198.51.100.9, not as the provider Elastic IP {PUBLIC}", {"internet_seen_as": "198.51.100.9"}),
        ("no-image", {"images": ["ubuntu-24.04"]}, True, "no CirrOS image", {"image": ""}),
        ("cli-error", {"fail_on": "port create"}, True, '): port=$(os port create "$NAME"',
         {"tenant_ip": ""}),
        ("cli-error-direct", {"fail_on": "security group rule create"}, True,
         '): os security group rule create --ingress --protocol icmp "$GROUP"', {"image": "cirros-0.6.3-x86_64-disk"}),
    ],
)
def test_fake_cloud_failure_is_clear_has_evidence_and_leaves_nothing(tmp_path, case, state, ping_ok, message,
                                                                     evidence):
    proc, ev, final, calls = run_smoke(tmp_path, ping_ok=ping_ok, **state)
    assert proc.returncode == 1, case
    (line,) = [x for x in proc.stderr.splitlines() if "error: smoke test failed: " in x]
    assert message in line, proc.stderr
    if case.startswith("cli-error"):  # an unexpected CLI failure is named by the script's own command
        assert "smoke test failed: command failed (line " in line
    assert ev is not None and ev["ok"] is False and message in ev["failure"]
    for key, value in evidence.items():
        assert ev[key] == value, (case, key, ev)
    assert nothing_left(final), (case, final)
    assert ev["servers_left"] == 0


def test_fake_cloud_an_undeletable_server_fails_the_step(tmp_path):
    proc, ev, _, _ = run_smoke(tmp_path, undeletable=True)
    assert proc.returncode == 1 and ev["servers_left"] == 1
    assert "could not be deleted" in ev["failure"]


def test_fake_cloud_leftovers_of_a_killed_run_are_deleted_first_and_by_remove(tmp_path):
    left = {"servers": [{"id": "old-srv", "name": "openstack-on-aws-smoke"}],
            "ports": [{"id": "old-port", "name": "openstack-on-aws-smoke", "ip": "192.168.100.10"}],
            "sgs": [{"id": "old-sg", "name": "openstack-on-aws-smoke"}]}
    proc, ev, state, calls = run_smoke(tmp_path, **left)
    assert proc.returncode == 0, proc.stderr
    first_create = next(i for i, c in enumerate(calls) if c.startswith("security group create"))
    assert {"server delete --wait old-srv", "port delete old-port", "security group delete old-sg"} <= set(
        calls[:first_create])
    assert ev["tenant_ip"] == "192.168.100.10" and nothing_left(state)

    (tmp_path / "r").mkdir()
    removed, _, state, calls = run_smoke(tmp_path / "r", action="remove", **left)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout) == {"removed": True, "servers_left": 0} and nothing_left(state)
    assert not any(c.startswith(("server create", "port create")) for c in calls)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"ROUTER_ID": "router1"}, "ROUTER_ID is not a valid uuid"),
        ({"TENANT_IP": "192.168.100.300"}, "TENANT_IP is not a valid ipv4"),
        ({"EXPECTED_PUBLIC_IP": "203.0.113"}, "EXPECTED_PUBLIC_IP is not a valid ipv4"),
        ({"PROBE_URL": "http://x/$(reboot)"}, "PROBE_URL is not a plain http:// URL"),
        ({"TENANT_NETWORK": "pri vate"}, "TENANT_NETWORK is not a network name"),
    ],
)
def test_bad_parameters_are_refused_before_any_cloud_call(tmp_path, over, message):
    proc, _, _, calls = run_smoke(tmp_path, params=over)
    assert proc.returncode != 0 and message in proc.stderr
    assert [c for c in calls if not c.startswith("ip ")] == []


def test_unknown_action_is_refused(tmp_path):
    proc, _, _, calls = run_smoke(tmp_path, action="destroy-everything")
    assert proc.returncode != 0 and "usage:" in proc.stderr and calls == []


def test_no_router_namespace_fails_before_creating_anything(tmp_path):
    proc, _, _, calls = run_smoke(tmp_path, params={"ROUTER_ID": "00000000-0000-4000-8000-000000000000"})
    assert proc.returncode != 0 and "router namespace qrouter-00000000" in proc.stderr
    assert [c for c in calls if not c.startswith("ip ")] == []


def test_fake_cloud_an_unanswering_cloud_fails_apply_clearly_but_not_remove(tmp_path):
    proc, ev, _, _ = run_smoke(tmp_path, fail_on="server list")
    assert proc.returncode == 1 and ev["ok"] is False
    assert "smoke test failed: command failed (line " in proc.stderr
    (tmp_path / "r").mkdir()
    removed, _, _, _ = run_smoke(tmp_path / "r", action="remove", fail_on="server list")
    assert removed.returncode == 0 and "did not answer every clean-up call" in removed.stderr


def test_fake_cloud_the_user_data_file_does_not_outlive_the_run(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    (tmp_path / "cloud").mkdir()
    fake = fake_cloud(tmp_path / "cloud")
    env = {"PATH": f"{fake['bin']}:/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp_path / "ooa"),
           "FAKE_OS_STATE": str(fake["state"]), "FAKE_OS_LOG": str(fake["log"]), "FAKE_PING_OK": "1",
           "TMPDIR": str(tmpdir)}
    for fail_on in ("", "server create"):
        state = json.loads(fake["state"].read_text()) | {"fail_on": fail_on}
        fake["state"].write_text(json.dumps(state))
        subprocess.run(["bash", str(STEPS / "smoke.sh"), "apply"], env=env, capture_output=True, text=True,
                       input="".join(f"{k}={v}\n" for k, v in PARAMS.items()), timeout=60, check=False)
        assert list(tmpdir.iterdir()) == [], fail_on


@pytest.mark.parametrize(("reachable", "expected"), [
    (True, ["begin", "vpc_router_ping=ok", "vpc_dns=ok", f"internet_seen_as={PUBLIC}", "end"]),
    (False, ["begin", "vpc_router_ping=fail", "vpc_dns=fail", "internet_seen_as=", "end"]),
])
def test_the_user_data_script_runs_under_posix_sh_and_prints_the_markers(tmp_path, reachable, expected):
    """The VM-side script as CirrOS's busybox sh would run it: here dash, with ping/nslookup/curl/wget
    stand-ins on PATH, and a file standing in for /dev/console (the only change to its text)."""
    _, _, state, _ = run_smoke(tmp_path)
    console = tmp_path / "console"
    console.write_text("")
    script = state["user_data"].replace("/dev/console", str(console))
    tools = tmp_path / "vm-bin"
    tools.mkdir()
    rc = 0 if reachable else 1
    fetched = tmp_path / "fetched"
    fetch = f"echo >> {fetched}; " + (f"echo '{PUBLIC}'" if reachable else "exit 7")
    for name, body in {"ping": f"exit {rc}", "nslookup": f"exit {rc}", "sleep": "exit 0",
                       "curl": fetch, "wget": "exit 4"}.items():
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    proc = subprocess.run(["dash", "-c", script], env={"PATH": f"{tools}:/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [line.removeprefix("OOA-SMOKE ") for line in console.read_text().splitlines()]
    assert lines == expected
    # the first answer ends the tries, and a name the VPC resolver did not resolve is not fetched
    # (six tries of it took a cloud without the fix a minute and a half more to fail)
    assert (fetched.read_text() if fetched.exists() else "") == ("\n" if reachable else "")


def test_a_probe_at_an_address_is_fetched_even_when_the_resolver_fails(tmp_path):
    """An address needs no resolver: when nslookup fails, the user data still fetches it, once."""
    _, _, state, _ = run_smoke(tmp_path, params={"PROBE_URL": "http://198.51.100.10/"})
    assert 'say vpc_dns=fail; tries="1"; fi' in state["user_data"], state["user_data"]
    (tmp_path / "name").mkdir()
    _, _, state, _ = run_smoke(tmp_path / "name")
    assert 'say vpc_dns=fail; tries=""; fi' in state["user_data"], state["user_data"]


# What Nova shows when a build fails on every host it was retried on (nova 2026.1: the conductor's
# MaxRetriesExceeded is the server's fault; each compute host's reason is its build event's traceback).
INSTANCE = "0b7f4d0e-8f0c-4f5e-9a59-4c1a3e2f1d00"
RETRIES = {"code": 500, "created": "2026-12-05T12:00:00Z", "details": "",
           "message": "Exceeded maximum number of retries. Exhausted all hosts available for retrying build "
                      f"failures for instance {INSTANCE}."}
CAUSE = (f"nova.exception.RescheduledException: Build of instance {INSTANCE} was re-scheduled: internal error: "
         "qemu unexpectedly closed the monitor: 2026-12-05T12:00:00.000000Z qemu-system-x86_64: error: "
         "failed to set MSR 0x10a to 0x2000000ab\nqemu-system-x86_64: ../target/i386/kvm/kvm.c:2999: "
         "kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.")
TRACEBACK = ("Traceback (most recent call last):\n"
             + "".join(f'  File "/opt/stack/nova/nova/compute/manager.py", line {n}, in _build\n    step_{n}()\n'
                       for n in range(40))
             + "libvirt.libvirtError: internal error: qemu unexpectedly closed the monitor\n\n"
             "During handling of the above exception, another exception occurred:\n\n"
             "Traceback (most recent call last):\n"
             '  File "/opt/stack/nova/nova/compute/manager.py", line 2700, in _do_build_and_run_instance\n'
             "    raise exception.RescheduledException(\n"
             + CAUSE + "\n")
ACTIONS = [{"action": "create", "request_id": "req-1", "message": "Error", "events": [
    {"event": "conductor_schedule_and_build_instances", "result": "Success", "host": "ip-10-42-1-10",
     "traceback": None},
    {"event": "compute__do_build_and_run_instance", "result": "Error", "host": "ip-10-42-1-10",
     "traceback": TRACEBACK}]}]


def test_fake_cloud_error_shows_the_whole_fault_and_each_hosts_reason(tmp_path):
    """The fault of a build that ran out of hosts says only that; the reason each compute host gave
    (a multi-line libvirt error at the end of a long chained traceback) comes from the server's
    events: shown whole (the last exception, not the traceback's frames), in the failure message
    and in the evidence."""
    proc, ev, final, calls = run_smoke(tmp_path, statuses=["BUILD", "ERROR"], fault=RETRIES, actions=ACTIONS)
    assert proc.returncode == 1 and nothing_left(final)
    event = f"compute__do_build_and_run_instance on ip-10-42-1-10: {CAUSE}"
    expected = f"server went to ERROR: {RETRIES['message']}\n{event}"
    assert ev["failure"] == expected
    assert f"smoke test failed: {expected}\n" in proc.stderr
    assert "File " not in ev["failure"] and "conductor_schedule" not in ev["failure"]
    assert 'server event show srv-2 req-1 -f json' in calls


def test_fake_cloud_error_fault_details_are_bounded(tmp_path):
    """An unexpected error's details (a traceback) can run to tens of KB: the failure keeps the
    message and the first FAULT_BYTES of what Nova said, not the whole of it."""
    details = "Traceback (most recent call last):\n" + "  File \"x.py\", line 1, in f\n    g()\n" * 2000
    fault = {"code": 500, "message": "Unexpected error while building the instance", "details": details}
    proc, ev, final, _ = run_smoke(tmp_path, statuses=["BUILD", "ERROR"], fault=fault)
    assert proc.returncode == 1 and nothing_left(final)
    said = ev["failure"].removeprefix("server went to ERROR: ")
    assert len(said.encode()) == 4096 and len(details) > 40_000
    assert said.startswith("Unexpected error while building the instance\nTraceback (most recent call last):\n")


def test_fake_cloud_error_text_never_shows_the_admin_password(tmp_path):
    """DevStack gives the admin password to its database, RabbitMQ and service users: a fault or a
    build event can carry a connection URL with it. The failure (printed by Pulumi, kept in its
    state) shows it masked, and so does the evidence."""
    secret = "Adm1n-Pa55"
    url = f"mysql+pymysql://root:{secret}@10.42.1.10/nova_cell1?charset=utf8"
    fault = {"code": 500, "message": f"(pymysql.err.OperationalError) (1045) {url}", "details": ""}
    proc, ev, final, calls = run_smoke(tmp_path, statuses=["BUILD", "ERROR"], fault=fault, password=secret)
    assert proc.returncode == 1 and nothing_left(final)
    assert ev["failure"] == "server went to ERROR: (pymysql.err.OperationalError) (1045) " + url.replace(
        secret, "********")
    assert secret not in proc.stderr and secret not in proc.stdout
    assert not any(secret in c for c in calls)  # never on a command line either
