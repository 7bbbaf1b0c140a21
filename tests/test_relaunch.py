"""The host side of a launch from a baked image (docs/park-and-bake.md), on the step scripts.

A stack launched from an image of a controller's disk runs every step again on a new instance: a
new provider ENI (another MAC, maybe another NIC name), new Elastic IPs, a new instance id. Here:

1. install-openstack installs nothing when only what a new instance changes differs (the provider
   NIC's name, the public URL), and points the installed DevStack at them instead (repoint); a
   stamp recorded by an earlier version (the whole filled local.conf) counts as the same install;
   another password (or branch, or address plan) installs again.
2. prepare-host's boot-time files keep the host name (cloud-init's preserve_hostname), let cloud-init
   configure a new instance's management ENI on EC2, and keep cloud-init's netplan per instance.
3. pin_hostname keeps the first host name it saw.

The lab boots the same disk with new NICs (tests/lab); these run the scripts' own functions here,
with DevStack's stack.sh, Open vSwitch and systemd stood in for (their calls recorded).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from components.contract import contract_for_render
from components.openstack import local_conf_for
from config.settings import Settings
from tests.test_devstack_run import FAKE_STACK, FAKE_SUDO, PASSWORD, _tree
from tests.test_steps import CLOUD_INIT_NETPLAN, _root, _snapshot
from tests.test_steps import run as run_step

STEPS = Path(__file__).resolve().parent.parent / "onhost" / "steps"
BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MAC = "0e:00:00:00:00:02"
FIRST_URL, NEW_URL = "https://203.0.113.7", "https://198.51.100.9"

# DevStack's inc/ini-config, as much of it as repoint uses: iniget/iniset on "section.option=value" lines.
FAKE_INI = """iniget() { sed -n "s|^$2\\\\.$3=||p" "$1" 2>/dev/null; }
iniset() { { grep -v "^$2\\\\.$3=" "$1" 2>/dev/null || true; echo "$2.$3=$4"; } >"$1.tmp"; mv "$1.tmp" "$1"
  echo "iniset $*" >>"$CALLS"; }
"""
# install-openstack's apply with the paths of this test (DevStack, its log, nova-compute's config).
APPLY = """set -euo pipefail
. "$1"
DEVSTACK=$2/devstack STACK_LOG=$2/logs/stack.sh.log STACK_SUMMARY=$2/logs/stack.sh.log.summary AS_STACK=()
PROGRESS_POLL=0.2 NOVA_CPU_CONF=$2/nova-cpu.conf LOCK_WAIT=${LOCK_WAIT_TEST:-$LOCK_WAIT}
apply
"""


def _conf(tmp: Path) -> str:
    """The controller's rendered local.conf, its log moved under tmp (the fake stack.sh writes it)."""
    conf = local_conf_for(contract_for_render(Settings(allowed_cidrs=["203.0.113.0/24"]), "<key>"))
    return conf.replace("LOGFILE=/opt/stack/logs/stack.sh.log", f"LOGFILE={tmp}/logs/stack.sh.log")


