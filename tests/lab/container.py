"""The lab host as a machine: a Debian 12 container booted by systemd-nspawn in the host's network namespace.

    root filesystem  tests/lab/rootfs.sh: debootstrap --variant=minbase (systemd, sshd, Open vSwitch,
                     Apache's apache2-bin, netplan, cloud-init, ...) cached in /var/cache/ooa-lab/
                     rootfs-<hash>; `make lab-rootfs` builds it (70-80 s cold), never the timed lab
    per lab          an overlay mount (lower: the cache, upper/work: `<lab work>/host/`) at
                     `<lab work>/host/root`: a run never changes the cache, and the lab reads and
                     writes the container's files there from outside (the steps' files land in
                     `<lab work>/host/upper`)
    boot             systemd-nspawn -b --register=no --keep-unit --network-namespace-path=/run/netns/
                     <host ns> --bind=<lab work> --bind-ro=<lab venv> --bind=<lab OVS run dir>:/run/
                     openvswitch, from the lab's private mount namespace (net.private_netns_dir);
                     systemd reaches multi-user.target in about a second
    reboot           `systemctl reboot` inside: systemd stops the units, nspawn exits 133, the lab boots
                     the same disk again; the network namespace with its NICs and the OVS database in
                     the lab's run dir (the machine's hardware and /etc/openvswitch) stay
    cgroup           a cgroup of its own, named after the machine (the lab's tag), in each hierarchy
                     nspawn and the container's systemd use (`cgroups`): with no systemd as this
                     machine's init, nspawn would put every lab's container in the same `payload`
                     cgroup, so two labs' units would share a cgroup (`systemctl kill` of one lab's
                     unit then meets the other lab's processes and fails); removed after the stop

What runs inside, as the container's services, each an enabled unit file (`unit`: it comes back at
boot): sshd (Debian's ssh.service with the lab's host key and root's authorized key), ovsdb-server
and ovs-vswitchd (the rootfs's binaries on the lab's OVS run dir), the host's Apache (apache2.service
as on a DevStack host; apache2-bin has no unit: `systemctl reload apache2` runs `apache2ctl
graceful`; it reads the container's /etc), Neutron's OVS, L3 and DHCP agents as DevStack's units
devstack@q-agt, devstack@q-l3, devstack@q-dhcp (tests/lab/neutron.py), and the steps' re-apply
timers (installed by the steps themselves). systemd-networkd is masked in the rootfs: it would share
the lab host's network namespace and reconfigure the lab's NICs (netplan's generated files stay
unused). cloud-init has no datasource here: its generator disables it, `cloud-init status --wait`
says "disabled" and returns 0 at once.

The container's /run is its own, as a machine's is: the agents' network namespaces (qrouter-,
qdhcp-) are bind mounts in its /run/netns, gone at a reboot like a real host's, and the lab's
namespaces (VMs, VPC) do not show there (the L3 agent deletes the qrouter- namespaces it does not
know). The lab reaches the agents' namespaces through the container (`netns_path`). What stays
outside, in the same network namespace: MariaDB, RabbitMQ, Keystone's and neutron-server's uWSGI,
the RPC server and periodic workers (tests/lab/neutron.py): the control plane a reboot of the host
does not restart in the lab.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.lab.neutron import wait_for

ROOTFS_SCRIPT = Path(__file__).resolve().parent / "rootfs.sh"
BINARIES = ["systemd-nspawn", "nsenter", "mount", "umount"]


def rootfs() -> Path:
    """The cache directory of the current rootfs.sh (built or not)."""
    out = subprocess.run([str(ROOTFS_SCRIPT), "path"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def cgroup_hierarchies() -> list[Path]:
    """The mounted hierarchies nspawn and the container's systemd place processes in, each at this
    process's own cgroup: the unified one alone (cgroup v2), or the named systemd one and the
    unified one if mounted (v1, hybrid)."""
    ours = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        mounts = {"": root}
    else:
        mounts = {"name=systemd": root / "systemd", "": root / "unified"}
    return [m / ours[k].lstrip("/") for k, m in mounts.items() if k in ours and (m / "cgroup.procs").exists()]


def prerequisites() -> list[str]:
    """What keeps the lab host's container from booting here (empty when it can)."""
    problems = []
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        problems.append("missing binaries: " + " ".join(missing) + " (package systemd-container)")
    path = rootfs()
    if not (path / "usr" / "lib" / "systemd" / "systemd").exists():
        problems.append(f"no lab host root filesystem {path} (run `make lab-rootfs`: debootstrap, 70-80 s)")
    return problems


