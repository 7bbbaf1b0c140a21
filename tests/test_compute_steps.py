"""The compute nodes' step scripts, run here (onhost/steps/{prepare,install}-compute.sh,
compute-record.sh, discover-hosts.sh).

What runs here: every bad parameter stops a script before it changes anything; prepare-compute's
host-name files under a temp root (twice = once, config/unconfig round trip); compute-record and
discover-hosts against a stand-in `openstack` CLI and `nova-manage` (a JSON file as the cloud):
a node is taken out only without servers on it, agents and service both, idempotently; discovery
waits for each node's service, runs `nova-manage cell_v2 discover_hosts` and reports the hosts.
Cloud-init, apt, DevStack and a real Nova/Neutron need the instances (AWS only).
"""

from __future__ import annotations

import base64
import json
import pwd
import socket
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from onhost.localconf import render_compute_local_conf

STEPS = Path(__file__).resolve().parent.parent / "onhost" / "steps"

FAKE_OPENSTACK = r'''#!/usr/bin/env python3
"""Stand-in for the openstack CLI: the calls compute-record.sh and discover-hosts.sh make."""
import json, os, sys
state_file = os.environ["FAKE_OS_STATE"]
cloud = json.load(open(state_file))
args = sys.argv[1:]
with open(os.environ["FAKE_OS_LOG"], "a") as log:
    log.write(json.dumps({"config": os.environ.get("OS_CLIENT_CONFIG_FILE"), "args": args}) + "\n")
assert args[:2] == ["--os-cloud", "devstack-admin"], args
args = args[2:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
cmd = " ".join(a for a in args[:3])
host = opt("--host")
column = opt("-c")
if cloud.get("down"):
    print("Failed to discover available identity versions", file=sys.stderr); sys.exit(1)
if args[:3] == ["compute", "service", "list"]:
    for h, svc in cloud["services"].items():
        if host in (None, h):
            print({"Host": h, "ID": svc["id"], "State": svc["state"]}[column])
elif args[:3] == ["compute", "service", "delete"]:
    cloud["services"] = {h: s for h, s in cloud["services"].items() if s["id"] != args[3]}
elif args[:2] == ["server", "list"]:
    assert "--all-projects" in args
    for sid in cloud["servers"].get(host, []):
        print(sid)
elif args[:3] == ["network", "agent", "list"]:
    for aid in cloud["agents"].get(host, []):
        print(aid)
elif args[:3] == ["network", "agent", "delete"]:
    cloud["agents"] = {h: [a for a in ids if a != args[3]] for h, ids in cloud["agents"].items()}
elif args[:2] == ["hypervisor", "list"]:
    for h in cloud["hypervisors"]:
        print(h)
else:
    print("unknown command: " + " ".join(args), file=sys.stderr); sys.exit(2)
json.dump(cloud, open(state_file, "w"))
'''

FAKE_NOVA_MANAGE = r'''#!/usr/bin/env python3
"""Stand-in for nova-manage: `cell_v2 discover_hosts` maps every host with an up service."""
import json, os, sys
assert sys.argv[1:] == ["cell_v2", "discover_hosts", "--verbose"], sys.argv
state_file = os.environ["FAKE_OS_STATE"]
cloud = json.load(open(state_file))
up = [h for h, s in cloud["services"].items() if s["state"] == "up"]
cloud["hypervisors"] = sorted({*cloud["hypervisors"], *(f"{h}.ec2.internal" for h in up)})
cloud["discovered"] = cloud.get("discovered", 0) + 1
json.dump(cloud, open(state_file, "w"))
print("Found 1 cell mappings.")
'''


# `sudo -n -u stack -H cmd...` runs cmd as is (the test user stands in for `stack`).
FAKE_SUDO = """#!/usr/bin/env bash
set -euo pipefail
while [ $# -gt 0 ]; do case $1 in -n | -H) shift ;; -u) shift 2 ;; *) break ;; esac; done
exec "$@"
"""


def _bin(tmp: Path) -> Path:
    b = tmp / "bin"
    b.mkdir(exist_ok=True)
    for name, text in (("openstack", FAKE_OPENSTACK), ("nova-manage", FAKE_NOVA_MANAGE), ("sudo", FAKE_SUDO)):
        (b / name).write_text(text)
        (b / name).chmod(0o755)
    return b


