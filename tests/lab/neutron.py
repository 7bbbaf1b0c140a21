"""Real Neutron (2026.1: neutron 28.0.x) for the lab, inside the lab host's network namespace.

    MariaDB         unix socket <work>/mysql/mysqld.sock (no TCP)
    RabbitMQ        127.0.0.1:17672, epmd 127.0.0.1:17369, distribution 17673 (below the ephemeral range)
    Open vSwitch    the lab's private ovsdb-server / ovs-vswitchd (userspace datapath), see net.Lab
    neutron API     uWSGI on 127.0.0.1:19696 and on the unix socket `uwsgi_socket` (neutron.wsgi.api:application);
                    auth_strategy noauth, or keystone when an `identity` is set (tests/lab/keystone.py:
                    the lab's real Keystone, whose setup starts as soon as MariaDB answers)
    neutron-rpc-server, neutron-periodic-workers
    neutron-openvswitch-agent (datapath_type netdev, bridge_mappings public:br-ex), neutron-l3-agent
    (legacy routers), neutron-dhcp-agent (dnsmasq)

Every daemon runs in the lab host's network namespace (loopback addresses are that namespace's own),
in its own process group — the agents, when the host is a machine (`Neutron.host`, tests/lab/
container.py), as the host's services instead, DevStack's units (`UNITS`), enabled as DevStack
enables them; `stop()` (an agent restart) sends SIGTERM to its group or unit, SIGKILL after a
grace period (neutron-openvswitch-agent 28.0.2 does not exit on SIGTERM); `down()` kills every group
at once (all of it is thrown away), then what the agents spawned
themselves (dnsmasq, privsep helpers: every process whose command line names this lab's work
folder) and deletes the qrouter-/qdhcp- namespaces that appeared while it ran.
The Python packages come from the lab virtualenv (`make lab-venv`, tests/lab/requirements-lab.txt).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tests.lab import dbcache
from tests.lab.dbcache import DB_PASSWORD, LAB_VENV

if TYPE_CHECKING:  # container.py imports this module
    from tests.lab.container import Container

API_PORT, AMQP_PORT, EPMD_PORT, DIST_PORT = 19696, 17672, 17369, 17673
API = f"http://127.0.0.1:{API_PORT}"
HOSTNAME = "lab-host"
PHYSNET = "public"
AGENTS = ("ovs-agent", "l3-agent", "dhcp-agent", "metadata-agent")
# The secret Nova's metadata API and Neutron's metadata agent share (DevStack's METADATA_PROXY_SHARED_SECRET)
METADATA_SECRET = "lab-metadata-secret"
METADATA_PORT = 8775  # Nova's metadata API in the host, where the metadata agent sends the guests' requests
# The agents as DevStack's units name them: in the lab host, when it is a machine (`Neutron.host`).
UNITS = {
    "ovs-agent": "devstack@q-agt",
    "l3-agent": "devstack@q-l3",
    "dhcp-agent": "devstack@q-dhcp",
    "metadata-agent": "devstack@q-meta",
}
BINARIES = ["mariadbd", "mariadb-install-db", "mariadb", "epmd", "dnsmasq", "curl", "busybox", "conntrack"]
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
# not /usr/sbin/rabbitmqctl: that one switches to the rabbitmq user and its Erlang cookie
RABBITMQ_CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
VENV_BINARIES = [
    "uwsgi",
    "neutron-db-manage",
    "neutron-rpc-server",
    "neutron-periodic-workers",
    "neutron-openvswitch-agent",
    "neutron-l3-agent",
    "neutron-dhcp-agent",
    "openstack",
    "privsep-helper",
]


class Identity(Protocol):
    """What Neutron needs of a Keystone (tests/lab/keystone.py `Keystone`)."""

    def database_ready(self) -> None:
        """MariaDB answers: start setting up (in the background)."""

    def authtoken(self) -> str:
        """neutron.conf's [keystone_authtoken] section."""

    def nova_client(self) -> str:
        """neutron.conf's [nova] section (how Neutron sends Nova its ports' events)."""

    def token(self) -> str:
        """An admin token for the lab's own API calls (waits for the setup)."""