class Host:
    """A stand-in controller: a DevStack repository with the fake stack.sh, a provider NIC found by
    MAC in a fake /sys/class/net, and fakes for what apply runs (their calls in `calls`)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.calls = tmp / "calls"
        fakes = {
            "sudo": FAKE_SUDO,
            "id": "#!/bin/sh\nexit 0\n",
            "chown": '#!/bin/sh\necho "chown $*" >>"$CALLS"\n',
            "ovs-vsctl": '#!/bin/sh\necho "ovs-vsctl $*" >>"$CALLS"\n',
            "ip": '#!/bin/sh\necho "ip $*" >>"$CALLS"\n',
            "systemctl": '#!/bin/sh\necho "systemctl $*" >>"$CALLS"\n',
        }
        for name, body in fakes.items():
            (self.bin / name).write_text(body)
            (self.bin / name).chmod(0o755)
        repo = tmp / "repo"
        (repo / "inc").mkdir(parents=True)
        shutil.copy(FAKE_STACK, repo / "stack.sh")
        (repo / "unstack.sh").write_text('#!/bin/sh\necho unstack >>"$CALLS"\n')
        (repo / "unstack.sh").chmod(0o755)
        (repo / "inc" / "ini-config").write_text(FAKE_INI)
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
        subprocess.run([*git, "init", "-q", "-b", "master"], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "fake devstack"], check=True)
        (tmp / "logs").mkdir()
        self.conf = _conf(tmp)

    def apply(
        self, nic: str, url: str, password: str = PASSWORD, lock_wait: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """install-openstack apply on an instance whose provider NIC (MAC) is called `nic`
        (`lock_wait`: lib.sh's LOCK_WAIT, seconds it waits for another run's lock)."""
        sysfs = self.tmp / f"sys-{nic}"
        if not sysfs.exists():
            _tree(sysfs, [(nic, MAC, {"device": True})])
        self.calls.unlink(missing_ok=True)
        params = {
            "BRANCH": "master",
            "LOCAL_CONF": base64.b64encode(self.conf.encode()).decode(),
            "ADMIN_PASSWORD": password,
            "PROVIDER_MAC": MAC,
            "PUBLIC_BASE_URL": url,
        }
        env = {
            "PATH": f"{self.bin}:{BASE_PATH}",
            "HOME": str(self.tmp),
            "OOA_STATE": str(self.tmp / "state"),
            "NET_SYSFS": str(sysfs / "class" / "net"),
            "DEVSTACK_REPO": str(self.tmp / "repo"),
            "CALLS": str(self.calls),
            "FAKE_STEP": "0",
            **({"LOCK_WAIT_TEST": str(lock_wait)} if lock_wait is not None else {}),
        }
        return subprocess.run(
            ["bash", "-c", APPLY, "_", str(STEPS / "install-openstack.sh"), str(self.tmp)],
            input="".join(f"{k}={v}\n" for k, v in params.items()),
            env=env,
            capture_output=True,
            text=True,
        )

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    @property
    def stamp(self) -> Path:
        return self.tmp / "state" / "install-openstack" / "stamp"

    def filled(self, nic: str, url: str, password: str = PASSWORD) -> str:
        """local.conf as install-openstack fills it on the host (libvirt as this machine has it)."""
        libvirt = "kvm" if Path("/dev/kvm").exists() else "qemu"
        mode = "host-passthrough" if libvirt == "kvm" else "custom"  # lib.sh libvirt_cpu_mode
        conf = self.conf.rstrip("\n").replace("@ADMIN_PASSWORD@", password).replace("@LIBVIRT_TYPE@", libvirt)
        conf = conf.replace("@LIBVIRT_CPU_MODE@", mode)
        return conf.replace("@PUBLIC_INTERFACE@", nic).replace("@PUBLIC_BASE_URL@", url)


def _sha(text: str) -> str:
    return hashlib.sha256(f"master\n{text}\n".encode()).hexdigest()


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


def test_a_new_instance_of_the_disk_installs_nothing_and_follows_the_nic_and_the_url(host):
    first = host.apply("ens6", FIRST_URL)
    assert first.returncode == 0, first.stderr
    assert "DevStack is up" in first.stderr and "Starting Nova" in first.stderr
    # The stamp is of what the install depends on: the NIC's name and the public URL left out.
    key = host.filled("@PUBLIC_INTERFACE@", "@PUBLIC_BASE_URL@")
    assert host.stamp.read_text() == _sha(key) + "\n"
    assert (host.tmp / "devstack" / "local.conf").read_text() == host.filled("ens6", FIRST_URL) + "\n"

    # The same disk as a new instance: its provider NIC is called ens7, its public URL is another.
    again = host.apply("ens7", NEW_URL)
    assert again.returncode == 0, again.stderr
    assert "nothing to install" in again.stderr and "Starting Nova" not in again.stderr
    calls = host.recorded()
    assert calls[:3] == [
        "ovs-vsctl --no-wait --if-exists del-port br-ex ens6",
        "ovs-vsctl --no-wait --may-exist add-port br-ex ens7",
        "ip link set dev ens7 up",
    ]
    url = f"{NEW_URL}/novnc/vnc_lite.html"
    assert f"iniset {host.tmp}/nova-cpu.conf vnc novncproxy_base_url {url}" in calls
    assert "systemctl restart devstack@n-cpu.service" in calls
    assert (host.tmp / "devstack" / "local.conf").read_text() == host.filled("ens7", NEW_URL) + "\n"
    assert f"vnc.novncproxy_base_url={url}" in (host.tmp / "nova-cpu.conf").read_text()
    assert PASSWORD not in again.stderr + again.stdout + "\n".join(calls)

    # Nothing changed since: the port is there already, nova-compute is not restarted.
    same = host.apply("ens7", NEW_URL)
    assert same.returncode == 0, same.stderr
    assert host.recorded() == [
        "ovs-vsctl --no-wait --may-exist add-port br-ex ens7",
        "ip link set dev ens7 up",
    ]


def test_repoint_waits_for_the_lock_of_another_run(host):
    """A run holding the step's lock (a remove's clean.sh, an install unstacking the stamped one)
    is never repointed beside: the apply waits for the lock, here in vain, and changes nothing."""
    assert host.apply("ens6", FIRST_URL).returncode == 0
    lock = host.tmp / "state" / "install-openstack.lock"
    # -o: the lock is flock's own, not its child's, so killing flock frees it (else the sleep would
    # hold it on for its 30 s and the last apply below would wait them out)
    holder = subprocess.Popen(["flock", "-o", str(lock), "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.05)
        blocked = host.apply("ens7", NEW_URL, lock_wait=2)
    finally:
        holder.kill()
        holder.wait()
    assert blocked.returncode == 1 and "still holds" in blocked.stderr, blocked.stderr
    assert (
        host.recorded() == []
        and (host.tmp / "state" / "install-openstack" / "public-interface").read_text() == "ens6\n"
    )
    assert host.apply("ens7", NEW_URL).returncode == 0  # the lock free: repointed
    assert "ovs-vsctl --no-wait --may-exist add-port br-ex ens7" in host.recorded()


def test_a_stamp_of_the_whole_local_conf_counts_as_the_same_install(host):
    assert host.apply("ens6", FIRST_URL).returncode == 0
    # What an earlier version recorded: the filled local.conf, NIC name and URL included.
    host.stamp.write_text(_sha(host.filled("ens6", FIRST_URL)) + "\n")
    again = host.apply("ens6", FIRST_URL)
    assert again.returncode == 0 and "nothing to install" in again.stderr, again.stderr
    assert host.stamp.read_text() == _sha(host.filled("@PUBLIC_INTERFACE@", "@PUBLIC_BASE_URL@")) + "\n"


def test_another_password_installs_again(host):
    assert host.apply("ens6", FIRST_URL).returncode == 0
    other = host.apply("ens6", FIRST_URL, password="AnotherPassword-99")
    assert other.returncode == 0, other.stderr
    assert "settings changed: unstacking the previous run first" in other.stderr
    assert "Starting Nova" in other.stderr and "unstack" in host.recorded()


# ---- prepare-host's boot-time files --------------------------------------------------------

NEW_INSTANCE_NETPLAN = """network:
  version: 2
  ethernets:
    ens5:
      match:
        macaddress: "0e:00:00:00:00:a1"
      dhcp4: true
      set-name: ens5
