"""KVM or QEMU's emulation (TCG) for the lab's guests, decided once per run by booting the guest
image (tests/lab/guest.sh) under KVM: /dev/kvm being there is not enough, as nested KVM can stop a
guest in its BIOS ("failed to set MSR 0x10a", or an emulation failure). Both the guests QEMU boots
directly (test_guest.py) and Nova's (nova-compute's virt_type, tests/lab/nova.py) use the answer."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.lab.container import kvm_usable
from tests.lab.neutron import wait_for

HERE = Path(__file__).resolve().parent
KVM_START = 5  # seconds for the boot loader's banner under KVM (well under 1 s when KVM works)
_decided: dict[str, str] = {}


def guest_image() -> Path:
    """The cached guest disk image (`make lab-guest`)."""
    path = subprocess.run([str(HERE / "guest.sh"), "path"], capture_output=True, text=True, check=True).stdout
    return Path(path.strip())


def qemu_command(accel: str, console: Path) -> list[str]:
    """QEMU booting the guest image under `accel` ("kvm" or "tcg"), its serial console into the file
    `console`, no NIC yet (the caller adds its own); the cache stays as built: the guest writes to a
    temporary overlay."""
    return [
        "qemu-system-x86_64", "-accel", accel, "-m", "256", "-nodefaults", "-no-user-config",
        "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
        "-drive", f"file={guest_image()},format=raw,if=virtio,snapshot=on",
    ]  # fmt: skip


def accelerator() -> tuple[str, str]:
    """("kvm" | "tcg", why), the same for the whole run: KVM if /dev/kvm opens and the guest's boot
    loader shows under it within KVM_START seconds."""
    if not _decided:
        _decided["accel"], _decided["why"] = _probe()
    return _decided["accel"], _decided["why"]


def _probe() -> tuple[str, str]:
    if not kvm_usable():
        return "tcg", "/dev/kvm cannot be opened here"
    with tempfile.TemporaryDirectory(prefix="ooa-kvm-") as tmp:
        console, log = Path(tmp) / "console", Path(tmp) / "qemu.log"
        console.write_text("")
        with log.open("w") as out:
            p = subprocess.Popen(qemu_command("kvm", console), stdout=out, stderr=subprocess.STDOUT)

        def shown() -> bool:  # a failure shows at once: QEMU exits, or says so and stops the guest
            said = log.read_text(errors="replace") + console.read_text(errors="replace")
            return p.poll() is not None or "KVM internal error" in said or "SYSLINUX" in said

        try:
            wait_for("the boot loader or a failure under KVM", shown, KVM_START, every=0.1)
        except TimeoutError:
            pass
        finally:
            booted = p.poll() is None and "SYSLINUX" in console.read_text(errors="replace")
            p.kill()
            p.wait(timeout=10)
        if booted:
            return "kvm", "the guest's boot loader showed under KVM"
        said = [line for line in log.read_text().splitlines() if "warning:" not in line][:2]
        return "tcg", f"KVM did not start the guest: {' / '.join(said) or f'no boot loader output in {KVM_START} s'}"
