"""The lab's guest image (tests/lab/guest.sh) booted for real: QEMU (KVM when it works here, else
TCG) with a virtio disk and a virtio NIC on a tap device in a network namespace of its own, where
dnsmasq serves DHCP and DNS as Neutron's does, and tests/lab/guest_services.py answers as Nova's
metadata service and as the smoke step's internet probe. The user data is the smoke step's own
(onhost/steps/smoke.sh user_data), so what the smoke step relies on from CirrOS is what is proven:
the serial console, DHCP, the metadata's hostname and user data, ping, nslookup and `wget -T`; and
the HTTP listener later tests reach through port forwards and floating IPs."""

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

from tests.lab.neutron import wait_for

pytestmark = pytest.mark.lab

HERE = Path(__file__).resolve().parent
GUEST_SH = HERE / "guest.sh"
SMOKE_SH = HERE.parent.parent / "onhost" / "steps" / "smoke.sh"
GATEWAY = "10.0.0.1"  # the namespace's end of the tap: router, DNS server, probe
GUEST_IP = "10.0.0.5"
GUEST_MAC = "52:54:00:0a:00:05"
MTU = 1450  # what Neutron's DHCP gives on a VXLAN tenant network
HOSTNAME = "lab-guest-test"
PROBE_HOST = "probe.lab.test"
PROBE_PORT = 8000
KVM_START = 5  # seconds for the boot loader's banner under KVM (well under 1 s when KVM works)
BOOT_TIMEOUT = 240  # seconds for the guest's "boot done" (TCG on two shared cores)
BINARIES = ["qemu-system-x86_64", "dnsmasq", "unshare", "nsenter", "ip", "curl"]


def image() -> Path:
    return Path(subprocess.run([str(GUEST_SH), "path"], capture_output=True, text=True, check=True).stdout.strip())


def problems() -> list[str]:
    found = []
    if os.geteuid() != 0:
        found.append("not root (a tap device in a network namespace)")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        found.append("missing binaries: " + " ".join(missing))
    if not image().is_file():
        found.append(f"no guest image {image()}: run `make lab-guest`")
    return found


def smoke_user_data() -> str:
    """The smoke step's user data (its MARK and user_data, run in bash) for this namespace: the VPC
    router is the gateway, the probe is reached by name; then two lines of this test's own."""
    script = 'eval "$(sed -n -e "/^MARK=/p" -e "/^user_data() {/,/^}/p" "$0")"; user_data'
    env = {"PATH": "/usr/bin:/bin", "VPC_GATEWAY_IP": GATEWAY, "PROBE_URL": f"http://{PROBE_HOST}:{PROBE_PORT}/"}
    text = subprocess.run(["bash", "-c", script, str(SMOKE_SH)], env=env, capture_output=True, text=True, check=True)
    assert text.stdout.startswith("#!/bin/sh\n") and "say end" in text.stdout, text.stdout + text.stderr
    return text.stdout + 'echo "lab-test mtu=$(cat /sys/class/net/eth0/mtu)"\n'