def run(script: str, action: str, stdin: str, tmp: Path, root: Path | None = None, cloud: dict | None = None,
        **env_more: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp / "state"), **env_more}
    if root is not None:
        env["OOA_ROOT"] = str(root)
    if cloud is not None:
        env["PATH"] = f"{_bin(tmp)}:{env['PATH']}"
        env["FAKE_OS_STATE"] = str(tmp / "cloud.json")
        env["FAKE_OS_LOG"] = str(tmp / "calls.jsonl")
        if not (tmp / "cloud.json").exists():
            (tmp / "cloud.json").write_text(json.dumps(cloud))
    return subprocess.run(["bash", str(STEPS / script), action], input=stdin, env=env,
                          capture_output=True, text=True, check=False)


def cloud_state(tmp: Path) -> dict:
    return json.loads((tmp / "cloud.json").read_text())


def calls(tmp: Path) -> list[list[str]]:
    path = tmp / "calls.jsonl"
    return [json.loads(line)["args"][2:] for line in path.read_text().splitlines()] if path.exists() else []


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- prepare-compute ----------------------------------------------------------------------------

HOSTS = "127.0.0.1 localhost\n::1 ip6-localhost\n"


def _root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "etc" / "cloud" / "cloud.cfg.d").mkdir(parents=True)
    (root / "etc" / "hosts").write_text(HOSTS)
    (root / "etc" / "hostname").write_text("ip-10-42-1-11\n")
    return root


def test_prepare_compute_config_twice_equals_once_and_unconfig_restores(tmp_path):
    root = _root(tmp_path)
    before = _snapshot(root)
    params = "NODE_HOSTNAME=compute-0\nNODE_IP=10.42.1.11\n"
    assert run("prepare-compute.sh", "config", params, tmp_path, root).returncode == 0
    once = _snapshot(root)
    assert run("prepare-compute.sh", "config", params, tmp_path, root).returncode == 0
    assert _snapshot(root) == once
    assert once["etc/hostname"] == "compute-0\n"
    assert once["etc/hosts"] == HOSTS + "10.42.1.11 compute-0 # openstack-on-aws compute node\n"
    assert "preserve_hostname: true" in once["etc/cloud/cloud.cfg.d/99-openstack-on-aws-hostname.cfg"]
    proc = run("prepare-compute.sh", "unconfig", "", tmp_path, root)
    assert proc.returncode == 0, proc.stderr
    assert _snapshot(root) == before


def test_prepare_compute_unconfig_removes_a_hostname_file_it_created(tmp_path):
    root = _root(tmp_path)
    (root / "etc" / "hostname").unlink()
    before = _snapshot(root)
    params = "NODE_HOSTNAME=compute-1\nNODE_IP=10.42.1.12\n"
    assert run("prepare-compute.sh", "config", params, tmp_path, root).returncode == 0
    assert (root / "etc" / "hostname").read_text() == "compute-1\n"
    assert run("prepare-compute.sh", "unconfig", "", tmp_path, root).returncode == 0
    assert _snapshot(root) == before


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("NODE_HOSTNAME=Compute_0\nNODE_IP=10.42.1.11\n", "NODE_HOSTNAME is not a host name"),
        ("NODE_HOSTNAME=compute-0\nNODE_IP=10.42.1.311\n", "NODE_IP is not a valid ipv4"),
        ("NODE_HOSTNAME=compute-0\n", "missing parameter NODE_IP"),
        ("NODE_HOSTNAME=compute-0\nNODE_IP=10.42.1.11\nX=1\n", "unknown parameter X"),
    ],
)
@pytest.mark.parametrize("action", ["config", "apply"])
def test_prepare_compute_rejects_bad_parameters_before_any_change(tmp_path, stdin, message, action):
    root = _root(tmp_path)
    before = _snapshot(root)
    proc = run("prepare-compute.sh", action, stdin, tmp_path, root if action == "config" else None)
    assert proc.returncode != 0 and message in proc.stderr
    assert _snapshot(root) == before and not (tmp_path / "state").exists()


# prepare-compute's apply/remove sourced, with the commands that would change this machine recorded
# (lib.sh's cloud-init wait, package install and stack user, shared with prepare-host) and the
# file part (covered above under a temp root) replaced.
PREPARE = """set -euo pipefail
. "$1"
SUDOERS=$2
write_config() { echo write_config >>"$CALLS"; install -d -m 0700 "$STATE"; }
remove_config() { echo remove_config >>"$CALLS"; }
"$3"
"""