def prerequisites() -> list[str]:
    """What keeps real Neutron from running here (empty when it can run)."""
    problems = []
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if not RABBITMQ_SERVER.exists():
        missing.append(str(RABBITMQ_SERVER))
    if missing:
        problems.append("missing binaries: " + " ".join(missing))
    absent = [b for b in VENV_BINARIES if not (LAB_VENV / "bin" / b).exists()]
    if absent:
        problems.append(f"lab virtualenv {LAB_VENV} lacks {' '.join(absent)} (run `make lab-venv`)")
    if not problems and (stale := dbcache.problem()):
        problems.append(stale)
    return problems


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.25) -> float:
    """Poll `check` until it is true; return the seconds it took, raise after `timeout`."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_processes(pgids: set[int]) -> Iterator[tuple[Path, list[str]]]:
    """Each process now in one of these process groups: its /proc folder and its stat's fields after
    the name (state, ppid, pgrp, ...; utime and stime at 11 and 12)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in pgids:
            yield entry, fields


def _alive_group(pgid: int) -> bool:
    """Is any non-zombie process left in the process group?"""
    return any(fields[0] != "Z" for _, fields in group_processes({pgid}))


class Neutron:
    """The control plane and agents, configured under `work`, run in network namespace `netns`."""

    def __init__(self, work: Path, netns: str, ovs_run: Path, mtu: int = 1500, mgmt_ip: str = ""):
        """`mgmt_ip`: the host's management IP, where RabbitMQ also listens (for the compute host's
        agent, tests/lab/compute.py) and the OVS agent's VXLAN endpoint; '' keeps both on loopback."""
        self.work = work
        self.mgmt_ip = mgmt_ip
        self.netns = netns
        self.ovs_run = ovs_run
        self.mtu = mtu
        self.etc = work / "etc"
        self.log = work / "log"
        self.state = work / "state"
        self.groups: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.netns_before: set[str] = set()
        self.identity: Identity | None = None
        """A Keystone: the API authenticates (auth_strategy keystone) and `api()` sends a token."""
        self.uwsgi_socket = work / "neutron-api.socket"
        """The API's uWSGI socket, as DevStack's Apache reaches it (ProxyPass /networking)."""
        self.t0: float | None = None  # when start_backends began
        self.host: Container | None = None
        """The lab host: the agents run in it, as its services (UNITS)."""
        self.in_host: set[str] = set()  # the agents running in `host` now

    # --- processes -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{LAB_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "OVS_RUNDIR": str(self.ovs_run),
            "OVS_DBDIR": str(self.ovs_run),
            "OVS_LOGDIR": str(self.ovs_run),
            "OS_NEUTRON_CONFIG_DIR": str(self.etc),
            "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini;api-log.conf",
        }

    def enter(self) -> list[str]:
        """The host's network namespace only: not `ip netns exec`, whose private mount namespace
        would hide the namespaces the agents create (`ip netns add` bind-mounts them in /run/netns)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    def start(self, name: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        """Start a daemon in the host namespace, in its own session (its pid is its process group);
        `cwd`: its working folder (else pytest's)."""
        out = open(self.log / f"{name}.out", "ab")  # noqa: SIM115 - the child keeps it
        try:
            p = subprocess.Popen(
                [*self.enter(), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env or self.env(),
                cwd=cwd,
            )
        finally:
            out.close()
        self.groups[name] = p.pid

    def running(self, name: str) -> bool:
        """Is a process of the daemon started as `name` (not an agent in the host) still alive?"""
        return name in self.groups and _alive_group(self.groups[name])

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of the daemon's output (its .out file), for an error that says why."""
        return "\n".join((self.log / f"{name}.out").read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str, grace: float = 10) -> None:
        """SIGTERM the daemon's process group, SIGKILL whatever is left after `grace` seconds (an
        agent in the host: its unit stopped, SIGKILL after the stop timeout set at its start, or at
        once when `grace` is 0)."""
        if name in self.in_host and self.host is not None:
            self.in_host.discard(name)
            unit = f"{UNITS[name]}.service"
            if not grace:  # no SIGTERM first: SIGKILL, then the stop waits until it is gone
                self.host.run("systemctl", "kill", "--signal=SIGKILL", unit, check=False, timeout=60)
            stopped = self.host.run("systemctl", "stop", unit, check=False, timeout=60)
            if stopped.returncode not in (0, 5):  # 5: not loaded (DevStack's clean.sh deleted its file)
                raise RuntimeError(f"systemctl stop {unit} failed ({stopped.returncode}): {stopped.stderr}")
            return
        pgid = self.groups.pop(name, None)
        if pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive_group(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_for(f"{name} to die", lambda: not _alive_group(pgid), 10)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-pgid, os.WNOHANG)[0]:
                pass

    def kill(self, name: str) -> None:
        """SIGKILL the daemon's process group; return when none of it is left."""
        pgid = self.groups.pop(name, None)
        if pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        wait_for(f"{name} to die", lambda: not _alive_group(pgid), 10, every=0.05)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-pgid, os.WNOHANG)[0]:
                pass

    def run(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [*self.enter(), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env(),
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        return p

    # --- the API, from the test process --------------------------------------------------------
    def api(self, method: str, path: str, body: dict | None = None, ok: tuple[int, ...] = (200, 201, 204)) -> dict:
        """One call to the API (curl inside the host namespace; with an admin token when Neutron
        authenticates with Keystone, from a file: not on a command line); the decoded JSON answer."""
        args = ["curl", "-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}", f"{API}/v2.0/{path}"]
        if self.identity is not None:
            header = self.work / "token.header"
            text = f"X-Auth-Token: {self.identity.token()}\n"
            if not header.exists() or header.read_text() != text:
                header.touch(mode=0o600)
                header.write_text(text)
            args += ["-H", f"@{header}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        p = subprocess.run(
            [*self.enter(), *args],
            input=json.dumps(body) if body is not None else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
        text, _, code = p.stdout.rpartition("\n")
        if p.returncode != 0 or not code.isdigit() or int(code) not in ok:
            raise RuntimeError(f"{method} {path} -> {code or p.returncode}: {text[-500:]} {p.stderr.strip()}")
        return json.loads(text) if text.strip() else {}

    def find(self, kind: str, **filters: str) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self.api("GET", f"{kind}?{query}")[kind.replace("-", "_")]

    def agents_alive(self) -> int:
        return sum(a["alive"] for a in self.api("GET", "agents")["agents"])

    # --- configuration -------------------------------------------------------------------------
    def write_config(self) -> None:
        w, etc = self.work, self.etc
        for d in (etc, self.log, self.state / "lock", w / "mysql", w / "rabbit" / "mnesia", w / "rabbit" / "log"):
            d.mkdir(parents=True, exist_ok=True)
        sock = w / "mysql" / "mysqld.sock"
        ovsdb = f"unix:{self.ovs_run}/db.sock"
        files = {
            "my.cnf": f"""[mysqld]
datadir = {w}/mysql/data
socket = {sock}
pid-file = {w}/mysql/mysqld.pid
log-error = {self.log}/mariadb.err
{dbcache.server_settings()}
[client]
socket = {sock}
""",
            "rabbitmq.conf": f"""listeners.tcp.1 = 127.0.0.1:{AMQP_PORT}
{self.rabbit_mgmt_listener()}vm_memory_high_watermark.absolute = 512MiB
disk_free_limit.absolute = 50MB
""",
            "rabbitmq-enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "",
            "neutron.conf": f"""[DEFAULT]
host = {HOSTNAME}
state_path = {self.state}
api_paste_config = {etc}/api-paste.ini
core_plugin = ml2
service_plugins = router
auth_strategy = {"keystone" if self.identity else "noauth"}
transport_url = rabbit://guest:guest@127.0.0.1:{AMQP_PORT}/
rpc_workers = 1
rpc_state_report_workers = 1
api_workers = 1
debug = false
allow_overlapping_ips = true
dhcp_agents_per_network = 1
router_distributed = false
l3_ha = false
global_physnet_mtu = {self.mtu}
# Nova waits for its ports' network-vif-plugged events before a server goes ACTIVE (with Keystone)
notify_nova_on_port_status_changes = {str(bool(self.identity)).lower()}
notify_nova_on_port_data_changes = {str(bool(self.identity)).lower()}
# a lost call (a restarted agent, a busy machine) is retried in seconds, not a minute
rpc_response_timeout = 20

[database]
connection = mysql+pymysql://neutron:{DB_PASSWORD}@localhost/neutron?unix_socket={sock}&charset=utf8

[oslo_concurrency]
lock_path = {self.state}/lock

[oslo_messaging_rabbit]
# The lab starts Neutron's processes while RabbitMQ boots: a first connection that finds no broker
# is retried every second instead of after 1, 3, 5 ... s (the speed of the lab's start only).
rabbit_retry_interval = 1
rabbit_retry_backoff = 0
{self.identity.authtoken() + self.identity.nova_client() if self.identity else ""}
[agent]
# Everything runs as root; sudo would reset PATH (no privsep-helper) and OVS_RUNDIR.
root_helper = env
report_interval = 5

[ovs]
ovsdb_connection = {ovsdb}
""",
            "api-log.conf": f"[DEFAULT]\nlog_file = {self.log}/neutron-api.log\n",
            "ml2_conf.ini": f"""[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
path_mtu = {self.mtu}

[ml2_type_flat]
flat_networks = {PHYSNET}

[ml2_type_vxlan]
vni_ranges = 1001:2000
""",
            "openvswitch_agent.ini": ovs_agent_ini(ovsdb, self.mgmt_ip or "127.0.0.1", f"{PHYSNET}:br-ex"),
            "l3_agent.ini": f"""[DEFAULT]
interface_driver = openvswitch
agent_mode = legacy
# the router's haproxy on 169.254.169.254:80 -> the metadata agent's socket -> Nova's metadata API
enable_metadata_proxy = true
# The first full sync after a start (a restart's resync) waits a random 0-5 s by default, so that
# many agents do not hit the server at once; one agent here: no wait (convergence speed only).
periodic_fuzzy_delay = 0

[ovs]
datapath_type = netdev
ovsdb_connection = {ovsdb}
""",
            "metadata_agent.ini": f"""[DEFAULT]
nova_metadata_host = 127.0.0.1
nova_metadata_port = {METADATA_PORT}
metadata_proxy_shared_secret = {METADATA_SECRET}
metadata_workers = 1
""",
            "dhcp_agent.ini": f"""[DEFAULT]
interface_driver = openvswitch
dhcp_driver = neutron.agent.linux.dhcp.Dnsmasq
enable_isolated_metadata = false
force_metadata = false

[ovs]
datapath_type = netdev
ovsdb_connection = {ovsdb}
""",
            "neutron-api-uwsgi.ini": uwsgi_ini(
                self.uwsgi_socket,
                etc,
                "neutron_api",
                f"http-socket = 127.0.0.1:{API_PORT}\nworker-reload-mercy = 5\nreload-mercy = 5\n",
            ),
            # neutron.server parses sys.argv with oslo.config: hide uWSGI's; the config files come
            # from OS_NEUTRON_CONFIG_DIR / OS_NEUTRON_CONFIG_FILES.
            "neutron_api.py": "import sys\n\nsys.argv = sys.argv[:1]\n"
            "from neutron.wsgi.api import application  # noqa: E402,F401\n",
        }
        for name, text in files.items():
            (etc / name).write_text(text)
        shutil.copy(LAB_VENV / "etc" / "neutron" / "api-paste.ini", etc / "api-paste.ini")

    def rabbit_mgmt_listener(self) -> str:
        """RabbitMQ on the management IP too, `guest` allowed from there (a lab-only broker)."""
        if not self.mgmt_ip:
            return "loopback_users.guest = true\n"
        return f"listeners.tcp.2 = {self.mgmt_ip}:{AMQP_PORT}\nloopback_users.guest = false\n"

    def rabbit_env(self) -> dict[str, str]:
        r = self.work / "rabbit"
        return {
            **self.env(),
            "HOME": str(r),
            "RABBITMQ_CONF_ENV_FILE": str(self.etc / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": "ooalab@localhost",
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_DIST_PORT": str(DIST_PORT),
            "ERL_EPMD_PORT": str(EPMD_PORT),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"),
            "RABBITMQ_LOG_BASE": str(r / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.etc / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.etc / "rabbitmq-enabled_plugins"),
            "RABBITMQ_PID_FILE": str(r / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def rpc_consuming(self) -> bool:
        args = (RABBITMQ_CTL, "-q", "list_queues", "name", "consumers")
        out = self.run(*args, env=self.rabbit_env(), check=False, timeout=30)
        consumers = dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)
        return all(consumers.get(q, "0") not in ("0", "consumers") for q in ("q-plugin", "q-reports-plugin"))

    def _tcp_open(self, port: int) -> bool:
        return self.run("bash", "-c", f"</dev/tcp/127.0.0.1/{port}", check=False, timeout=5).returncode == 0

    # --- up / down -----------------------------------------------------------------------------
    def agent_args(self, agent: str) -> list[str]:
        ini = f"{agent.split('-')[0].replace('ovs', 'openvswitch')}_agent.ini"
        binary = f"neutron-{agent.replace('ovs-', 'openvswitch-')}"
        return [
            binary,
            "--config-file",
            f"{self.etc}/neutron.conf",
            "--config-file",
            f"{self.etc}/{ini}",
            "--log-file",
            f"{self.log}/{agent}.log",
        ]

    def start_agent(self, agent: str) -> None:
        if self.host is None:
            self.start(agent, *self.agent_args(agent))
            return
        keep = ("PATH", "OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OS_NEUTRON_CONFIG_DIR", "OS_NEUTRON_CONFIG_FILES")
        env = {k: v for k, v in self.env().items() if k in keep}
        binary, *args = self.agent_args(agent)  # systemd finds it on its own PATH, not the unit's
        # DevStack's unit (functions-common write_user_unit_file: KillMode=process), but a stop
        # timeout of 3 s, not its 300: neutron-openvswitch-agent 28.0.2 does not exit on SIGTERM, and
        # the host's reboot (tests/lab/test_reboot.py) would wait out the 300 s as a real one does.
        # After the host's Open vSwitch: Debian's starts early in a boot, the lab's are plain units.
        self.host.unit(
            UNITS[agent],
            str(LAB_VENV / "bin" / binary),
            *args,
            output=self.log / f"{agent}.out",
            env=env,
            stop_timeout=3,
            after="ooa-ovs-vswitchd.service",
            kill_mode="process",
        )
        self.in_host.add(agent)

    def start_backends(self) -> None:
        """MariaDB with the schema migrated, RabbitMQ starting: they need only the host namespace's
        loopback, so the lab builds the VPC, Open vSwitch and sshd meanwhile (Lab.build). The data
        folder, with Neutron's and Keystone's databases, users and schemas, is a copy of the one
        `make lab-db` migrated once for these packages (tests/lab/dbcache.py)."""
        self.t0 = time.monotonic()
        self.netns_before = set(netns_list())
        self.write_config()
        my = f"--defaults-file={self.etc}/my.cnf"
        if not (self.work / "mysql" / "data" / "mysql").exists():
            self.timings["migrated database copied"] = dbcache.prepare(self.work / "mysql" / "data")
        self.start("mariadb", "mariadbd", my)
        # Erlang writes its crash dumps (MnesiaCore.*, erl_crash.dump) where it runs: the lab's folder
        rabbit = self.work / "rabbit"
        rabbit.mkdir(parents=True, exist_ok=True)
        self.start("epmd", "epmd", "-port", str(EPMD_PORT), "-address", "127.0.0.1", env=self.rabbit_env(), cwd=rabbit)
        wait_for("epmd", lambda: self._tcp_open(EPMD_PORT), 10)
        self.start("rabbitmq", str(RABBITMQ_SERVER), env=self.rabbit_env(), cwd=rabbit)
        ping = ("mariadb", my, "-uroot", "-e", "select 1")
        wait_for("MariaDB", lambda: self.run(*ping, check=False).returncode == 0, 60)
        if self.identity is not None:
            self.identity.database_ready()  # Keystone's setup (its schema is migrated too)
        self.timings["backends"] = time.monotonic() - self.t0

    def up(self) -> None:
        """Start everything (the backends first unless start_backends ran); return when the three
        agents report alive. The bridge br-ex exists."""
        if self.t0 is None:
            self.start_backends()
        conf = ["--config-file", f"{self.etc}/neutron.conf", "--config-file", f"{self.etc}/ml2_conf.ini"]
        assert self.t0 is not None
        # The control plane starts while RabbitMQ boots: its imports and plugin loading (~4 s) overlap
        # the broker's start, and it connects once the broker listens (retrying every second, see
        # [oslo_messaging_rabbit] in neutron.conf).
        self.start("neutron-api", "uwsgi", "--ini", f"{self.etc}/neutron-api-uwsgi.ini")
        self.start("neutron-rpc", "neutron-rpc-server", *conf, "--log-file", f"{self.log}/neutron-rpc.log")
        self.start(
            "neutron-periodic", "neutron-periodic-workers", *conf, "--log-file", f"{self.log}/neutron-periodic.log"
        )
        wait_for("RabbitMQ", lambda: self._tcp_open(AMQP_PORT), 90)
        self.timings["rabbitmq listening"] = time.monotonic() - self.t0
        # An agent's first RPC call to a queue nobody consumes yet is lost: it times out and backs
        # off for up to a minute. Start the agents once the RPC server consumes its topics.
        wait_for("the RPC server's queues", self.rpc_consuming, 120, every=1)
        self.timings["rpc consuming"] = time.monotonic() - self.t0
        for agent in AGENTS:
            self.start_agent(agent)
        wait_for("the neutron API", lambda: bool(self.api("GET", "networks") is not None), 120)
        self.timings["api answering"] = time.monotonic() - self.t0
        wait_for(f"{len(AGENTS)} agents alive", lambda: self.agents_alive() == len(AGENTS), 120)
        self.timings["neutron up"] = time.monotonic() - self.t0

    def down(self) -> None:
        """Stop every daemon, then what they spawned, then their namespaces. Everything here is
        thrown away with its work folder (database, queues, state), so nothing is shut down
        gracefully: every process group gets SIGKILL at once (a graceful stop took ~12 s, the
        OVS agent alone 5 s: it does not exit on SIGTERM)."""
        t = time.monotonic()
        owned = self.owned_namespaces()
        names = list(self.groups)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(self.kill, names))
        self.kill_leftovers()
        for ns in owned & set(netns_list()):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.timings["neutron down"] = time.monotonic() - t

    def owned_namespaces(self) -> set[str]:
        """The agents' namespaces of this Neutron's routers and networks (named by their IDs, so a
        lab running beside this one keeps its own); when the API no longer answers, those that
        appeared while this Neutron ran."""
        try:
            ids = [f"qrouter-{r['id']}" for r in self.api("GET", "routers")["routers"]]
            ids += [f"qdhcp-{n['id']}" for n in self.api("GET", "networks")["networks"]]
            return set(ids)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError):
            if self.t0 is None:  # never started: nothing of ours exists
                return set()
            appeared = set(netns_list()) - self.netns_before
            return {ns for ns in appeared if ns.startswith(("qrouter-", "qdhcp-"))}

    def kill_leftovers(self) -> None:
        """dnsmasq and privsep helpers leave their agent's process group: find them by our work folder."""
        mine = str(self.work)
        me = os.getpid()
        pids = [
            int(e.name)
            for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) != me and mine in _cmdline(int(e.name))
        ]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def uwsgi_ini(socket: Path, pythonpath: Path, module: str, extra: str = "") -> str:
    """A uWSGI ini for one OpenStack WSGI app (`module`:application) on a unix socket, as DevStack
    runs them behind Apache: one process, stopped at once on SIGTERM."""
    return f"""[uwsgi]
{extra}socket = {socket}
chmod-socket = 666
master = true
processes = 1
threads = 2
enable-threads = true
lazy-apps = true
die-on-term = true
need-app = true
buffer-size = 65535
add-header = Connection: close
hook-master-start = unix_signal:15 gracefully_kill_them_all
pythonpath = {pythonpath}
module = {module}:application
"""


def ovs_agent_ini(ovsdb: str, local_ip: str, bridge_mappings: str = "") -> str:
    """openvswitch_agent.ini of a lab host: userspace datapath, VXLAN from `local_ip`, the OVS firewall."""
    mappings = f"bridge_mappings = {bridge_mappings}\n" if bridge_mappings else ""
    return f"""[ovs]
datapath_type = netdev
{mappings}local_ip = {local_ip}
ovsdb_connection = {ovsdb}
of_listen_address = 127.0.0.1
of_listen_port = 16633

[agent]
tunnel_types = vxlan
l2_population = false
# The rpc_loop's period (default 2 s): how soon a new or re-created port is wired and reported
# ACTIVE. Only the lab's speed of convergence depends on it (each idle iteration costs ~5 ms).
polling_interval = 1

[securitygroup]
firewall_driver = openvswitch
enable_security_group = true
"""


def netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


if __name__ == "__main__":  # pragma: no cover - a hand check: python -m tests.lab.neutron
    print("\n".join(prerequisites()) or "ok", file=sys.stderr)