@dataclass
class Guest:
    enter: list[str]  # runs a command in the guest's network namespace
    console_file: Path
    accel: str
    boot_seconds: float  # QEMU's start to "user-data ran" on the console

    def console(self) -> list[str]:
        return [line.rstrip("\r") for line in self.console_file.read_text(errors="replace").splitlines()]


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def qemu(enter: list[str], accel: str, console: Path, log: Path) -> subprocess.Popen:
    console.write_text("")
    cmd = [
        "qemu-system-x86_64", "-accel", accel, "-m", "256", "-nodefaults", "-no-user-config",
        "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
        # the cache stays as built: the guest writes to a temporary overlay
        "-drive", f"file={image()},format=raw,if=virtio,snapshot=on",
        "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC}",
    ]  # fmt: skip
    return subprocess.Popen(enter + cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def start_guest(enter: list[str], tmp: Path, stack: contextlib.ExitStack) -> tuple[subprocess.Popen, str, float]:
    """QEMU under KVM if /dev/kvm is there and the boot loader shows within KVM_START seconds (nested
    KVM may fail: "failed to set MSR 0x10a", or an emulation failure that stops the guest), else
    under TCG; QEMU, the accelerator it runs with and the monotonic time it started."""
    console, log = tmp / "console.log", tmp / "qemu.log"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        started = time.monotonic()
        p = qemu(enter, "kvm", console, log)
        try:  # a failure shows at once: QEMU exits, or says so and stops the guest
            wait_for("the boot loader or a failure under KVM", lambda: p.poll() is not None or any(
                mark in f.read_text() for f, mark in ((log, "KVM internal error"), (console, "SYSLINUX"))
            ), KVM_START)  # fmt: skip
        except TimeoutError:
            pass
        if p.poll() is None and "SYSLINUX" in console.read_text():
            stack.callback(stop, p)
            return p, "kvm", started
        stop(p)
        said = [line for line in log.read_text().splitlines() if "warning:" not in line][:2]
        print(f"\nKVM did not start the guest ({' / '.join(said) or 'no boot loader output'}): TCG")
    started = time.monotonic()
    p = qemu(enter, "tcg", console, log)
    stack.callback(stop, p)
    return p, "tcg", started


def spawn(stack: contextlib.ExitStack, cmd: list[str], **kwargs) -> subprocess.Popen:
    p = subprocess.Popen(cmd, **kwargs)
    stack.callback(stop, p)
    return p


def network(tmp: Path, stack: contextlib.ExitStack) -> list[str]:
    """The guest's network namespace: tap0 at GATEWAY, dnsmasq on it, the metadata service and the
    probe (tests/lab/guest_services.py); the command prefix that runs a command there."""
    holder = spawn(stack, ["unshare", "--net", "sh", "-c", "echo ready; exec sleep 3600"], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready", "unshare --net failed"
    enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]  # the namespace goes with its last process
    for cmd in (
        "ip link set lo up",
        "ip addr add 169.254.169.254/32 dev lo",
        "ip tuntap add dev tap0 mode tap",
        f"ip addr add {GATEWAY}/24 dev tap0",
        "ip link set tap0 up",
    ):
        subprocess.run(enter + cmd.split(), check=True, timeout=10)
    dnsmasq = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root",
        "--interface=tap0", "--bind-interfaces", f"--dhcp-range={GUEST_IP},{GUEST_IP},255.255.255.0,1h",
        f"--dhcp-option=option:router,{GATEWAY}", f"--dhcp-option=option:dns-server,{GATEWAY}",
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


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    found = problems()
    if found:
        reason = "the guest image cannot boot here: " + "; ".join(found)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure, not a skip)")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("guest")
    metadata = tmp / "metadata" / "latest"
    (metadata / "meta-data").mkdir(parents=True)
    (metadata / "meta-data" / "hostname").write_text(f"{HOSTNAME}.novalocal")
    (metadata / "user-data").write_text(smoke_user_data())
    with contextlib.ExitStack() as stack:
        enter = network(tmp, stack)
        p, accel, started = start_guest(enter, tmp, stack)
        console = tmp / "console.log"

        def user_data_ran() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"QEMU ({accel}) exited {p.returncode}: {(tmp / 'qemu.log').read_text()[-500:]}")
            return "lab-guest: user-data ran" in console.read_text()

        try:
            wait_for("the guest's user data to run", user_data_ran, BOOT_TIMEOUT)
        except TimeoutError as e:
            tail = "\n".join(console.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"{e} ({accel}); console (last 30 lines):\n{tail}") from None
        booted = Guest(enter, console, accel, time.monotonic() - started)
        kernel = next((line for line in booted.console() if line.startswith("lab-guest: boot at")), "")
        print(f"\nguest boot under {accel.upper()}: user data done {booted.boot_seconds:.1f} s after QEMU started"
              f" ({kernel})")  # fmt: skip
        yield booted


def test_the_guest_takes_its_address_by_dhcp_and_its_hostname_from_the_metadata(guest):
    lines = guest.console()
    assert f"lab-guest: dhcp ok {GUEST_IP} on eth0" in lines, lines
    assert f"lab-guest: hostname {HOSTNAME} (metadata)" in lines, lines
    assert f"lab-test mtu={MTU}" in lines, lines


def test_the_smoke_steps_user_data_reaches_the_router_the_dns_and_the_probe(guest):
    lines = guest.console()
    assert "lab-guest: user-data ran rc=0" in lines, lines
    smoke = [line for line in lines if line.startswith("OOA-SMOKE ")]
    assert smoke == [
        "OOA-SMOKE begin",
        "OOA-SMOKE vpc_router_ping=ok",
        "OOA-SMOKE vpc_dns=ok",
        f"OOA-SMOKE internet_seen_as={GUEST_IP}",
        "OOA-SMOKE end",
    ], lines


def test_the_guest_answers_on_port_80_with_its_hostname_and_the_clients_address(guest):
    reply = subprocess.run(
        guest.enter + ["curl", "-sS", "-m", "10", f"http://{GUEST_IP}/"], capture_output=True, text=True, timeout=20
    )
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout == f"{HOSTNAME}/tcp/80/{GATEWAY}\n"