"""


def _config(tmp: Path, root: Path, cloud: str = "", instance: str | None = None):
    if instance is not None:
        (root / "var" / "lib" / "cloud" / "data").mkdir(parents=True, exist_ok=True)
        (root / "var" / "lib" / "cloud" / "data" / "instance-id").write_text(instance + "\n")
    env = {"PATH": BASE_PATH, "OOA_STATE": str(tmp / "state"), "OOA_ROOT": str(root), "CLOUD_ID": cloud}
    return subprocess.run(
        ["bash", str(STEPS / "prepare-host.sh"), "config"],
        input=f"PROVIDER_MAC={MAC}\n",
        env=env,
        capture_output=True,
        text=True,
    )


def test_on_ec2_cloud_init_configures_the_primary_nic_of_every_new_instance(tmp_path):
    yaml = pytest.importorskip("yaml")
    root = _root(tmp_path)
    assert _config(tmp_path, root, cloud="aws").returncode == 0
    cfg = root / "etc" / "cloud" / "cloud.cfg.d"
    assert yaml.safe_load((cfg / "99-openstack-on-aws-network.cfg").read_text()) == {
        "datasource": {"Ec2": {"apply_full_imds_network_config": False}}
    }
    assert yaml.safe_load((cfg / "99-openstack-on-aws-hostname.cfg").read_text()) == {"preserve_hostname": True}
    # Elsewhere cloud-init's network configuration stays off, as before; the host name is kept too.
    other = tmp_path / "other"
    other.mkdir()
    root = _root(other)
    assert _config(other, root).returncode == 0
    cfg = root / "etc" / "cloud" / "cloud.cfg.d"
    assert yaml.safe_load((cfg / "99-openstack-on-aws-network.cfg").read_text()) == {"network": {"config": "disabled"}}
    assert yaml.safe_load((cfg / "99-openstack-on-aws-hostname.cfg").read_text()) == {"preserve_hostname": True}


def test_cloud_inits_netplan_is_kept_per_instance(tmp_path):
    yaml = pytest.importorskip("yaml")
    root = _root(tmp_path)
    netplan = root / "etc" / "netplan" / "50-cloud-init.yaml"
    assert _config(tmp_path, root, cloud="aws", instance="i-first").returncode == 0
    assert list(yaml.safe_load(netplan.read_text())["network"]["ethernets"]) == ["ens5"]

    # The disk as a new instance: cloud-init wrote the netplan of its new management ENI.
    netplan.write_text(NEW_INSTANCE_NETPLAN)
    assert _config(tmp_path, root, cloud="aws", instance="i-second").returncode == 0
    ens5 = yaml.safe_load(netplan.read_text())["network"]["ethernets"]["ens5"]
    assert ens5["match"] == {"macaddress": "0e:00:00:00:00:a1"}  # not the first instance's MAC
    assert (tmp_path / "state" / "prepare-host" / "50-cloud-init.yaml.orig").read_text() == NEW_INSTANCE_NETPLAN

    # Back as it was on this instance (unconfig restores this instance's, not the first one's).
    assert _config(tmp_path, root, cloud="aws", instance="i-second").returncode == 0
    removed = run_step("prepare-host.sh", "unconfig", "", tmp_path, root)
    assert removed.returncode == 0, removed.stderr
    assert netplan.read_text() == NEW_INSTANCE_NETPLAN


def test_a_netplan_kept_by_an_earlier_version_stays_the_original(tmp_path):
    root = _root(tmp_path)
    (root / "var" / "lib" / "cloud" / "data").mkdir(parents=True)
    (root / "var" / "lib" / "cloud" / "data" / "instance-id").write_text("i-first\n")
    before = _snapshot(root)
    state = tmp_path / "state" / "prepare-host"
    state.mkdir(parents=True)
    (state / "50-cloud-init.yaml.orig").write_text(CLOUD_INIT_NETPLAN)  # kept, no instance recorded
    (root / "etc" / "netplan" / "50-cloud-init.yaml").write_text("network: {version: 2}\n")  # stripped since
    assert _config(tmp_path, root).returncode == 0
    assert (state / "50-cloud-init.yaml.orig").read_text() == CLOUD_INIT_NETPLAN
    assert run_step("prepare-host.sh", "unconfig", "", tmp_path, root).returncode == 0
    assert _snapshot(root) == before


# ---- pin_hostname --------------------------------------------------------------------------

PIN = """set -euo pipefail
. "$1"
pin_hostname
"""


def _pin(tmp: Path, now: str) -> subprocess.CompletedProcess[str]:
    fakebin = tmp / "bin"
    fakebin.mkdir(exist_ok=True)
    # `hostname` prints NOW; `hostname NAME` is recorded.
    (fakebin / "hostname").write_text(
        '#!/bin/sh\nif [ $# -eq 0 ]; then echo "$NOW"; else echo "hostname $*" >>"$CALLS"; fi\n'
    )
    (fakebin / "hostname").chmod(0o755)
    (tmp / "root" / "etc").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{fakebin}:{BASE_PATH}",
        "OOA_STATE": str(tmp / "state"),
        "OOA_ROOT": str(tmp / "root"),
        "NOW": now,
        "CALLS": str(tmp / "calls"),
    }
    return subprocess.run(
        ["bash", "-c", PIN, "_", str(STEPS / "prepare-host.sh")], env=env, capture_output=True, text=True
    )


def test_the_first_host_name_is_kept(tmp_path):
    first = _pin(tmp_path, "ip-10-42-1-10")
    assert first.returncode == 0 and "host name: ip-10-42-1-10" in first.stderr, first.stderr
    assert not (tmp_path / "calls").exists() and not (tmp_path / "root" / "etc" / "hostname").exists()
    # Renamed since (by hand, or by an image made without prepare-host's files): set back.
    renamed = _pin(tmp_path, "i-0123456789abcdef0")
    assert renamed.returncode == 0, renamed.stderr
    assert "host name i-0123456789abcdef0 set back to ip-10-42-1-10" in renamed.stderr
    assert (tmp_path / "calls").read_text() == "hostname ip-10-42-1-10\n"
    assert (tmp_path / "root" / "etc" / "hostname").read_text() == "ip-10-42-1-10\n"
