"""A compute host joined to the lab's Neutron over VXLAN (docs/compute-nodes.md, the lab's half).

    vpc ns                          host ns (the controller)            host2 ns (lab-compute)
    vbr-mgmt 10.0.1.1 ── p-mgmt ── eth0 ∈ br-mgmt 10.0.1.10             eth0 ∈ br-mgmt 10.0.1.11
                      └─ p-mgmt2 ───────────────────────────────────────┘
                                    br-int ─ br-tun ══ VXLAN ══════════ br-tun ─ br-int ─ vm3
                                    router1, dnsmasq, RabbitMQ          its own Open vSwitch and
                                    (also on 10.0.1.10)                 neutron-openvswitch-agent

The second host is what `ComputeNodes` makes of node 0: its management NIC at the fixed IP after
the controller's (10.0.1.11), no provider NIC, and only Neutron's Open vSwitch agent (host
`lab-compute`), joined to the controller's Neutron through the controller's RabbitMQ **over the
management network** (10.0.1.10:17672), as DevStack's compute nodes reach `SERVICE_HOST`'s
RabbitMQ: the RPC path a real node uses, not a shortcut through a shared loopback (which a
separate network namespace does not have anyway). Each host runs its own ovsdb-server and
ovs-vswitchd (own run folder, userspace datapath).

Tunnels on the userspace datapath: Open vSwitch encapsulates VXLAN itself and routes the outer
packet with its own table (`ovs-appctl ovs/route/show`, learnt from the kernel's), which only
accepts an output device that is an Open vSwitch bridge of the same datapath; it answers and
resolves ARP itself (`tnl/arp/show`), and decapsulates only packets addressed to an IP that sits on
one of its internal ports. So on both hosts the management NIC is a port of a netdev bridge
`br-mgmt` whose internal port holds the management IP (the `br-phy` pattern of Open vSwitch's
"userspace-tunneling" guide), with the NIC's MAC (the ENI's registered MAC: the VPC forwards
nothing else) pinned as the bridge's MAC; `eth0` keeps no IP and answers no ARP. Both agents'
`local_ip` is their management IP. On AWS the kernel datapath tunnels through the kernel's
routing and the IP stays on the ENI; the packets on the wire are the same.

MTU: the management link is 9001 bytes as an ENA ENI's (the VPC bridge, the veths, `br-mgmt`);
Neutron keeps DevStack's defaults (global_physnet_mtu = path_mtu = 1500), so the VXLAN tenant
network is 1450 and its encapsulated frames (1500) fit the management link with room to spare.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.lab import neutron
from tests.lab.net import MGMT_GW, MGMT_IP, MGMT_MAC, OVS_SCHEMA, _alive, lease, lease_script, plug, sh
from tests.lab.neutron import wait_for

if TYPE_CHECKING:
    from tests.lab.net import Lab, Vm

HOSTNAME = "lab-compute"
UNDERLAY = "br-mgmt"  # the bridge holding a host's management IP (the br-phy pattern)
MGMT_MTU = 9001  # an ENA ENI's MTU, the management one like the provider one
VXLAN_PORT = 4789  # IANA's, Open vSwitch's and Neutron's default
TENANT_MTU = 1500 - 50  # Neutron: min(global_physnet_mtu, path_mtu) - VXLAN's 50 bytes


def ovs_in(ns: str, run: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """An Open vSwitch command against the daemons of run folder `run`, in namespace `ns`."""
    return sh(*args, ns=ns, check=check, env={"OVS_RUNDIR": str(run)})


def start_ovs(ns: str, run: Path, hostname: str) -> None:
    """ovsdb-server and ovs-vswitchd of one lab host (own run folder, database, logs), as the
    controller's (net.Lab._build_ovs); the agent makes br-int and br-tun."""
    run.mkdir(parents=True)
    db, sock = run / "conf.db", f"unix:{run}/db.sock"
    sh("ovsdb-tool", "create", str(db), str(OVS_SCHEMA))
    files = (f"--pidfile={run}/{{0}}.pid", f"--unixctl={run}/{{0}}.ctl", f"--log-file={run}/{{0}}.log")
    server = (f.format("ovsdb-server") for f in files)
    ovs_in(ns, run, "ovsdb-server", str(db), f"--remote=p{sock}", *server, "--detach")
    ids = (f"external_ids:system-id={hostname}", f"external_ids:hostname={hostname}")
    ovs_in(ns, run, "ovs-vsctl", "--no-wait", "init", "--", "set", "Open_vSwitch", ".", *ids)
    ovs_in(ns, run, "ovs-vswitchd", sock, *(f.format("ovs-vswitchd") for f in files), "--detach")