def _prepare(
    tmp: Path, action: str, stdin: str = "", cloud_init_status: int = 0
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    fakebin = tmp / "bin"
    fakebin.mkdir(exist_ok=True)
    for name in ("cloud-init", "hostname", "apt-get", "useradd", "userdel", "pkill", "chmod"):
        (fakebin / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"$CALLS"\n')
        (fakebin / name).chmod(0o755)
    (fakebin / "ip").write_text('#!/bin/sh\necho "ip $*" >>"$CALLS"\necho "2: ens5    inet 10.42.1.11/24 brd x"\n')
    (fakebin / "ip").chmod(0o755)
    (fakebin / "cloud-init").write_text(f'#!/bin/sh\necho "cloud-init $*" >>"$CALLS"\nexit {cloud_init_status}\n')
    (fakebin / "id").write_text("#!/bin/sh\nexit 1\n")  # no `stack` user yet
    (fakebin / "id").chmod(0o755)
    (fakebin / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")  # none of the packages installed yet
    (fakebin / "dpkg-query").chmod(0o755)
    if not (fakebin / "visudo").exists():
        (fakebin / "visudo").symlink_to("/bin/true")
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "OOA_STATE": str(tmp / "state"), "CALLS": str(tmp / "calls")}
    proc = subprocess.run(
        ["bash", "-c", PREPARE, "_", str(STEPS / "prepare-compute.sh"), str(tmp / "sudoers"), action],
        input=stdin, env=env, capture_output=True, text=True, check=False,
    )
    calls = tmp / "calls"
    return proc, calls.read_text().splitlines() if calls.exists() else []


def test_prepare_compute_apply_then_remove(tmp_path):
    proc, calls = _prepare(tmp_path, "apply", "NODE_HOSTNAME=compute-0\nNODE_IP=10.42.1.11\n")
    assert proc.returncode == 0, proc.stderr
    assert calls == [
        "ip -o -4 addr show",
        "cloud-init status --wait",
        "write_config",
        "hostname compute-0",
        "apt-get -qq -o DPkg::Lock::Timeout=600 update",
        "apt-get -qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends git jq iproute2 procps python3 sudo",
        "useradd --system --create-home --home-dir /opt/stack --shell /bin/bash stack",
        "chmod 0755 /opt/stack",
    ]
    assert proc.stderr.splitlines() == [
        "[prepare-compute] waiting for cloud-init to finish",
        "[prepare-compute] host name: compute-0 (10.42.1.11)",
        "[prepare-compute] installing packages: git jq iproute2 procps python3 sudo",
        "[prepare-compute] done",
    ]
    state = tmp_path / "state" / "prepare-compute"
    assert (state / "created-user").exists()
    assert (tmp_path / "sudoers").read_text() == "stack ALL=(ALL) NOPASSWD: ALL\n"
    assert (state / "params").read_text() == "NODE_HOSTNAME=compute-0\nNODE_IP=10.42.1.11\n"

    (tmp_path / "calls").unlink()
    proc, calls = _prepare(tmp_path, "remove")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["remove_config", "pkill -u stack", "userdel --remove stack"]  # the user it created
    assert not (tmp_path / "sudoers").exists() and not state.exists()


@pytest.mark.parametrize(("status", "ok"), [(1, False), (2, True)])  # 2: degraded, usable
def test_prepare_compute_stops_when_cloud_init_failed(tmp_path, status, ok):
    proc, calls = _prepare(tmp_path, "apply", "NODE_HOSTNAME=compute-0\nNODE_IP=10.42.1.11\n", status)
    assert (proc.returncode == 0) == ok, proc.stderr
    failed = f"[prepare-compute] error: cloud-init failed (status {status}): see /var/log/cloud-init.log"
    assert (failed in proc.stderr) != ok
    if not ok:
        assert calls == ["ip -o -4 addr show", "cloud-init status --wait"]  # nothing changed


def test_prepare_compute_refuses_a_machine_without_the_nodes_ip(tmp_path):
    proc = run("prepare-compute.sh", "apply", "NODE_HOSTNAME=compute-0\nNODE_IP=192.0.2.77\n", tmp_path)
    assert proc.returncode != 0 and "does not hold NODE_IP 192.0.2.77: wrong host?" in proc.stderr
    assert not (tmp_path / "state").exists()


# ---- install-compute ----------------------------------------------------------------------------


def _install_params(**over: str) -> str:
    conf = render_compute_local_conf(host_ip=IPv4Address("10.42.1.11"), service_host=IPv4Address("10.42.1.10"))
    values = {
        "BRANCH": "stable/2026.1",
        "LOCAL_CONF": base64.b64encode(conf.encode()).decode(),
        "ADMIN_PASSWORD": "Abcdefgh1234-_xyz",
        "CONTROLLER_IP": "10.42.1.10",
        **over,
    }
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"BRANCH": "main"}, "BRANCH is not a DevStack branch"),
        ({"ADMIN_PASSWORD": "short"}, "ADMIN_PASSWORD must be 12-128"),
        ({"ADMIN_PASSWORD": "has space in it x"}, "ADMIN_PASSWORD must be 12-128"),
        ({"CONTROLLER_IP": "10.42.1.9"}, "does not point at CONTROLLER_IP 10.42.1.9"),
        ({"CONTROLLER_IP": "ten"}, "CONTROLLER_IP is not a valid ipv4"),
        ({"LOCAL_CONF": "%%%"}, "LOCAL_CONF is not base64"),
        ({"LOCAL_CONF": base64.b64encode(b"HOST_IP=1.2.3.4\n").decode()}, "is not a DevStack local.conf"),
        (
            {"LOCAL_CONF": base64.b64encode(b"[[local|localrc]]\nSERVICE_HOST=10.42.1.10\n").decode()},
            "lacks the placeholder @ADMIN_PASSWORD@",
        ),
    ],
)
def test_install_compute_rejects_bad_parameters_before_any_change(tmp_path, over, message):
    proc = run("install-compute.sh", "apply", _install_params(**over), tmp_path)
    assert proc.returncode != 0 and message in proc.stderr
    assert "has space" not in proc.stderr and "Abcdefgh1234" not in proc.stderr  # the password is never echoed
    assert not (tmp_path / "state").exists()


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_install_compute_stops_when_the_controller_does_not_answer(tmp_path):
    """Before anything changes: a missing cluster rule (or a down controller) is named as such."""
    conf = render_compute_local_conf(host_ip=IPv4Address("127.0.0.2"), service_host=IPv4Address("127.0.0.1"))
    params = _install_params(CONTROLLER_IP="127.0.0.1", LOCAL_CONF=base64.b64encode(conf.encode()).decode())
    with _listener() as up:
        open_port, closed_port = up.getsockname()[1], _free_port()
        proc = run("install-compute.sh", "apply", params, tmp_path, CONTROLLER_PORTS=f"{open_port} {closed_port}")
        assert proc.returncode != 0
        assert f"the controller 127.0.0.1 does not answer on port {closed_port}" in proc.stderr
        assert not (tmp_path / "state").exists()
        # the ports answer: the next check runs (on a machine without a `stack` user: else it would install)
        try:
            pwd.getpwnam("stack")
            return
        except KeyError:
            pass
        proc = run("install-compute.sh", "apply", params, tmp_path, CONTROLLER_PORTS=str(open_port))
        assert "does not answer" not in proc.stderr
        assert proc.returncode != 0 and "no user 'stack': run prepare-compute first" in proc.stderr


