"""A private network namespace for the gateway-mac and port-forwards steps, without root.

`PrivateNet` starts `unshare --user --map-root-user --net --mount` (any user may, where the kernel
allows unprivileged user namespaces) and runs commands in it with `nsenter`. Inside, the steps'
`iptables`, `iptables-restore`, `ip link`/`ip addr` and `ping` are the real ones, acting on a
netfilter and network devices that belong to the namespace alone; it vanishes with its process.

What is stood in for, by the small scripts in tests/shims/ put first on PATH:

- `ip netns`: every router namespace `qrouter-<id>` the test declares (`add_router`) is the private
  namespace itself: `ip netns list` lists the declared ones, `ip netns exec <ns> cmd` runs `cmd`, and
  `ip -n <ns> ...` runs `ip ...`; an undeclared namespace fails as `ip` does.
- `ovs-vsctl` (gateway-mac only): the bridges and their `other-config:hwaddr` kept in a file, with
  ovs-vsctl's syntax and output for the four commands the step uses. Open vSwitch itself needs root
  and its daemons; the lab (tests/lab) runs the real one.
- `sudo`: the namespace's user is root there already; `sudo -n [VAR=value...] cmd` runs `cmd`.

And `/run` is an empty tmpfs in the namespace, so the steps see no systemd and install no re-apply
unit on the machine that runs the tests. Everything else -- the command text Pulumi sends
(`onhost.remote.command`), parameter parsing, the rules, the iptables-restore transaction, the
MAC changes, the saved state and `remove` -- is the program's own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from onhost import remote

SHIMS = Path(__file__).resolve().parent / "shims"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools() -> list[str]:
    """The host tools this needs and lacks (empty when all are there)."""
    tools = ["unshare", "nsenter", "ip", "iptables", "iptables-restore", "ping", "flock", "od"]
    return [t for t in tools if shutil.which(t, path=PATH) is None]


class PrivateNet:
    """One private user + network + mount namespace, its shims and its files under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        self.prefix = root / "prefix"
        self.netns_list = root / "netns"
        self.ovs = root / "ovs"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> PrivateNet:
        self.ovs.mkdir(parents=True)
        self.netns_list.write_text("")
        (self.ovs / "bridges").write_text("")
        self.proc = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs tmpfs /run && ip link set lo up && echo ready && exec sleep 600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.stop()
            assert self.proc.stderr is not None
            raise OSError(f"cannot make a private namespace: {self.proc.stderr.read().strip()}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # our own `sleep`: the namespace goes with it
            self.proc.wait(timeout=10)

    def env(self) -> dict[str, str]:
        return {"PATH": f"{SHIMS}:{PATH}", "REAL_IP": str(shutil.which("ip", path=PATH)),
                "FAKE_NETNS": str(self.netns_list), "FAKE_OVS": str(self.ovs), "LC_ALL": "C"}

    def enter(self) -> list[str]:
        """The command prefix that runs a command inside the namespace (as its root)."""
        assert self.proc is not None
        return ["nsenter", "-t", str(self.proc.pid), "--user", "--net", "--mount", "--preserve-credentials", "--"]

    def run(self, *argv: str, stdin: str = "", check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace (as its root), with the shims first on PATH (and `env`)."""
        done = subprocess.run([*self.enter(), *argv], input=stdin, env={**self.env(), **(env or {})},
                              capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done

    def sh(self, script: str) -> str:
        """Run a bash snippet in the namespace; its stdout (it must succeed)."""
        return self.run("bash", "-euo", "pipefail", "-c", script, check=True).stdout

    def step(self, step: str, action: str, params: dict[str, object] | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the step as Pulumi does: the upload row (lib.sh and the script installed), then
        `remote.command()`'s (with `env`), parameters on stdin."""
        self.run("bash", "-c", remote.UPLOAD_COMMAND, stdin=remote.upload([step], prefix=str(self.prefix)), check=True)
        text = remote.command(step, action, prefix=str(self.prefix), state=str(self.state), env=env)
        return self.run("bash", "-c", text, stdin=remote.params(params or {}))

    def start_step(self, step: str, params: dict[str, object],
                   env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """`step(step, "apply", params, env)` started, not awaited: its stderr is read as it runs."""
        self.run("bash", "-c", remote.UPLOAD_COMMAND, stdin=remote.upload([step], prefix=str(self.prefix)), check=True)
        text = remote.command(step, "apply", prefix=str(self.prefix), state=str(self.state), env=env)
        p = subprocess.Popen([*self.enter(), "bash", "-c", text], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env(), text=True)
        assert p.stdin is not None
        p.stdin.write(remote.params(params))
        p.stdin.close()
        return p

    def timer(self, step: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run `<step>.sh reapply` as the re-apply timer's unit does (lib.sh, install_reapply_units):
        the script a previous run installed, OOA_STATE in its environment, nothing on stdin."""
        return self.run(str(self.prefix / f"{step}.sh"), "reapply", env={"OOA_STATE": str(self.state), **env})

    # ---- the emulated host -------------------------------------------------------------------

    def add_router(self, router_id: str) -> str:
        """Declare namespace qrouter-<router_id> (this namespace, to the `ip` shim)."""
        ns = f"qrouter-{router_id}"
        with self.netns_list.open("a") as f:
            f.write(ns + "\n")
        return ns

    def drop_router(self, router_id: str) -> None:
        """The namespace is gone (as when the L3 agent deletes it)."""
        ns = f"qrouter-{router_id}"
        self.netns_list.write_text("".join(f"{n}\n" for n in self.netns_list.read_text().split() if n != ns))

    def add_bridge(self, name: str) -> None:
        with (self.ovs / "bridges").open("a") as f:
            f.write(name + "\n")

    def bridge_hwaddr(self, name: str) -> str | None:
        path = self.ovs / f"{name}.hwaddr"
        return path.read_text().strip() if path.exists() else None

    def mac(self, dev: str) -> str:
        """The device's MAC, as the kernel has it."""
        return self.sh(f"ip -o link show dev {dev}").split("link/ether ")[1].split()[0]

    def nat(self) -> list[str]:
        """`iptables -t nat -S`: the nat table's chains and rules, as the steps would find them."""
        return self.sh("iptables -w -t nat -S").splitlines()


def available() -> str | None:
    """Why a private namespace cannot be made here (None when it can)."""
    missing = missing_tools()
    if missing:
        return "missing " + ", ".join(missing)
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--mount", "sh", "-c",
         "mount -t tmpfs tmpfs /run && iptables -w -t nat -S >/dev/null"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": PATH},
    )
    if probe.returncode != 0:
        return f"no unprivileged user + network namespace with iptables here: {probe.stderr.strip()[:200]}"
    return None