class Container:
    """One lab's host: `work` its folder (overlay layers, the root mount, nspawn's log), booted in
    network namespace `netns`, `machine` its (tag-named) machine name, `binds` (source, target) and
    `ro_binds` paths mounted into it."""

    def __init__(
        self,
        work: Path,
        machine: str,
        netns: str,
        binds: list[tuple[Path, str]],
        ro_binds: list[Path],
    ):
        self.work = work
        self.machine = machine
        self.netns = netns
        self.binds = binds
        self.ro_binds = ro_binds
        self.root = work / "root"
        """The container's / as the lab sees it (the overlay mount)."""
        self.upper = work / "upper"
        """The overlay's upper layer: every file the container changed."""
        self.lower = rootfs()
        self.nspawn: subprocess.Popen | None = None
        self.leader = 0
        """The container's init (systemd), as this machine numbers it."""
        self.mounted = False
        self.cgroups = [h / f"ooa-lab-{machine}" for h in cgroup_hierarchies()]
        """This container's cgroup in each hierarchy (nspawn makes `payload` for the container under it)."""
        self.timings: dict[str, float] = {}

    def mount(self) -> None:
        """The overlay root (before `boot`, so the lab can write its files into it first)."""
        for d in (self.root, self.upper, self.work / "overlay-work"):
            d.mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work / 'overlay-work'}"
        subprocess.run(["mount", "-t", "overlay", f"{self.machine}-root", "-o", options, str(self.root)], check=True)
        self.mounted = True

    def boot(self, timeout: float = 60) -> float:
        """systemd-nspawn boots the root; return the seconds until systemd says it is up."""
        t = time.monotonic()
        for cg in self.cgroups:
            cg.mkdir(exist_ok=True)
        self.kvm_node()
        # nspawn starts in the container's cgroups (a shell moves itself, then execs it): the
        # container's cgroups are made under nspawn's own at once.
        join = "".join(f'echo $$ > "${i}"/cgroup.procs && ' for i in range(1, len(self.cgroups) + 1))
        args = [
            "sh",
            "-c",
            f'{join}shift {len(self.cgroups)} && exec "$@"',
            "sh",
            *map(str, self.cgroups),
            "systemd-nspawn",
            "-D",
            str(self.root),
            "-b",
            "--register=no",
            "--keep-unit",
            # read by nspawn into its log: nobody reading a passive console, PID 1 blocks on it once
            # ~18 KB of boot and shutdown lines fill it, and a shutdown never ends
            "--console=read-only",
            "--quiet",
            f"--machine={self.machine}",
            f"--network-namespace-path=/run/netns/{self.netns}",
            # A joined namespace is not a "private network" to nspawn: without these the host could
            # not configure its own NICs (ovs-vswitchd, ip, the steps' sysctl under /proc/sys/net).
            "--capability=CAP_NET_ADMIN",
            *(f"--bind={src}:{dst}" for src, dst in self.binds),
            *(f"--bind-ro={p}" for p in self.ro_binds),
        ]
        log = open(self.work / "nspawn.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.nspawn = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            )
        finally:
            log.close()
        nspawn = self.nspawn

        def leader() -> bool:
            if nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited ({nspawn.returncode}): {self.log_tail()}")
            children = Path(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children").read_text().split()
            for pid in children:  # the container's init: systemd, in its own PID namespace
                if os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                    self.leader = int(pid)
            # nspawn's child becomes systemd, which then listens on /run/systemd/private (systemctl)
            return bool(self.leader) and Path(f"/proc/{self.leader}/root/run/systemd/private").exists()

        wait_for(f"container {self.machine}'s init", leader, timeout, every=0.02)
        booted = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
        state = booted.stdout.strip()
        if state not in ("running", "degraded"):
            why = f"{state!r} {booted.stderr.strip()}"
            raise RuntimeError(f"container {self.machine}: systemd is {why}: {self.log_tail()}")
        if state == "degraded":
            failed = self.run("systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
            raise RuntimeError(f"container {self.machine} booted degraded: {failed.strip()}")
        self.timings["container boot"] = time.monotonic() - t
        return self.timings["container boot"]

    def kvm_node(self) -> None:
        """/dev/kvm in the container as udev makes it on a host (root:kvm 0660), when this machine
        offers KVM: its own node, not a bind of this machine's (0600 root here), which libvirt's
        QEMU user could not open — libvirt then finds the KVM its probe saw gone at every lookup and
        probes QEMU again (about 14 s before each guest starts and at nova-compute's start)."""
        rule = self.root / "etc/tmpfiles.d/ooa-lab-kvm.conf"
        if kvm_usable():
            rule.write_text("c! /dev/kvm 0660 root kvm - 10:232\n")
        else:
            rule.unlink(missing_ok=True)

    def log_tail(self) -> str:
        try:
            return (self.work / "nspawn.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def netns_path(self, ns: str) -> str:
        """Network namespace `ns` of the container's /run/netns, as a path the lab's processes open
        (through the container's root: `nsenter --net=` it, or `sh(..., ns=<path>)`)."""
        return f"/proc/{self.leader}/root/run/netns/{ns}"

    def netns_list(self) -> list[str]:
        """The container's network namespaces (`ip netns list` inside)."""
        out = self.run("ip", "netns", "list").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def enter(self) -> list[str]:
        """A command prefix that runs in every namespace of the container (its /, its PID 1's systemd)."""
        return ["nsenter", "-t", str(self.leader), "-a", "--"]

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """A command inside the container, as root."""
        p = subprocess.run([*self.enter(), *args], capture_output=True, text=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise RuntimeError(f"in {self.machine}: {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p

    def unit(
        self,
        name: str,
        *args: str,
        forking: bool = False,
        output: Path | None = None,
        reload: str = "",
        env: dict[str, str] | None = None,
        stop_timeout: float = 0,
        after: str = "",
        kill_mode: str = "",
    ) -> None:
        """A service of the container's systemd, as a package or DevStack installs one: a unit file
        in /etc/systemd/system, enabled (it starts again at every boot), started now (waits for its
        start job). `forking` for a daemon that detaches once ready; `output` its stdout/stderr (else
        the journal); `reload` the command `systemctl reload` runs; `env` its environment;
        `stop_timeout` the seconds `systemctl stop` waits after SIGTERM before SIGKILL (0: systemd's
        default); `after` units it starts after; `kill_mode` systemd's KillMode (DevStack: process)."""
        lines = ["[Unit]", f"Description=lab: {name}"]
        if after:
            lines.append(f"After={after}")
        lines += ["", "[Service]", f"Type={'forking' if forking else 'exec'}", f"ExecStart={shlex.join(args)}"]
        if reload:
            lines.append(f"ExecReload={reload}")
        if stop_timeout:
            lines.append(f"TimeoutStopSec={stop_timeout:g}s")
        if kill_mode:
            lines.append(f"KillMode={kill_mode}")
        lines += [f'Environment="{k}={v}"' for k, v in (env or {}).items()]
        if output is not None:
            lines += [f"StandardOutput=append:{output}", f"StandardError=append:{output}"]
        lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
        (self.root / "etc/systemd/system" / f"{name}.service").write_text("\n".join(lines))
        self.run("systemctl", "daemon-reload")
        self.run("systemctl", "enable", "--quiet", "--now", f"{name}.service")

    def shutdown(self, reboot: bool, timeout: float = 120) -> float:
        """Shut the host down as an operator or AWS does (`systemctl reboot` / `poweroff` inside):
        systemd stops every unit, each within its stop timeout, and nspawn exits (133 for a reboot,
        as systemd-nspawn@.service then starts it again). The overlay stays mounted: `boot` starts
        the same disk again; the network namespace, its NICs and the lab's /run/openvswitch (the
        machine's hardware and its OVS database here) stay. Returns the seconds it took."""
        assert self.nspawn is not None
        t = time.monotonic()
        self.run("systemctl", "reboot" if reboot else "poweroff")
        try:
            code = self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{self.machine} did not shut down in {timeout:.0f} s: {self.log_tail()}") from None
        if code != (133 if reboot else 0):
            raise RuntimeError(f"systemd-nspawn exited {code} (reboot: {reboot}): {self.log_tail()}")
        self.nspawn, self.leader = None, 0
        self.timings["host shutdown"] = time.monotonic() - t
        return self.timings["host shutdown"]

    def reboot(self, timeout: float = 120) -> float:
        """`shutdown` for a reboot, then `boot`; returns the seconds of the shutdown."""
        took = self.shutdown(True, timeout)
        self.boot(timeout)
        return took

    def stop(self) -> None:
        """Throw the container away: SIGKILL to its init ends its PID namespace (every process in it),
        nspawn exits; the overlay is unmounted, its cgroups removed. Idempotent."""
        t = time.monotonic()
        if self.nspawn is not None:
            if self.leader:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
            try:
                self.nspawn.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(timeout=10)
            self.nspawn = None
            self.leader = 0
        if self.mounted:
            p = subprocess.run(["umount", str(self.root)], capture_output=True, text=True)
            if p.returncode != 0:  # something still holds it: detach it now, it goes when released
                subprocess.run(["umount", "--lazy", str(self.root)], capture_output=True)
            self.mounted = False
        for cg in self.cgroups:
            remove_cgroup(cg)
        self.timings["container stop"] = time.monotonic() - t


def kvm_usable() -> bool:
    """Can this machine's /dev/kvm be opened (nested virtualization offered to it)?"""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def remove_cgroup(cg: Path, timeout: float = 10) -> None:
    """Remove cgroup `cg` and those under it, children first; a cgroup is removable once its last
    process is reaped, so a busy one is retried until `timeout`, then the error says which."""

    def removed() -> bool:
        if not cg.exists():
            return True
        for d, _, _ in os.walk(cg, topdown=False):
            os.rmdir(d)  # a cgroup's files go with it
        return True

    try:
        wait_for(f"cgroup {cg} to empty", removed, timeout, every=0.1)
    except TimeoutError:
        left = [str(p.parent) for p in cg.rglob("cgroup.procs") if p.read_text().strip()]
        raise RuntimeError(f"cgroup {cg} still holds processes in: {' '.join(left) or '(none listed)'}") from None