# ---- compute-record (on the controller) ---------------------------------------------------------

RECORD = "NODE_HOSTNAME=compute-1\nCLOUD=devstack-admin\nCLOUDS_YAML=/etc/openstack/clouds.yaml\n"


def _cloud(**more) -> dict:
    return {
        "services": {"ip-10-42-1-10": {"id": "s-ctl", "state": "up"}, "compute-1": {"id": "s-c1", "state": "up"}},
        "agents": {"ip-10-42-1-10": ["a-ctl-ovs", "a-ctl-l3"], "compute-1": ["a-c1-ovs"]},
        "servers": {},
        "hypervisors": ["ip-10-42-1-10"],
        **more,
    }


def test_compute_record_apply_checks_the_cloud_and_changes_nothing(tmp_path):
    proc = run("compute-record.sh", "apply", RECORD, tmp_path, cloud=_cloud())
    assert proc.returncode == 0, proc.stderr
    assert cloud_state(tmp_path) == _cloud()
    assert calls(tmp_path) == [["compute", "service", "list", "-f", "value", "-c", "Host"]]


def test_compute_record_apply_fails_when_the_cloud_does_not_answer(tmp_path):
    proc = run("compute-record.sh", "apply", RECORD, tmp_path, cloud=_cloud(down=True))
    assert proc.returncode != 0 and "the admin cloud devstack-admin does not answer" in proc.stderr


