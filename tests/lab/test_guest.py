"""The lab's guest image (tests/lab/guest.sh) booted for real: two QEMU guests side by side (KVM when
it works here, else TCG), each with a virtio disk and a virtio NIC on a tap device, bridged in a
network namespace of their own where dnsmasq serves DHCP and DNS as Neutron's does and
tests/lab/guest_services.py answers as Nova's metadata service and as the smoke step's internet
probe. One guest's user data is the smoke step's own (onhost/steps/smoke.sh user_data), so what the
smoke step relies on from CirrOS is what is proven: the serial console, DHCP, the metadata's
hostname and user data, ping, nslookup and `wget -T`; the other's metadata has neither (404s). Both
answer on the HTTP listener later tests reach through port forwards and floating IPs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.conftest import cannot_run
from tests.lab.kvm import accelerator, guest_image, qemu_command
from tests.lab.neutron import wait_for

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve().parent
SMOKE_SH = HERE.parent.parent / "onhost" / "steps" / "smoke.sh"
GATEWAY = "10.0.0.1"  # the namespace's bridge: router, DNS server, probe
MTU = 1450  # what Neutron's DHCP gives on a VXLAN tenant network
HOSTNAME = "lab-guest-test"  # the smoke guest's, from the metadata
PROBE_HOST = "probe.lab.test"
PROBE_PORT = 8000
BOOT_TIMEOUT = 240  # seconds for the guests' last stage (TCG on two shared cores)
BINARIES = ["qemu-system-x86_64", "dnsmasq", "unshare", "nsenter", "ip", "curl"]


@dataclass(frozen=True)
class Spec:
    tap: str
    mac: str
    ip: str
    done: str  # the console line that ends the wait


SMOKE = Spec("tap0", "52:54:00:0a:00:05", "10.0.0.5", "lab-guest: user-data ran")  # hostname and user data
# metadata without either; routes from the classless static routes option
BARE = Spec("tap1", "52:54:00:0a:00:06", "10.0.0.6", "lab-guest: boot done")


@dataclass
class Guest:
    spec: Spec
    enter: list[str]  # runs a command in the guests' network namespace
    console_file: Path
    accel: str
    boot_seconds: float  # QEMU's start to the spec's `done` line

    def console(self) -> list[str]:
        return console_lines(self.console_file)


def console_lines(console: Path) -> list[str]:
    return [line.rstrip("\r") for line in console.read_text(errors="replace").splitlines()]


def problems() -> list[str]:
    found = []
    if os.geteuid() != 0:
        found.append("not root (tap devices in a network namespace)")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        found.append("missing binaries: " + " ".join(missing))
    if not guest_image().is_file():
        found.append(f"no guest image {guest_image()}: run `make lab-guest`")
    return found


def smoke_user_data() -> str:
    """The smoke step's user data (its MARK and user_data, run in bash) for this namespace: the VPC
    router is the gateway, the probe is reached by name; then a line of this test's own."""
    script = 'eval "$(sed -n -e "/^MARK=/p" -e "/^user_data() {/,/^}/p" "$0")"; user_data'
    env = {"PATH": "/usr/bin:/bin", "VPC_GATEWAY_IP": GATEWAY, "PROBE_URL": f"http://{PROBE_HOST}:{PROBE_PORT}/"}
    text = subprocess.run(["bash", "-c", script, str(SMOKE_SH)], env=env, capture_output=True, text=True, check=True)
    assert text.stdout.startswith("#!/bin/sh\n") and "say end" in text.stdout, text.stdout + text.stderr
    return text.stdout + 'echo "lab-test mtu=$(cat /sys/class/net/eth0/mtu)"\n'


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def spawn(stack: contextlib.ExitStack, cmd: list[str], **kwargs) -> subprocess.Popen:
    p = subprocess.Popen(cmd, **kwargs)
    stack.callback(stop, p)
    return p


def network(tmp: Path, stack: contextlib.ExitStack) -> list[str]:
    """The guests' network namespace: a bridge at GATEWAY with a tap device per guest, dnsmasq on it,
    the metadata service and the probe (tests/lab/guest_services.py); the command prefix that runs a
    command there (the namespace goes with its last process)."""
    holder = spawn(stack, ["unshare", "--net", "sh", "-c", "echo ready; exec sleep 3600"], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready", "unshare --net failed"
    enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    cmds = ["ip link set lo up", "ip addr add 169.254.169.254/32 dev lo", "ip link add br0 type bridge",
            f"ip addr add {GATEWAY}/24 dev br0", "ip link set br0 up"]  # fmt: skip
    for spec in (SMOKE, BARE):
        cmds += [f"ip tuntap add dev {spec.tap} mode tap", f"ip link set {spec.tap} master br0 up"]
    for cmd in cmds:
        subprocess.run(enter + cmd.split(), check=True, timeout=10)
    dnsmasq = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root",
        "--interface=br0", "--bind-interfaces", f"--dhcp-range={SMOKE.ip},{BARE.ip},255.255.255.0,1h",
        f"--dhcp-host={SMOKE.mac},{SMOKE.ip}", f"--dhcp-host={BARE.mac},set:bare,{BARE.ip}",
        f"--dhcp-option=option:router,{GATEWAY}", f"--dhcp-option=option:dns-server,{GATEWAY}",
        # BARE's routes as Neutron's DHCP gives an isolated network's (classless static routes, with the
        # metadata's), and a router option that leads nowhere: RFC 3442 says to ignore it then
        "--dhcp-option=tag:bare,option:router,10.0.0.99",
        f"--dhcp-option=tag:bare,option:classless-static-route,169.254.169.254/32,{GATEWAY},0.0.0.0/0,{GATEWAY}",
        f"--dhcp-option=option:mtu,{MTU}", f"--host-record={PROBE_HOST},{GATEWAY}",
        # lab.test from its own records: no IPv6 address is an empty answer, as a real resolver's,
        # not the REFUSED of a dnsmasq without upstream servers (busybox nslookup fails on that)
        "--local=/lab.test/", f"--dhcp-leasefile={tmp}/leases", f"--pid-file={tmp}/dnsmasq.pid",
        f"--log-facility={tmp}/dnsmasq.log", "--log-dhcp", "--log-queries",
    ]  # fmt: skip
    spawn(stack, enter + dnsmasq)
    log = tmp / "services.log"
    services = spawn(
        stack,
        enter + [sys.executable, str(HERE / "guest_services.py"), str(tmp / "metadata"), GATEWAY, str(PROBE_PORT)],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
    )
    assert services.stdout is not None and services.stdout.readline().strip() == b"ready", log.read_text()
    return enter


