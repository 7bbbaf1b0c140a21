"""The lab host is a machine: a booted Debian 12 container (tests/lab/container.py) in the host's
network namespace, with sshd, Open vSwitch and Apache as its services; prepare-host runs in it for
real, over SSH exactly as Pulumi sends it, and changes the container, never this machine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.lab.container import kvm_usable
from tests.lab.net import MGMT_IP, MGMT_MAC, PROVIDER_MAC, sh
from tests.lab.neutron import UNITS

pytestmark = pytest.mark.lab

HOST_UNITS = (
    "ssh.service",
    "ooa-ovsdb-server.service",
    "ooa-ovs-vswitchd.service",
    "apache2.service",
    *(f"{unit}.service" for unit in UNITS.values()),  # Neutron's agents, as DevStack's units
)
# cloud-init's network config on an EC2 instance with two ENIs (what prepare-host edits): each NIC
# matched by its MAC, with DHCP.
CLOUD_INIT_NETPLAN = f"""network:
  ethernets:
    eth0:
      dhcp4: true
      match:
        macaddress: '{MGMT_MAC}'
      set-name: eth0
    eth1:
      dhcp4: true
      match:
        macaddress: '{PROVIDER_MAC}'
      set-name: eth1
  version: 2
"""


def test_the_host_is_a_booted_debian_whose_services_run_inside(lab):
    """systemd is the host's PID 1; sshd, Open vSwitch, Apache and Neutron's agents are its enabled
    units; the L3 and DHCP agents' namespaces are in the host's own /run/netns (the lab's are not);
    systemd-networkd, which would share the host's network namespace with the lab, is masked."""
    assert "VERSION_CODENAME=bookworm" in (lab.container.root / "etc/os-release").read_text()
    assert lab.ssh("cat /proc/1/comm").stdout.strip() == "systemd"
    assert lab.ssh("systemctl is-system-running").stdout.strip() == "running"
    active = lab.ssh(f"systemctl is-active {' '.join(HOST_UNITS)}", check=False).stdout.split()
    assert active == ["active"] * len(HOST_UNITS)
    enabled = lab.ssh(f"systemctl is-enabled {' '.join(HOST_UNITS)}", check=False).stdout.split()
    assert enabled == ["enabled"] * len(HOST_UNITS)  # they come back at boot (tests/lab/test_reboot.py)
    assert lab.ssh("systemctl is-enabled systemd-networkd.service", check=False).stdout.strip() == "masked"
    inside = lab.ssh("ip netns list").stdout
    assert lab.router.ns in inside and any(line.startswith("qdhcp-") for line in inside.splitlines())
    assert lab.host not in inside and lab.vm1 not in inside
    # the host's ovs-vsctl (its /run/openvswitch) and the lab's see the same switch
    assert (
        lab.ssh("ovs-vsctl br-exists br-ex && ovs-vsctl get bridge br-ex datapath_id").stdout.strip().strip('"')
        == lab.br_ex_dpid()
    )
    # the agents are the host's: their processes in the container's PID namespace
    inside = lab.ssh("ps -e -o args=").stdout
    assert all(f"neutron-{a}-agent" in inside for a in ("openvswitch", "l3", "dhcp")), inside
    assert f"{MGMT_IP}/24" in lab.ssh("ip -4 -o addr show br-mgmt").stdout


def test_the_hosts_libvirt_offers_qemu_and_kvm_where_this_machine_has_it(lab):
    """nova-compute's hypervisor in the host: Debian's libvirtd (socket-activated, as its package
    enables it) answers on qemu:///system with QEMU's x86_64 emulator and, when this machine's
    /dev/kvm can be opened (then made in the host), KVM; the suite says which the host offers.
    libvirt's default network does not start (it would add a bridge, dnsmasq and NAT to the host).
    Whether a KVM guest then runs is another matter (this machine's nested KVM stops them in the
    BIOS): Nova's virt_type follows a guest's boot, not this."""
    domcaps = "virsh -c qemu:///system domcapabilities --arch x86_64 --virttype"
    qemu = lab.ssh(f"{domcaps} qemu", check=False)
    assert qemu.returncode == 0 and "<domain>qemu</domain>" in qemu.stdout, qemu.stderr
    kvm = lab.ssh(f"{domcaps} kvm", check=False)
    print(
        f"the host's libvirt offers: qemu{', kvm' if kvm.returncode == 0 else ' (no kvm: ' + kvm.stderr.strip() + ')'}"
    )
    assert (kvm.returncode == 0) == kvm_usable(), kvm.stderr
    # libvirt's cached QEMU capabilities stay valid from one lookup to the next: with KVM, only if
    # its QEMU user can open /dev/kvm (root:kvm 0660, as udev makes it); else each lookup probes
    # QEMU again (the host's start of each guest waited ~14 s for it)
    if kvm_usable():
        assert lab.ssh("stat -c '%U:%G %a' /dev/kvm").stdout.strip() == "root:kvm 660"
    cache = lab.container.root / "var/cache/libvirt/qemu/capabilities"
    probed = {f.name: f.stat().st_mtime_ns for f in cache.iterdir()}
    assert probed and lab.ssh(f"{domcaps} qemu >/dev/null").returncode == 0
    assert {f.name: f.stat().st_mtime_ns for f in cache.iterdir()} == probed
    assert lab.ssh("virsh -c qemu:///system net-list --name").stdout.strip() == ""  # none active
    assert "virbr0" not in lab.ssh("ip -o link").stdout


def test_prepare_host_runs_for_real_in_the_host_and_remove_restores_it(lab):
    """apply as Pulumi sends it: cloud-init waited for (it has no datasource in the container: status
    disabled), no package fetched (every one is installed: the lab network has no mirror), the
    provider NIC found by MAC among the lab's virtual NICs (eth1, a veth and a port of br-ex), the
    netplan and cloud-init files, the `stack` user; `remove` puts the host's files back."""
    etc = lab.etc
    cloud_netplan = etc / "netplan/50-cloud-init.yaml"
    cloud_netplan.parent.mkdir(exist_ok=True)
    cloud_netplan.write_text(CLOUD_INIT_NETPLAN)
    cloud_netplan.chmod(0o600)
    machine_passwd = Path("/etc/passwd").read_text()
    try:
        t = time.monotonic()
        p = lab.step("prepare-host", "apply", lab.chain_params("prepare-host"))
        lab.timings["prepare-host"] = time.monotonic() - t
        assert p.returncode == 0, p.stderr
        assert "waiting for cloud-init to finish" in p.stderr and "packages already installed" in p.stderr, p.stderr
        assert "[prepare-host] provider NIC: eth1 (0e:00:00:00:02:10)" in p.stderr, p.stderr
        assert lab.ssh("cloud-init status --wait").stdout.strip() == "status: disabled"
        ours = (etc / "netplan/90-openstack-on-aws-provider.yaml").read_text()
        assert f'macaddress: "{PROVIDER_MAC}"' in ours and "dhcp4: false" in ours
        stripped = cloud_netplan.read_text()
        assert MGMT_MAC in stripped and PROVIDER_MAC not in stripped  # eth0 kept, the provider NIC's stanza gone
        assert "network: {config: disabled}" in (etc / "cloud/cloud.cfg.d/99-openstack-on-aws-network.cfg").read_text()
        # netplan generate ran in the host: the provider NIC's networkd file, matched by MAC
        generated = lab.ssh("cat /run/systemd/network/10-netplan-openstack-provider.network").stdout
        assert f"PermanentMACAddress={PROVIDER_MAC}" in generated and "LinkLocalAddressing=no" in generated
        assert "DHCP=" not in generated, generated  # networkd's default: no DHCP
        # the NIC: up, no address, no IPv6, still br-ex's port (eth0 untouched: networkd is masked)
        assert "UP" in sh("ip", "-o", "link", "show", "eth1", ns=lab.host).stdout
        assert sh("ip", "-o", "addr", "show", "eth1", ns=lab.host).stdout == ""
        assert sh("sysctl", "-n", "net.ipv6.conf.eth1.disable_ipv6", ns=lab.host).stdout.strip() == "1"
        assert lab.ovs("ovs-vsctl", "port-to-br", "eth1").stdout.strip() == "br-ex"
        assert f"{MGMT_IP}/24" in sh("ip", "-4", "-o", "addr", "show", ns=lab.host).stdout
        stack = lab.ssh("getent passwd stack && sudo -u stack sudo -n id -un").stdout.split("\n")
        assert stack[0].split(":")[5:] == ["/opt/stack", "/bin/bash"] and stack[1] == "root"
        assert "stack ALL=(ALL) NOPASSWD: ALL" in (etc / "sudoers.d/50-openstack-on-aws-stack").read_text()
        assert "PROVIDER_NIC=eth1\n" in (lab.state / "prepare-host/params").read_text()
        assert Path("/etc/passwd").read_text() == machine_passwd  # this machine: untouched
        again = lab.step("prepare-host", "apply", lab.chain_params("prepare-host"))
        assert again.returncode == 0 and cloud_netplan.read_text() == stripped, again.stderr
    finally:
        p = lab.step("prepare-host", "remove")
    assert p.returncode == 0, p.stderr
    assert cloud_netplan.read_text() == CLOUD_INIT_NETPLAN and cloud_netplan.stat().st_mode & 0o777 == 0o600
    assert lab.ssh("getent passwd stack", check=False).returncode == 2
    assert not (lab.state / "prepare-host").exists()
    cloud_netplan.unlink()
    for name in ("passwd", "group", "shadow", "gshadow"):  # the user gone: the files as the image has them
        assert (etc / name).read_text() == (lab.container.lower / "etc" / name).read_text(), name
    assert not (lab.container.root / "opt/stack").exists()
    gone = ("netplan/90-openstack-on-aws-provider.yaml", "cloud/cloud.cfg.d/99-openstack-on-aws-network.cfg")
    assert not [f for f in gone if (etc / f).exists()]
    assert not (etc / "sudoers.d/50-openstack-on-aws-stack").exists()


def test_the_labs_ssh_sessions_share_one_connection(lab):
    """Every step's command is its own SSH session with its own stdin and exit status, as Pulumi
    runs it; the lab's client carries them over one connection (OpenSSH multiplexing), so the host
    authenticates the lab's key once instead of ~170 times (170-210 ms each on two busy cores)."""
    for _ in range(3):
        assert lab.ssh("cat", input="a session's own stdin").stdout == "a session's own stdin"
        assert lab.ssh("exit 7", check=False).returncode == 7
    logins = lab.ssh("journalctl -q -u ssh.service --grep 'Accepted publickey' --output=cat").stdout.splitlines()
    assert len(logins) == 1, logins


# DevStack's unit files (functions-common write_user_unit_file: KillMode=process, TimeoutStopSec=300;
# the uWSGI services' Restart=always), with stand-in commands beside the lab's real agents (their
# stop timeout is 3 s, tests/lab/neutron.py): one that ignores SIGTERM until the stop timeout, as the
# OVS agent does on a real host, nova-conductor's workers (left by KillMode=process).
DEVSTACK_UNITS = {
    "n-cpu": "/bin/bash -c 'trap \"\" TERM; while :; do sleep 1; done'",
    "n-cond": "/bin/bash -c 'sleep infinity & sleep infinity & exec sleep infinity'",
    "keystone": "/bin/sleep infinity\nRestart=always",
}
# clean.sh as DevStack has it, in its order: unstack.sh --all stops the message queue, then each
# service (stop_process: stop, disable), then the unit files go; it records what ran when it began.
FAKE_CLEAN = """#!/bin/bash
set -e
units="devstack@n-cpu devstack@n-cond devstack@keystone devstack@q-agt ooa-rabbitmq"
states=$(systemctl is-active $units | tr '\\n' ' ')
echo "begin: $states" >/opt/stack/clean.record
sudo systemctl stop ooa-rabbitmq
for s in n-cond keystone n-cpu q-agt q-l3 q-dhcp q-meta; do
  if sudo systemctl is-enabled -q "devstack@$s.service"; then
    sudo systemctl stop "devstack@$s.service"
    sudo systemctl disable -q "devstack@$s.service"
  fi
done
sudo find /etc/systemd/system -type f -name 'devstack@*service' -delete
sudo systemctl daemon-reload
echo end >>/opt/stack/clean.record
"""


def test_install_openstack_remove_does_not_wait_out_devstacks_stop_timeouts(lab):
    """install-openstack's remove as Pulumi sends it, on the host's systemd with DevStack's units
    (stand-ins and the lab's real agents): they are stopped all at once while the message queue
    still runs, the one that ignores SIGTERM gets SIGKILL after the grace (not its 300 s),
    KillMode=process leftovers go too, then clean.sh runs; nothing of the units is left (no failed
    unit). The lab's agents are installed and started again after it."""
    units = lab.etc / "systemd/system"
    for name, command in DEVSTACK_UNITS.items():
        (units / f"devstack@{name}.service").write_text(
            f"[Unit]\nDescription=Devstack devstack@{name}.service\n[Service]\nUser=stack\nExecStart={command}\n"
            "KillMode=process\nTimeoutStopSec=300\n[Install]\nWantedBy=multi-user.target\n"
        )
    (units / "ooa-rabbitmq.service").write_text("[Service]\nExecStart=/bin/sleep infinity\n")  # RabbitMQ
    devstack = lab.container.root / "opt/stack/devstack"
    try:
        lab.ssh(
            "useradd --system --create-home --home-dir /opt/stack --shell /bin/bash stack && "
            "echo 'stack ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/50-ooa-lab-stack && "
            "systemctl daemon-reload && systemctl start ooa-rabbitmq && "
            "systemctl enable -q --now devstack@n-cpu devstack@n-cond devstack@keystone"
        )
        devstack.mkdir()
        (devstack / "clean.sh").write_text(FAKE_CLEAN)
        (devstack / "clean.sh").chmod(0o755)
        assert len(lab.ssh("ps -u stack -o pid=").stdout.split()) >= 6  # the three services, two workers

        t = time.monotonic()
        p = lab.step("install-openstack", "remove")
        lab.timings["install-openstack remove (stand-in DevStack units)"] = took = time.monotonic() - t
        assert p.returncode == 0, p.stderr
        assert took < 60  # the grace and clean.sh, not the OVS agent's 300 s stop timeout
        assert p.stderr.splitlines() == [
            f"[install-openstack] stopping DevStack's services ({len(DEVSTACK_UNITS) + len(UNITS)} devstack@ units;"
            " SIGKILL after 10s)",
            "[install-openstack] still running after 10s, SIGKILL: devstack@n-cpu.service",
            "[install-openstack] running DevStack's clean.sh",
            "[install-openstack] removed",
        ]
        record = (lab.container.root / "opt/stack/clean.record").read_text().splitlines()
        assert record == ["begin: inactive inactive inactive inactive active ", "end"]  # the queue stopped after them
        assert lab.ssh("ps -u stack -o pid,args", check=False).returncode == 1  # no process of theirs left
        assert lab.ssh("systemctl list-units --all --plain --no-legend 'devstack@*'").stdout == ""
        assert lab.ssh("systemctl --failed --plain --no-legend").stdout == ""
        assert not devstack.exists() and not list(lab.state.glob("install-openstack*"))
    finally:
        lab.ssh(
            "systemctl stop ooa-rabbitmq 'devstack@*'; rm -f /etc/systemd/system/devstack@* /etc/systemd/system/"
            "ooa-rabbitmq.service /etc/systemd/system/multi-user.target.wants/devstack@* /opt/stack/clean.record "
            "/etc/sudoers.d/50-ooa-lab-stack; systemctl daemon-reload; systemctl reset-failed; "
            "pkill -KILL -u stack; userdel --remove stack",
            check=False,
        )
        lab.restore_agents()