def test_compute_record_remove_takes_the_node_out_and_only_it(tmp_path):
    proc = run("compute-record.sh", "remove", RECORD, tmp_path, cloud=_cloud())
    assert proc.returncode == 0, proc.stderr
    after = cloud_state(tmp_path)
    assert after["services"] == {"ip-10-42-1-10": {"id": "s-ctl", "state": "up"}}
    assert after["agents"] == {"ip-10-42-1-10": ["a-ctl-ovs", "a-ctl-l3"], "compute-1": []}
    assert ["network", "agent", "delete", "a-c1-ovs"] in calls(tmp_path)
    assert ["compute", "service", "delete", "s-c1"] in calls(tmp_path)
    # twice = once: nothing left to delete, no error
    again = run("compute-record.sh", "remove", RECORD, tmp_path, cloud=_cloud())
    assert again.returncode == 0, again.stderr
    assert cloud_state(tmp_path) == after


def test_compute_record_remove_refuses_while_servers_run_on_the_node(tmp_path):
    cloud = _cloud(servers={"compute-1": ["srv-1", "srv-2"]})
    proc = run("compute-record.sh", "remove", RECORD, tmp_path, cloud=cloud)
    assert proc.returncode != 0
    assert "servers still run on compute-1: srv-1 srv-2" in proc.stderr
    assert cloud_state(tmp_path) == cloud  # nothing deleted


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (RECORD.replace("compute-1", "-bad"), "NODE_HOSTNAME is not a host name"),
        (RECORD.replace("devstack-admin", "a b"), "CLOUD is not a name"),
        (RECORD.replace("/etc/openstack/clouds.yaml", "/etc/../x"), "CLOUDS_YAML is not an absolute path"),
    ],
)
@pytest.mark.parametrize("action", ["apply", "remove"])
def test_compute_record_rejects_bad_parameters_before_any_call(tmp_path, stdin, message, action):
    proc = run("compute-record.sh", action, stdin, tmp_path, cloud=_cloud())
    assert proc.returncode != 0 and message in proc.stderr
    assert calls(tmp_path) == [] and cloud_state(tmp_path) == _cloud()


# ---- discover-hosts (on the controller) ---------------------------------------------------------

DISCOVER = "NODES=compute-0,compute-1\nCLOUD=devstack-admin\nCLOUDS_YAML=/etc/openstack/clouds.yaml\n"


def _two_nodes(state_1: str = "up") -> dict:
    cloud = _cloud()
    cloud["services"] |= {"compute-0": {"id": "s-c0", "state": "up"}, "compute-1": {"id": "s-c1", "state": state_1}}
    return cloud


def test_discover_hosts_maps_every_node_and_reports_them(tmp_path):
    proc = run("discover-hosts.sh", "apply", DISCOVER, tmp_path, cloud=_two_nodes(), POLL_SECONDS="0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"hosts": ["compute-0", "compute-1"]}
    after = cloud_state(tmp_path)
    assert after["discovered"] == 1
    assert {"compute-0.ec2.internal", "compute-1.ec2.internal"} <= set(after["hypervisors"])
    # again: discovery is safe to repeat
    assert run("discover-hosts.sh", "apply", DISCOVER, tmp_path, cloud=after, POLL_SECONDS="0").returncode == 0


def test_discover_hosts_gives_up_on_a_node_whose_service_stays_down(tmp_path):
    proc = run("discover-hosts.sh", "apply", DISCOVER, tmp_path, cloud=_two_nodes("down"),
               WAIT_SECONDS="2", POLL_SECONDS="1")
    assert proc.returncode != 0
    assert "gave up after 2s waiting for nova-compute on compute-1 to be up" in proc.stderr
    assert "discovered" not in cloud_state(tmp_path)  # nova-manage never ran


@pytest.mark.parametrize("nodes", ["", "compute-0,,compute-1", "Compute-0", "compute-0;reboot"])
def test_discover_hosts_rejects_bad_node_lists(tmp_path, nodes):
    proc = run("discover-hosts.sh", "apply", DISCOVER.replace("compute-0,compute-1", nodes), tmp_path,
               cloud=_two_nodes())
    assert proc.returncode != 0 and "NODES is not a list of host names" in proc.stderr
    assert calls(tmp_path) == []


def test_discover_hosts_remove_changes_nothing(tmp_path):
    proc = run("discover-hosts.sh", "remove", DISCOVER, tmp_path, cloud=_two_nodes())
    assert proc.returncode == 0 and calls(tmp_path) == []