def qemu(enter: list[str], spec: Spec, accel: str, tmp: Path, stack: contextlib.ExitStack) -> subprocess.Popen:
    console = tmp / f"{spec.tap}.console"
    console.write_text("")
    cmd = [
        *qemu_command(accel, console),
        "-netdev", f"tap,id=n0,ifname={spec.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={spec.mac}",
    ]  # fmt: skip
    return spawn(stack, enter + cmd, stdout=(tmp / f"{spec.tap}.qemu.log").open("w"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def guests(tmp_path_factory):
    cannot_run("the guest image", problems())
    tmp = tmp_path_factory.mktemp("guest")
    metadata = tmp / "metadata" / SMOKE.ip / "latest"  # BARE's has no folder: 404s
    (metadata / "meta-data").mkdir(parents=True)
    (metadata / "meta-data" / "hostname").write_text(f"{HOSTNAME}.novalocal")
    (metadata / "user-data").write_text(smoke_user_data())
    with contextlib.ExitStack() as stack:
        enter = network(tmp, stack)
        accel, why = accelerator()
        print(f"\nguests under {accel.upper()}: {why}")
        started = time.monotonic()
        running = {spec: qemu(enter, spec, accel, tmp, stack) for spec in (SMOKE, BARE)}
        booted: dict[Spec, Guest] = {}

        def all_done() -> bool:
            for spec, p in running.items():
                console = tmp / f"{spec.tap}.console"
                if p.poll() is not None:
                    raise AssertionError(f"QEMU {spec.tap} ({accel}) exited {p.returncode}: "
                                         f"{(tmp / f'{spec.tap}.qemu.log').read_text()[-500:]}")  # fmt: skip
                if spec not in booted and spec.done in console.read_text():
                    booted[spec] = Guest(spec, enter, console, accel, time.monotonic() - started)
            return len(booted) == len(running)

        try:
            wait_for("the guests' last boot stage", all_done, BOOT_TIMEOUT)
        except TimeoutError as e:
            tails = "\n".join(f"{s.tap}: {x}" for s in running for x in console_lines(tmp / f"{s.tap}.console")[-30:])
            raise AssertionError(f"{e} ({accel}); consoles (last 30 lines each):\n{tails}") from None
        for guest in booted.values():
            kernel = next((line for line in guest.console() if line.startswith("lab-guest: boot at")), "")
            print(f"\nguest {guest.spec.ip} under {accel.upper()}: '{guest.spec.done}' {guest.boot_seconds:.1f} s"
                  f" after QEMU started ({kernel})")  # fmt: skip
        yield booted


def test_the_guest_takes_its_address_by_dhcp_and_its_hostname_from_the_metadata(guests):
    lines = guests[SMOKE].console()
    assert f"lab-guest: dhcp ok {SMOKE.ip} on eth0" in lines, lines
    assert f"lab-guest: hostname {HOSTNAME} (metadata)" in lines, lines
    assert f"lab-test mtu={MTU}" in lines, lines


def test_the_smoke_steps_user_data_reaches_the_router_the_dns_and_the_probe(guests):
    lines = guests[SMOKE].console()
    assert "lab-guest: user-data ran rc=0" in lines, lines
    smoke = [line for line in lines if line.startswith("OOA-SMOKE ")]
    assert smoke == [
        "OOA-SMOKE begin",
        "OOA-SMOKE vpc_router_ping=ok",
        "OOA-SMOKE vpc_dns=ok",
        f"OOA-SMOKE internet_seen_as={SMOKE.ip}",
        "OOA-SMOKE end",
    ], lines


def test_a_guest_whose_metadata_has_no_hostname_or_user_data_boots_all_the_same(guests):
    """It also took its routes from the classless static routes: the metadata service, reached
    through them alone (its router option leads nowhere), answered it with 404s."""
    lines = guests[BARE].console()
    assert f"lab-guest: dhcp ok {BARE.ip} on eth0" in lines, lines
    assert "lab-guest: hostname lab-guest (the metadata has none)" in lines, lines
    assert "lab-guest: no user-data" in lines, lines
    assert not [line for line in lines if "metadata" in line and "no answer" in line], lines  # a 404 is no retry


def test_each_guest_answers_on_port_80_with_its_hostname_and_the_clients_address(guests):
    for spec, name in ((SMOKE, HOSTNAME), (BARE, "lab-guest")):
        reply = subprocess.run(
            guests[spec].enter + ["curl", "-sS", "-m", "10", f"http://{spec.ip}/"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert reply.returncode == 0, reply.stderr
        assert reply.stdout == f"{name}/tcp/80/{GATEWAY}\n"