def underlay(ns: str, run: Path, ip: str, mac: str, gateway: str) -> None:
    """Move the host's management IP from `eth0` onto `br-mgmt`, a netdev bridge with `eth0` as its
    port and the NIC's MAC as its own (see the module's docstring); the default route follows."""
    ovs_in(
        ns,
        run,
        "ovs-vsctl",
        "--timeout=10",
        "add-br",
        UNDERLAY,
        "--",
        "set",
        "bridge",
        UNDERLAY,
        "datapath_type=netdev",
        f"other-config:hwaddr={mac}",
        "--",
        "add-port",
        UNDERLAY,
        "eth0",
        "--",
        "set",
        "Interface",
        UNDERLAY,
        f"mtu_request={MGMT_MTU}",
    )
    wait_for(f"{UNDERLAY} in {ns}", lambda: sh("ip", "link", "show", UNDERLAY, ns=ns, check=False).returncode == 0, 10)
    sh("ip", "addr", "flush", "dev", "eth0", ns=ns)
    sh("ip", "link", "set", "eth0", "arp", "off", ns=ns)
    sh("ip", "addr", "add", f"{ip}/24", "dev", UNDERLAY, ns=ns)
    sh("ip", "link", "set", UNDERLAY, "up", ns=ns)
    # the internal port is a tap device of ovs-vswitchd: TCP needs full checksums from the kernel
    sh("ethtool", "-K", UNDERLAY, "tx", "off", ns=ns)
    sh("ip", "route", "replace", "default", "via", gateway, ns=ns)


class ComputeHost:
    """Host 2: namespace `<tag>-host2` on the management bridge, its own Open vSwitch and OVS agent,
    and the tenant VM `vm3` bound to it."""

    def __init__(self, lab: Lab, ip: str, mac: str, vm: Vm):
        self.lab = lab
        self.ns = f"{lab.tag}-host2"
        self.ip, self.mac = ip, mac
        self.lab_mgmt_ip = MGMT_IP
        self.vm = vm
        self.run = lab.work / "ovs2"
        # Process control (start, stop, the agent's command line) as for the controller's agents;
        # the configuration is this module's. Never `down()`: that is the controller's teardown.
        self.agent = neutron.Neutron(lab.work / "compute", self.ns, self.run)
        self.timings: dict[str, float] = {}

    def underlay_controller(self) -> None:
        """The controller's br-mgmt (before its sshd and its OVS agent start: both need the IP)."""
        lab = self.lab
        underlay(lab.host, lab.run, MGMT_IP, MGMT_MAC, MGMT_GW)

    def ovs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return ovs_in(self.ns, self.run, *args, check=check)

    # --- build ---------------------------------------------------------------------------------
    def build_host(self) -> None:
        """The namespace's NIC on the VPC's management bridge, Open vSwitch, br-mgmt (no Neutron yet)."""
        t = time.monotonic()
        vpc = self.lab.vpc
        sh("ip", "link", "add", "p-mgmt2", "netns", vpc, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        sh("ip", "link", "set", "eth0", "address", self.mac, "mtu", str(MGMT_MTU), "up", ns=self.ns)
        sh("ip", "link", "set", "p-mgmt2", "mtu", str(MGMT_MTU), "master", "vbr-mgmt", "up", ns=vpc)
        # eth0 is an AF_PACKET port of ovs-vswitchd, which gets partial checksums otherwise
        sh("ethtool", "-K", "p-mgmt2", "tx", "off", ns=vpc)
        self.count_vxlan()
        start_ovs(self.ns, self.run, HOSTNAME)
        underlay(self.ns, self.run, self.ip, self.mac, MGMT_GW)
        self.timings["compute host"] = time.monotonic() - t

    def write_config(self) -> None:
        """The node's agent: host lab-compute, the controller's RabbitMQ over the management
        network, VXLAN from its management IP, no provider bridge (tenant networks only)."""
        a = self.agent
        for d in (a.etc, a.log, a.state / "lock"):
            d.mkdir(parents=True, exist_ok=True)
        ovsdb = f"unix:{self.run}/db.sock"
        (a.etc / "neutron.conf").write_text(f"""[DEFAULT]
host = {HOSTNAME}
state_path = {a.state}
core_plugin = ml2
transport_url = rabbit://guest:guest@{MGMT_IP}:{neutron.AMQP_PORT}/
debug = false
rpc_response_timeout = 20

[oslo_concurrency]
lock_path = {a.state}/lock

[agent]
root_helper = env
report_interval = 5

[ovs]
ovsdb_connection = {ovsdb}
""")
        (a.etc / "openvswitch_agent.ini").write_text(neutron.ovs_agent_ini(ovsdb, self.ip))

    def start_agent(self) -> None:
        self.write_config()
        self.agent.start_agent("ovs-agent")

    def agent_record(self) -> dict | None:
        agents = self.lab.neutron.find("agents", host=HOSTNAME, binary="neutron-openvswitch-agent")
        return agents[0] if agents else None

    def wait_agent(self, timeout: float = 90) -> float:
        def alive() -> bool:
            record = self.agent_record()
            return bool(record and record["alive"])

        return wait_for(f"{HOSTNAME}'s OVS agent alive", alive, timeout)

    def plug_vm(self) -> None:
        """vm3, once the node's agent is alive: a Neutron port bound to lab-compute, plugged into
        host2's br-int as the lab plugs vm1/vm2 (fullstack style), addressed by the controller's
        dnsmasq through the tunnel. Runs beside the lab's own _build_vms."""
        t = time.monotonic()
        self.wait_agent()
        lab, api, vm = self.lab, self.lab.neutron, self.vm
        net = api.find("networks", name="private")[0]
        subnet = api.find("subnets", name="private-subnet")[0]
        plug(api, vm, net["id"], subnet["id"], HOSTNAME, f"{lab.tag}-{vm.name}", self.ovs, self.ns)
        wait_for(f"port {vm.name} ACTIVE", lambda: lab.port_status(vm.port_id) == "ACTIVE", 60)
        lease(vm, lease_script(self.agent.work))  # from the controller's dnsmasq, through the tunnel
        self.timings["compute vm"] = time.monotonic() - t

    # --- observe -------------------------------------------------------------------------------
    def vxlan_port(self, where: str) -> str:
        """The name of the VXLAN port the OVS agent made on br-tun of `where` ('host' or 'host2')
        towards the other host ('' while there is none)."""
        ovs = self.lab.ovs if where == "host" else self.ovs
        names = ovs("ovs-vsctl", "list-ports", "br-tun", check=False).stdout.split()
        return next((n for n in names if n.startswith("vxlan-")), "")

    def vxlan_options(self, where: str) -> dict[str, str]:
        ovs = self.lab.ovs if where == "host" else self.ovs
        port = self.vxlan_port(where)
        text = ovs("ovs-vsctl", "get", "Interface", port, "options").stdout.strip().strip("{}")
        return {k.strip(): v.strip().strip('"') for k, v in (kv.split("=", 1) for kv in text.split(", "))}

    def appctl(self, *args: str) -> str:
        """ovs-appctl to host 2's ovs-vswitchd (its control socket is in its run folder)."""
        return self.ovs("ovs-appctl", "-t", str(self.run / "ovs-vswitchd.ctl"), *args).stdout

    def count_vxlan(self) -> None:
        """Counters of the VXLAN packets on the VPC's management bridge, each direction: what the
        tunnel carries on the wire, counted outside both hosts' Open vSwitch."""
        a, b = self.lab_mgmt_ip, self.ip
        vxlan = f"ether type ip udp dport {VXLAN_PORT}"
        ruleset = f"""
table bridge ooa_vxlan {{
  counter to_compute {{ }}
  counter to_controller {{ }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    {vxlan} ip saddr {a} ip daddr {b} counter name to_compute
    {vxlan} ip saddr {b} ip daddr {a} counter name to_controller
  }}
}}
"""
        sh("nft", "-f", "-", ns=self.lab.vpc, input=ruleset)

    def vxlan_counted(self) -> dict[str, int]:
        """Bytes of VXLAN packets the management bridge forwarded: to_compute, to_controller."""
        out = {}
        for name in ("to_compute", "to_controller"):
            text = sh("nft", "list", "counter", "bridge", "ooa_vxlan", name, ns=self.lab.vpc).stdout
            out[name] = int(text.split("bytes")[1].split()[0])
        return out

    # --- teardown ------------------------------------------------------------------------------
    def stop(self) -> None:
        """The agent (it ignores SIGTERM: no grace) and what it spawned."""
        self.agent.stop("ovs-agent", grace=0)
        self.agent.kill_leftovers()

    def stop_ovs(self) -> None:
        """Host 2's ovsdb-server and ovs-vswitchd (throw-away database and datapath: SIGKILL)."""
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pidfile = self.run / f"{daemon}.pid"
            if pidfile.exists():
                pid = int(pidfile.read_text().split()[0])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_for(f"{daemon} of {self.ns} to die", lambda p=pid: not _alive(p), 5, 0.02)  # type: ignore[misc]
