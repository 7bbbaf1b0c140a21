"""The emulated AWS VPC around a host that runs real Neutron (tests/lab/neutron.py).

    internet ns                vpc ns                                host ns (the EC2 instance)
    eth0 198.51.100.10 ── inet0 198.51.100.1                        sshd (the container) on 10.0.1.10
                          1:1 NAT elastic IP <-> registered IP       eth0 ── p-mgmt (vbr-mgmt 10.0.1.1)
                          vbr-prov 10.0.2.1: bridge that drops       eth1 (no IP, arp off): the provider
                          frames whose (port, MAC, IP) is not        ENI, a port of br-ex (Open vSwitch,
                          registered to an ENI ── p-prov ── eth1     userspace datapath); Neutron's
    peer ns (a VPC peer)  vbr-peer 10.0.3.1 ── p-peer ── eth0        control plane and agents
    eth0 10.0.3.20

    Neutron, driven by the external-gateway step over SSH: provider network `public` (flat, physnet
    public = br-ex), router1 with its gateway fixed IP 10.0.2.10 (qrouter-<id>, qg-<port id[:11]>),
    tenant network `private` 192.168.100.0/24; vm1 192.168.100.10 and vm2 192.168.100.20 are Neutron
    ports plugged as Neutron's fullstack tests plug them, addressed by the DHCP agent's dnsmasq;
    vm2 has the floating IP 10.0.2.11.

The provider ENI has the primary IP 10.0.2.10 (elastic IP 203.0.113.20) and the secondary IPs
10.0.2.11 and 10.0.2.12 (elastic IPs 203.0.113.21, 203.0.113.22): Neutron's floating IP pool. The
management ENI 10.0.1.10 (elastic IP 203.0.113.10) is where the steps' SSH goes, from the internet
namespace, as pulumi-command's would. On the host the management IP sits on the Open vSwitch bridge
br-mgmt (eth0 its port): the VXLAN endpoint of the userspace datapath. The compute host `host2`
(10.0.1.11 on the same management bridge, vm3 bound to it, vm3's floating IP 10.0.2.13 / elastic IP
203.0.113.23) is tests/lab/compute.py's.

The host is a machine: a Debian 12 container booted by systemd-nspawn in the host namespace
(tests/lab/container.py), with sshd (pinned host key), Open vSwitch and Apache as its services and
the steps' re-apply timers in its systemd, and Neutron's agents as DevStack's units; Neutron's
control plane runs beside it, in the same network namespace.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components import openstack
from components.contract import contract_for_render
from components.openstack import TlsParts, args_from_settings, local_conf_for, selected_steps, step_inputs
from config.ingress import MANAGEMENT_PORTS
from config.settings import NAMESPACE, Settings, load_settings
from onhost import remote
from onhost.chain import PROBE_URL, Step
from tests.lab import container, keystone, neutron
from tests.lab.neutron import wait_for
from tests.lab.nova import Nova

INTERNET_IP = "198.51.100.10"
VPC_OUTER_IP = "198.51.100.1"
MGMT_GW, MGMT_IP, MGMT_EIP, MGMT_MAC = "10.0.1.1", "10.0.1.10", "203.0.113.10", "0e:00:00:00:01:10"
PROVIDER_GW, PROVIDER_MAC = "10.0.2.1", "0e:00:00:00:02:10"
PROVIDER_IP, PROVIDER_EIP = "10.0.2.10", "203.0.113.20"
FLOATING_IP, FLOATING_EIP = "10.0.2.11", "203.0.113.21"
LATER_IP, LATER_EIP = "10.0.2.12", "203.0.113.22"  # the floating IP a test adds later
# the compute host (tests/lab/compute.py): node 0's management IP, and vm3's floating IP
COMPUTE_MGMT_IP, COMPUTE_MGMT_MAC = "10.0.1.11", "0e:00:00:00:01:11"
COMPUTE_FIP, COMPUTE_EIP = "10.0.2.13", "203.0.113.23"
PROVIDER_CIDR, TENANT_CIDR = "10.0.2.0/24", "192.168.100.0/24"
PEER_GW, PEER_IP, PEER_MAC = "10.0.3.1", "10.0.3.20", "0e:00:00:00:03:20"
TENANT_GW, VM1_IP, VM2_IP, VM3_IP = "192.168.100.1", "192.168.100.10", "192.168.100.20", "192.168.100.30"
ELASTIC = {
    MGMT_EIP: MGMT_IP,
    PROVIDER_EIP: PROVIDER_IP,
    FLOATING_EIP: FLOATING_IP,
    LATER_EIP: LATER_IP,
    COMPUTE_EIP: COMPUTE_FIP,
}
REGISTERED = [
    ("p-mgmt", MGMT_MAC, MGMT_IP),
    ("p-mgmt2", COMPUTE_MGMT_MAC, COMPUTE_MGMT_IP),
    ("p-prov", PROVIDER_MAC, PROVIDER_IP),
    ("p-prov", PROVIDER_MAC, FLOATING_IP),
    ("p-prov", PROVIDER_MAC, LATER_IP),
    ("p-prov", PROVIDER_MAC, COMPUTE_FIP),
    ("p-peer", PEER_MAC, PEER_IP),
]
PROBE_HOST = urlsplit(PROBE_URL).hostname  # the smoke step's probe (checkip.amazonaws.com)
CLOUD = "devstack-admin"  # DevStack's admin cloud in /etc/openstack/clouds.yaml (tests/lab/keystone.py)
PROVIDER_MTU = 9001  # an ENA ENI's link, management and provider (and VPC peering); the internet path is 1500
BULK = 4 * 1024 * 1024  # bytes each bulk transfer moves (listeners on the VMs' port 9000 / 9001)

BINARIES = [
    "ip",
    "nft",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ethtool",
    "ping",
    "socat",
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ssh",
    "ssh-keygen",
    "sudo",
    "flock",
    "jq",
    "mount",
    "nsenter",
]
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def prerequisites() -> list[str]:
    """What keeps the lab from running here (empty when it can run)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root (the lab creates network namespaces and runs Open vSwitch)")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        problems.append("missing binaries: " + " ".join(missing))
    if not OVS_SCHEMA.exists():
        problems.append(f"missing {OVS_SCHEMA} (package openvswitch-switch)")
    return problems + neutron.prerequisites() + keystone.prerequisites() + container.prerequisites()


def sh(
    *args: str,
    ns: str | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run `args` (in network namespace `ns`: a lab namespace's name, or the path of one, such as
    the host's agents' namespaces, Container.netns_path); raise on failure unless not `check`."""
    enter = ["nsenter", f"--net={ns}", "--"] if ns and ns.startswith("/") else ["ip", "netns", "exec", ns] if ns else []
    cmd = enter + list(args)
    p = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env} if env else None
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def netns_sysctls(forward: bool) -> dict[str, str]:
    """The IP settings of a lab namespace, in the order they are set. A new network namespace starts
    with the machine's IPv4 settings (net.ipv4.ip_forward and the conf.all / conf.default values
    are copied from the machine's own namespace), not the kernel's defaults; a Docker or libvirt
    host forwards. So each lab namespace sets what the lab relies on:

    - ip_forward: only the VPC routes. The hosts' ovs-vswitchd reads their NICs through AF_PACKET
      (the userspace datapath), so each host's own IP stack gets every frame too: on the provider
      NIC, the frames for the router's gateway IP (the ENI's MAC is the qg- device's and eth1's
      after gateway-mac). A forwarding host routes them out of its management NIC, the internet
      or VPC router as their source, and the VPC drops them (what the lab saw on a forwarding
      machine). On AWS the kernel datapath takes the NIC's frames from the host's stack.
      Set first: a change of ip_forward also sets conf.all.accept_redirects.
    - no ICMP redirects sent or taken (the VPC router sends none: routes stay as the lab makes them);
      no reverse-path filter and the kernel's ARP defaults (the VPC checks the sources itself: what
      each namespace answers and asks is what the lab's frames and its drop counters assume).
    - no IPv6 (the VPC emulates ENIs without IPv6 addresses).
    """
    ipv4 = {
        "rp_filter": 0,
        "accept_redirects": 0,
        "send_redirects": 0,
        "arp_filter": 0,
        "arp_ignore": 0,
        "arp_announce": 0,
    }
    return {
        "net.ipv4.ip_forward": str(int(forward)),
        **{f"net.ipv4.conf.{c}.{k}": str(v) for k, v in ipv4.items() for c in ("all", "default")},
        **{f"net.ipv6.conf.{c}.disable_ipv6": "1" for c in ("all", "default")},
    }


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _resolved(value: object) -> str:
    """A step parameter as text: a program's `pulumi.Output` resolved (no engine needed)."""
    if isinstance(value, pulumi.Output):
        return str(_sync_await(value.future()))
    return str(value)


def _params(args: openstack.OpenStackArgs, row: Step, emitted: dict[str, object]) -> dict[str, str]:
    """A row's parameters as the program builds them for `args`, its Outputs resolved."""
    return {k: _resolved(v) for k, v in row.params(step_inputs(args, emitted)).items()}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


CLONE_NEWNS = 0x00020000
NETNS_DIR = Path("/run/netns")
MACHINE_MOUNTS: int | None = None  # a descriptor of the machine's mount namespace, once we left it


def private_netns_dir(tag: str) -> None:
    """Give this process (and every process it starts) a /run/netns of its own: a new mount
    namespace, a slave of the machine's, with a fresh tmpfs on /run/netns. Neutron's L3 agent
    deletes, on every full sync (start, restart), each `qrouter-` namespace it lists and does not
    know: with the machine's /run/netns, a lab built beside this one would lose its routers to this
    lab's agent (and this lab to its). The namespaces live as long as their mounts, so they go with
    this process even if nothing tears them down. Must run before the process starts a thread."""
    if len(os.listdir("/proc/self/task")) != 1:
        raise RuntimeError("private_netns_dir: the process already runs threads (unshare would fail)")
    global MACHINE_MOUNTS
    if MACHINE_MOUNTS is None:  # kept open: `nsenter --mount=/proc/<pid>/fd/<fd>` sees the machine's
        MACHINE_MOUNTS = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    sh("mount", "--make-rslave", "/")  # the machine's mounts still reach us; ours stay here
    NETNS_DIR.mkdir(mode=0o755, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", f"{tag}-netns", str(NETNS_DIR))


@dataclass
class Router:
    """The router external-gateway made, as the L3 agent builds it."""

    router_id: str
    gw_port_id: str

    @property
    def ns(self) -> str:
        return f"qrouter-{self.router_id}"

    @property
    def qg(self) -> str:
        return f"qg-{self.gw_port_id[:11]}"


@dataclass
class Vm:
    """A tenant VM: a Neutron port plugged into br-int and moved into the namespace `ns`."""

    name: str
    ns: str
    ip: str
    port_id: str = ""
    mac: str = ""

    @property
    def dev(self) -> str:
        return f"tap{self.port_id[:11]}"


def lease_script(where: Path) -> Path:
    """busybox udhcpc's script that applies a lease (address, default route), written in `where`."""
    script = where / "udhcpc.sh"
    script.write_text(
        '#!/bin/sh\ncase "$1" in bound|renew)\n  ip addr flush dev "$interface"\n'
        '  ip addr add "$ip/$mask" dev "$interface"\n  ip route replace default via "$router"\n;; esac\n'
    )
    script.chmod(0o755)
    return script


def plug(
    api: neutron.Neutron, vm: Vm, network_id: str, subnet_id: str, host: str, device_id: str, ovs, ns: str
) -> None:
    """`vm` as Neutron's fullstack tests plug a VM: a port bound to `host` at vm.ip, an OVS internal
    port of that host's br-int (`ovs`, in namespace `ns`) with iface-id / attached-mac / iface-status,
    moved into vm.ns with the port's MAC."""
    port = api.api(
        "POST",
        "ports",
        {
            "port": {
                "name": f"{vm.name}-port",
                "network_id": network_id,
                "fixed_ips": [{"subnet_id": subnet_id, "ip_address": vm.ip}],
                "device_owner": "compute:nova",
                "device_id": device_id,
                "binding:host_id": host,
            }
        },
    )["port"]
    vm.port_id, vm.mac = port["id"], port["mac_address"]
    attach(vm, ovs, ns)


def attach(vm: Vm, ovs, ns: str) -> None:
    """vm's port as an OVS internal port of br-int (`ovs`, in namespace `ns`) with iface-id /
    attached-mac / iface-status, moved into vm.ns with the port's MAC. Again after the host's Open
    vSwitch restarted: its internal ports' tap devices go with it and come back in `ns`."""
    ovs(
        "ovs-vsctl",
        "--",
        "--may-exist",
        "add-port",
        "br-int",
        vm.dev,
        "--",
        "set",
        "Interface",
        vm.dev,
        "type=internal",
        f"external_ids:iface-id={vm.port_id}",
        "external_ids:iface-status=active",
        f"external_ids:attached-mac={vm.mac}",
    )
    # the userspace datapath creates the tap device asynchronously
    wait_for(vm.dev, lambda: sh("ip", "link", "show", vm.dev, ns=ns, check=False).returncode == 0, 10, 0.05)
    sh("ip", "link", "set", vm.dev, "address", vm.mac, "netns", vm.ns, ns=ns)
    sh("ip", "link", "set", vm.dev, "up", ns=vm.ns)
    sh("ethtool", "-K", vm.dev, "tx", "off", ns=vm.ns)


def lease(vm: Vm, script: Path, tries: int = 10) -> None:
    """vm's address from the DHCP agent's dnsmasq (busybox udhcpc: `tries` discovers, 1 s apart), checked."""
    dhcp = ("busybox", "udhcpc", "-i", vm.dev, "-n", "-q", "-f", "-t", str(tries), "-T", "1", "-s", str(script))
    sh(*dhcp, ns=vm.ns, timeout=30)
    got = sh("ip", "-4", "-o", "addr", "show", "dev", vm.dev, ns=vm.ns).stdout
    if f"{vm.ip}/24" not in got:
        raise RuntimeError(f"{vm.name}: DHCP gave {got.strip()!r}, not {vm.ip}")


class Lab:
    def __init__(self, keep: bool = False):
        self.tag = f"ooa{os.getpid() % 100000}{os.urandom(2).hex()}"
        # A world-traversable folder: dnsmasq drops to its own user and then reads Neutron's DHCP
        # host files under it (in pytest's 0700 tmp folder it serves no lease at all).
        self.work = Path(tempfile.mkdtemp(prefix="ooa-lab-"))
        self.work.chmod(0o755)
        self.keep = keep or os.environ.get("OOA_LAB_KEEP") == "1"
        self.run = self.work / "ovs"
        self.prefix = self.work / "prefix"
        self.state = self.work / "state"
        self.clouds_yaml = Path("/etc/openstack/clouds.yaml")  # as the host sees it (DevStack's)
        self.vpc, self.inet, self.host, self.peer = (f"{self.tag}-{n}" for n in ("vpc", "inet", "host", "peer"))
        # The host: a booted Debian container in the host namespace (tests/lab/container.py); its
        # files as the lab sees them under `root`, what changed in them under `upper`.
        self.container = container.Container(
            self.work / "host",
            f"{self.tag}-host",
            self.host,
            binds=[(self.work, str(self.work)), (self.run, "/run/openvswitch")],
            ro_binds=[neutron.LAB_VENV],
        )
        self.etc = self.container.root / "etc"
        self.upper = self.container.upper
        self.vms = [Vm("vm1", f"{self.tag}-vm1", VM1_IP), Vm("vm2", f"{self.tag}-vm2", VM2_IP)]
        self.vm1, self.vm2 = (vm.ns for vm in self.vms)
        self.neutron = neutron.Neutron(self.work / "neutron", self.host, self.run, mgmt_ip=MGMT_IP)
        self.neutron.host = self.container  # the OVS agent runs in it
        from tests.lab.compute import ComputeHost  # it imports this module

        # vm3 joins self.vms once plugged (after vm1 and vm2)
        self.compute = ComputeHost(self, COMPUTE_MGMT_IP, COMPUTE_MGMT_MAC, Vm("vm3", f"{self.tag}-vm3", VM3_IP))
        self.vm3 = self.compute.vm.ns
        # Keystone, and Neutron's keystonemiddleware, configured as DevStack configures them with the
        # local.conf the program renders for this machine.
        local_conf = local_conf_for(contract_for_render(self.devstack_settings, "<the lab's key>"))
        self.keystone = keystone.Keystone(self.work / "keystone", self.etc, MGMT_IP, self.neutron, local_conf)
        self.neutron.identity = self.keystone  # Neutron authenticates with the lab's real Keystone
        # Nova's control plane, Placement and Glance, set up beside Neutron's start (tests/lab/nova.py)
        self.nova = Nova(self.work / "nova", self.neutron, self.keystone, local_conf)
        self.router = Router("", "")
        # what the VPC knows of the ENIs: (port, MAC, IP) registrations and the Elastic IPs' targets
        self.registered = list(REGISTERED)
        self.elastic = dict(ELASTIC)
        self.namespaces: list[str] = []
        self.sysctls: dict[str, dict[str, str]] = {}  # what netns set in each
        self.procs: list[subprocess.Popen] = []
        self.key = self.work / "id_ed25519"
        self.known_hosts = self.work / "known_hosts"  # the host's key, pinned
        # One SSH connection carries every exec session (OpenSSH multiplexing): the host sees each
        # command, its stdin and exit status as Pulumi sends them; only the key exchange and login
        # (170-210 ms of two busy cores) happen once instead of per call.
        self.mux = ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.work}/ssh-%C", "-o", "ControlPersist=yes"]
        self.timings: dict[str, float] = {}
        self.facts: dict[str, str] = {}
        """What this run found about the machine (printed after the timings: which accelerator ran)."""
        self._down = False
        self._netns_dir = False  # this process has its own /run/netns (private_netns_dir)

    # --- helpers -----------------------------------------------------------------------------
    def ovs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(*args, ns=self.host, check=check, env={"OVS_RUNDIR": str(self.run)})

    def netns(self, name: str, forward: bool = False) -> None:
        """A lab namespace with the lab's IP settings (netns_sysctls): a router's if `forward`."""
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.sysctls[name] = netns_sysctls(forward)
        sh("sysctl", "-qw", *(f"{k}={v}" for k, v in self.sysctls[name].items()), ns=name)
        sh("ip", "link", "set", "lo", "up", ns=name)

    def spawn(self, ns: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    # --- build -------------------------------------------------------------------------------
    def build(self) -> Lab:
        """The VPC, the host with Open vSwitch, sshd and Neutron, the external-gateway step (over
        SSH, against the API), the tenant VMs with their DHCP leases, a floating IP on vm2."""
        atexit.register(self.teardown)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _interrupt)  # so finally/teardown run on `kill`
        t0 = time.monotonic()
        try:
            private_netns_dir(self.tag)
            self._netns_dir = True
            for ns in (self.vpc, self.inet, self.host, self.peer, self.vm1, self.vm2, self.compute.ns, self.vm3):
                self.netns(ns, forward=ns == self.vpc)
            # MariaDB, RabbitMQ, migrations (and Keystone's setup) while the VPC, OVS and sshd are
            # built; host 2 while Neutron starts.
            with ThreadPoolExecutor(max_workers=2) as pool:
                backends = pool.submit(self.neutron.start_backends)
                self.nova.start(backends)
                self._build_vpc()
                self._build_host()
                self._build_container()
                self._build_ovs()
                self.compute.underlay_controller()  # the management IP onto br-mgmt: the VXLAN endpoint
                self._wait_sshd()
                self.keystone.start_apache(self.container)
                host2 = pool.submit(self.compute.build_host)
                self.timings["vpc, host, ovs, sshd, apache"] = time.monotonic() - t0
                backends.result()
                self.neutron.up()
                host2.result()
            self.compute.start_agent()
            self.timings.update(self.neutron.timings)  # the copied database, backends ready, neutron up
            self.timings.update(self.keystone.timings)
            self.timings.update(self.container.timings)
            t = time.monotonic()
            out = self.ssh(remote.UPLOAD_COMMAND, input=remote.upload(self.scripts, str(self.prefix)), check=False)
            if out.returncode != 0:
                raise RuntimeError(f"the upload row failed: {out.stderr}")
            self.timings["scripts"] = time.monotonic() - t
            t = time.monotonic()
            out = self.step("external-gateway", "apply", self.external_gateway_params())
            if out.returncode != 0:
                raise RuntimeError(f"external-gateway apply failed: {out.stderr}")
            ids = json.loads(out.stdout.strip().splitlines()[-1])
            self.router = Router(ids["router_id"], ids["gateway_port_id"])
            self.timings["external-gateway"] = time.monotonic() - t
            self.wait_router()
            t = time.monotonic()
            with ThreadPoolExecutor(max_workers=1) as pool:  # vm3 on host 2 beside vm1 and vm2
                vm3 = pool.submit(self.compute.plug_vm)
                self._build_vms()
                self.timings["vm1, vm2"] = time.monotonic() - t
                vm3.result()
            self.timings["VMs"] = time.monotonic() - t
            self.vms.append(self.compute.vm)
            self.timings.update(self.compute.timings)
            self.floating_ip(FLOATING_IP, self.vms[1].port_id)
            self._listeners()
            self.nova.wait()
            self.timings.update(self.nova.timings)
            self.timings["lab built"] = time.monotonic() - t0
        except BaseException:
            self.teardown()
            raise
        return self

    def _build_vpc(self) -> None:
        vpc = self.vpc
        sh("ip", "link", "add", "inet0", "netns", vpc, "type", "veth", "peer", "name", "eth0", "netns", self.inet)
        sh("ip", "addr", "add", f"{VPC_OUTER_IP}/24", "dev", "inet0", ns=vpc)
        sh("ip", "link", "set", "inet0", "up", ns=vpc)
        sh("ip", "addr", "add", f"{INTERNET_IP}/24", "dev", "eth0", ns=self.inet)
        sh("ip", "link", "set", "eth0", "up", ns=self.inet)
        sh("ip", "route", "add", "default", "via", VPC_OUTER_IP, ns=self.inet)
        for br, gw, port, nic, mac, ns in (
            ("vbr-mgmt", MGMT_GW, "p-mgmt", "eth0", MGMT_MAC, self.host),
            ("vbr-prov", PROVIDER_GW, "p-prov", "eth1", PROVIDER_MAC, self.host),
            ("vbr-peer", PEER_GW, "p-peer", "eth0", PEER_MAC, self.peer),
        ):
            sh("ip", "link", "add", br, "type", "bridge", ns=vpc)
            sh("ip", "addr", "add", f"{gw}/24", "dev", br, ns=vpc)
            sh("ip", "link", "add", port, "netns", vpc, "type", "veth", "peer", "name", nic, "netns", ns)
            sh("ip", "link", "set", nic, "address", mac, ns=ns)
            sh("ip", "link", "set", port, "master", br, "up", ns=vpc)
            sh("ip", "link", "set", br, "up", ns=vpc)
            for dev, where in ((port, vpc), (br, vpc), (nic, ns)):
                sh("ip", "link", "set", dev, "mtu", str(PROVIDER_MTU), ns=where)
        sh("ip", "addr", "add", f"{PEER_IP}/24", "dev", "eth0", ns=self.peer)
        sh("ip", "link", "set", "eth0", "up", ns=self.peer)
        sh("ip", "route", "add", "default", "via", PEER_GW, ns=self.peer)
        # TCP through the userspace datapath fails with checksum offload on the VPC side: the
        # provider NIC is an AF_PACKET port of ovs-vswitchd, which gets partial checksums.
        sh("ethtool", "-K", "p-prov", "tx", "off", ns=vpc)
        sh("ethtool", "-K", "p-mgmt", "tx", "off", ns=vpc)  # the management NIC too (compute.underlay)
        self._vpc_rules()

    def _vpc_rules(self) -> None:
        """The VPC's checks and NAT for the ENIs' registrations and Elastic IPs (`registered`,
        `elastic`), and the security group; each table replaced whole, at once."""
        registered = ", ".join(f'"{p}" . {m} . {i}' for p, m, i in self.registered)
        dnat = ", ".join(f"{e} : {i}" for e, i in self.elastic.items())
        snat = ", ".join(f"{i} : {e}" for e, i in self.elastic.items())
        private = ", ".join(self.elastic.values())
        # ARP passes only if both the frame's and the ARP sender's (MAC, IP) are registered.
        arp_registered = (
            "iifname . ether saddr . arp saddr ip @registered iifname . arp saddr ether . arp saddr ip @registered"
        )
        ruleset = f"""
add table bridge ooa_vpc
delete table bridge ooa_vpc
add table ip ooa_eip
delete table ip ooa_eip
table bridge ooa_vpc {{
  set registered {{ type ifname . ether_addr . ipv4_addr; elements = {{ {registered} }} }}
  counter dropped_ipv4 {{ }}
  counter dropped_arp {{ }}
  counter dropped_other {{ }}
  chain ports {{
    type filter hook prerouting priority filter; policy accept;
    ether type ip iifname . ether saddr . ip saddr @registered accept
    ether type arp {arp_registered} accept
    ether type ip counter name dropped_ipv4 drop
    ether type arp counter name dropped_arp drop
    counter name dropped_other drop
  }}
}}
table ip ooa_eip {{
  chain pre {{ type nat hook prerouting priority dstnat; dnat to ip daddr map {{ {dnat} }}; }}
  chain post {{ type nat hook postrouting priority srcnat; oifname "inet0" snat to ip saddr map {{ {snat} }}; }}
  chain egress {{ type filter hook forward priority filter; oifname "inet0" ip saddr != {{ {private} }} drop; }}
}}
"""
        sh("nft", "-f", "-", ns=self.vpc, input=ruleset)
        self._build_security_group()

    def _build_security_group(self) -> None:
        """What the internet cannot reach: private addresses (it routes only the Elastic IPs to the
        VPC), and on the management ENI anything the program's security group does not open
        (config/ingress.py MANAGEMENT_PORTS, and ping): port 80 of DevStack's Apache stays inside."""
        eips = ", ".join(self.elastic)
        ports = ", ".join(str(p) for p in MANAGEMENT_PORTS)
        ruleset = f"""
add table ip ooa_sg
delete table ip ooa_sg
table ip ooa_sg {{
  chain internet {{
    type filter hook prerouting priority raw; policy accept;
    iifname "inet0" ip daddr != {{ {eips} }} drop
  }}
  chain management {{
    type filter hook forward priority filter; policy accept;
    iifname "inet0" ip daddr {MGMT_IP} ct state established,related accept
    iifname "inet0" ip daddr {MGMT_IP} tcp dport {{ {ports} }} accept
    iifname "inet0" ip daddr {MGMT_IP} icmp type echo-request accept
    iifname "inet0" ip daddr {MGMT_IP} drop
  }}
}}
"""
        sh("nft", "-f", "-", ns=self.vpc, input=ruleset)

    def _build_host(self) -> None:
        h = self.host
        sh("ip", "addr", "add", f"{MGMT_IP}/24", "dev", "eth0", ns=h)
        sh("ip", "link", "set", "eth0", "up", ns=h)
        sh("ip", "route", "add", "default", "via", MGMT_GW, ns=h)
        sh("ip", "link", "set", "eth1", "arp", "off", "up", ns=h)

    def _build_ovs(self) -> None:
        """ovsdb-server and ovs-vswitchd of the host (the container's, as its services; their run
        folder is the lab's, the host's /run/openvswitch); br-ex with the provider NIC, as DevStack
        makes it. br-int, br-tun and every flow are the OVS agent's."""
        db, sock = self.run / "conf.db", f"unix:{self.run}/db.sock"
        self.container.run("ovsdb-tool", "create", str(db), str(OVS_SCHEMA))
        self.container.unit(
            "ooa-ovsdb-server",
            "ovsdb-server",
            str(db),
            f"--remote=p{sock}",
            f"--pidfile={self.run}/ovsdb-server.pid",
            f"--unixctl={self.run}/ovsdb-server.ctl",
            f"--log-file={self.run}/ovsdb-server.log",
            "--detach",
            forking=True,
        )
        self.ovs("ovs-vsctl", "--no-wait", "init")
        self.ovs(
            "ovs-vsctl",
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            f"external_ids:system-id={neutron.HOSTNAME}",
            f"external_ids:hostname={neutron.HOSTNAME}",
        )
        self.container.unit(
            "ooa-ovs-vswitchd",
            "ovs-vswitchd",
            sock,
            f"--pidfile={self.run}/ovs-vswitchd.pid",
            f"--unixctl={self.run}/ovs-vswitchd.ctl",
            f"--log-file={self.run}/ovs-vswitchd.log",
            "--detach",
            forking=True,
            after="ooa-ovsdb-server.service",
        )
        self.ovs("ovs-vsctl", "--timeout=10", "add-br", "br-ex", "--", "set", "bridge", "br-ex", "datapath_type=netdev")
        self.ovs("ovs-vsctl", "--timeout=10", "add-port", "br-ex", "eth1")
        sh("ip", "link", "set", "br-ex", "up", ns=self.host)

    def _build_container(self) -> None:
        """The host's files (sshd's key and configuration, root's authorized key, the CLI and
        DevStack's files: Apache's configuration, clouds.yaml), then its boot."""
        root = self.container.root
        self.run.mkdir(parents=True)
        self.container.mount()
        for key in (root / "etc/ssh/ssh_host_ed25519_key", self.key):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts.write_text(f"{MGMT_EIP} {host_key[0]} {host_key[1]}\n")
        shutil.copy(f"{self.key}.pub", root / "root/.ssh/authorized_keys")
        # Debian's sshd_config includes sshd_config.d/*.conf first: the first value of a key wins.
        (root / "etc/ssh/sshd_config.d/ooa-lab.conf").write_text(
            "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nX11Forwarding no\n"
            "AllowTcpForwarding no\n"
        )
        # The host's openstack CLI (DevStack puts it in /usr/local/bin; the lab venv is bound at its
        # own path), Debian's Apache scripts, DevStack's files in /etc.
        bindir = root / "usr/local/bin"
        cli = bindir / "openstack"
        cli.write_text(f'#!/bin/sh\nexec "{neutron.LAB_VENV}/bin/openstack" "$@"\n')
        cli.chmod(0o755)
        self.keystone.install_scripts(bindir)
        self.keystone.write_files()
        self.nova.write_apache(self.etc)
        self.container.boot()

    def _wait_sshd(self) -> None:
        """The host's sshd (booted with the container) answers on the management IP."""
        for _ in range(100):
            if self.ssh("true", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd of the host does not answer: {self.ssh('true', check=False).stderr}")

    def router_ready(self) -> bool:
        lines = self.router_addrs().splitlines()
        qg = any(ln.split()[1] == self.router.qg and f" {PROVIDER_IP}/24 " in ln for ln in lines)
        qr = any(ln.split()[1].startswith("qr-") and f" {TENANT_GW}/24 " in ln for ln in lines)
        return qg and qr

    def wait_router(self, timeout: float = 60) -> float:
        """Until the L3 agent has the router's namespace with qg- (gateway IP) and qr- (tenant
        gateway), and the OVS agent has wired both ports (local VLAN tag, port ACTIVE)."""
        t = time.monotonic()
        wait_for(f"router {self.router.ns}", self.router_ready, timeout)

        def wired() -> bool:
            ports = self.neutron.find("ports", device_id=self.router.router_id)
            prefix = {"network:router_gateway": "qg-", "network:router_interface": "qr-"}
            devices = [prefix[p["device_owner"]] + p["id"][:11] for p in ports]
            tags = [self.ovs("ovs-vsctl", "get", "Port", d, "tag", check=False).stdout.strip() for d in devices]
            seen[:] = [(d, p["status"], tag) for d, p, tag in zip(devices, ports, tags, strict=True)]
            return len(ports) == 2 and all(p["status"] == "ACTIVE" for p in ports) and "[]" not in tags

        seen: list[tuple[str, str, str]] = []
        try:
            wait_for(f"router {self.router.ns} ports wired", wired, timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last seen (device, status, tag): {seen}") from None
        return time.monotonic() - t

    def _build_vms(self) -> None:
        """Tenant VMs as Neutron ports, plugged as Neutron's fullstack tests plug them, addressed by DHCP."""
        api = self.neutron
        net = api.find("networks", name="private")[0]
        subnet = api.find("subnets", name="private-subnet")[0]
        sg = api.find("security-groups", name="default", project_id=net["project_id"])[0]
        for proto in ("tcp", "udp", "icmp"):  # what the README tells users to open, and more
            api.api(
                "POST",
                "security-group-rules",
                {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress", "protocol": proto}},
                ok=(201, 409),
            )
        script = lease_script(self.work)
        for vm in self.vms:
            plug(api, vm, net["id"], subnet["id"], neutron.HOSTNAME, f"{self.tag}-{vm.name}", self.ovs, self.host)
        for vm in self.vms:
            wait_for(f"port {vm.name} ACTIVE", lambda v=vm: self.port_status(v.port_id) == "ACTIVE", 60)  # type: ignore[misc]
        t = time.monotonic()
        for vm in self.vms:
            lease(vm, script)
        self.timings["DHCP"] = time.monotonic() - t

    def br_ex_dpid(self) -> str:
        """br-ex's OpenFlow datapath ID: the OVS agent finds the bridge by it."""
        return self.ovs("ovs-vsctl", "get", "bridge", "br-ex", "datapath_id").stdout.strip().strip('"')

    def link_exists(self, dev: str) -> bool:
        return sh("ip", "link", "show", dev, ns=self.host, check=False).returncode == 0

    def port_status(self, port_id: str) -> str:
        return self.neutron.api("GET", f"ports/{port_id}")["port"]["status"]

    def floating_ip(self, address: str, port_id: str) -> dict:
        """A floating IP from the provider network's pool (the ENI's secondary IPs), on a VM's port;
        returns when the L3 agent has put it on the gateway device."""
        public = self.neutron.find("networks", name="public")[0]
        fip = self.neutron.api(
            "POST",
            "floatingips",
            {
                "floatingip": {
                    "floating_network_id": public["id"],
                    "floating_ip_address": address,
                    "port_id": port_id,
                }
            },
        )["floatingip"]
        wait_for(f"floating IP {address} on {self.router.qg}", lambda: f"{address}/32" in self.router_addrs(), 60)
        return fip

    def delete_floating_ip(self, fip: dict) -> None:
        self.neutron.api("DELETE", f"floatingips/{fip['id']}")
        address = fip["floating_ip_address"]
        wait_for(f"floating IP {address} gone", lambda: f"{address}/32" not in self.router_addrs(), 60)

    @property
    def rns(self) -> str:
        """The router's namespace, made by the host's L3 agent: its path through the host."""
        return self.container.netns_path(self.router.ns)

    def router_exists(self) -> bool:
        return self.router.ns in self.container.netns_list()

    def router_addrs(self) -> str:
        return sh("ip", "-4", "-o", "addr", "show", ns=self.rns, check=False).stdout

    def _listeners(self) -> None:
        """Tenant services and an internet service that tells each client its source address."""
        self.spawn(self.inet, "socat", "TCP-LISTEN:8000,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR")
        # The smoke step's probe (checkip.amazonaws.com): HTTP on the internet's address, answering
        # with the caller's address; the VPC's resolver (the provider subnet's DNS server here)
        # answers its name with that address.
        probe = self.work / "probe.sh"  # a file: socat's address syntax would eat the quotes and escapes
        probe.write_text(
            "#!/bin/sh\nread -r _\n"
            "printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\n' \"$SOCAT_PEERADDR\"\n"
        )
        probe.chmod(0o755)
        self.spawn(self.inet, "socat", "TCP-LISTEN:80,reuseaddr,fork", f"EXEC:{probe}")
        self.spawn(
            self.vpc,
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={PROVIDER_GW}",
            f"--address=/{PROBE_HOST}/{INTERNET_IP}",
            f"--local=/{PROBE_HOST}/",  # its AAAA: no data (not REFUSED, which fails a lookup of both)
            f"--pid-file={self.work}/vpc-dns.pid",
        )
        for vm in self.vms:
            for port in (22, 80):
                self.spawn(
                    vm.ns,
                    "socat",
                    f"TCP-LISTEN:{port},reuseaddr,fork",
                    f"SYSTEM:echo {vm.name}/tcp/{port}/$SOCAT_PEERADDR",
                )
            self.spawn(vm.ns, "socat", "UDP-RECVFROM:53,fork", f"SYSTEM:echo {vm.name}/udp/53/$SOCAT_PEERADDR")
            # bulk: 9000 sends BULK bytes, 9001 counts what it receives and says how many
            self.spawn(vm.ns, "socat", "TCP-LISTEN:9000,reuseaddr,fork", f"SYSTEM:head -c {BULK} /dev/zero")
            self.spawn(vm.ns, "socat", "TCP-LISTEN:9001,reuseaddr,fork", "SYSTEM:wc -c")
        time.sleep(0.2)

    # --- Neutron events ------------------------------------------------------------------------
    def restart_agents(self, *agents: str) -> float:
        """Stop the agents together (SIGTERM, SIGKILL after a grace period), start them together;
        the seconds until each has done its full resync (its own log says so)."""
        api = self.neutron
        t = time.monotonic()
        # neutron-openvswitch-agent 28.0.2 does not exit on SIGTERM (it blocks in oslo.messaging: the
        # reference's pitfalls): a grace period only delays its SIGKILL, so it gets none.
        grace = {"ovs-agent": 0.0}
        with ThreadPoolExecutor(max_workers=len(agents)) as pool:
            list(pool.map(lambda a: api.stop(a, grace=grace.get(a, 3)), agents))
        marks = {}
        for agent in agents:
            marks[agent] = (api.log / f"{agent}.log").stat().st_size
            api.start_agent(agent)

        def resynced(agent: str) -> bool:
            text = (api.log / f"{agent}.log").read_bytes()[marks[agent] :].decode(errors="replace")
            if agent == "l3-agent":
                return f"Finished a router update for {self.router.router_id}" in text
            if agent == "dhcp-agent":
                return "Synchronizing state complete" in text
            if agent == "metadata-agent":  # it serves the routers' proxies on its socket
                with socket.socket(socket.AF_UNIX) as sock:
                    return sock.connect_ex(str(api.state / "metadata_proxy")) == 0
            # Not "Agent out of sync with plugin!": that starts the resync. The first iteration
            # re-wires every port, then drops the flows of the old run ("cleanup stale flows"):
            # until it completes, the ports' security-group flows are being replaced and a lone
            # UDP datagram can be lost (a TCP SYN is retried).
            _, cleaned, rest = text.partition("- cleanup stale flows.")
            return bool(cleaned) and "completed. Processed ports statistics" in rest

        for agent in agents:
            wait_for(f"{api.agent_args(agent)[0]} to resync", lambda a=agent: resynced(a), 90)  # type: ignore[misc]
        return time.monotonic() - t

    def new_instance(self, provider_mac: str, provider_eip: str) -> None:
        """The host's disk launched as a new instance (an image of it): powered off, its provider ENI
        a new one (`provider_mac`; the VPC registers it with the same private IPs, which the stack's
        config gives), the provider IP's Elastic IP another address (`provider_eip`); booted again.
        The management ENI, its Elastic IP and the host key stay (the lab's SSH pins them)."""
        self.container.shutdown(reboot=False)
        self.swap_provider_eni(provider_mac, provider_eip)
        self.container.boot()

    def swap_provider_eni(self, mac: str, eip: str) -> None:
        """The provider NIC (eth1) with `mac`, registered in the VPC instead of its old MAC, and the
        provider IP's Elastic IP `eip`."""
        old = sh("cat", "/sys/class/net/eth1/address", ns=self.host).stdout.strip()
        sh("ip", "link", "set", "eth1", "address", mac, ns=self.host)
        self.registered = [(p, mac if m == old else m, i) for p, m, i in self.registered]
        self.elastic = {(eip if i == PROVIDER_IP else e): i for e, i in self.elastic.items()}
        self._vpc_rules()
        # the VPC's router learns the ENI's new MAC at once (its own mapping); a Linux router would
        # keep the old one for the provider IPs until its entries go stale and a probe fails
        sh("ip", "neigh", "flush", "dev", "vbr-prov", ns=self.vpc)

    def restart_guests(self, timeout: float = 120) -> float:
        """What Nova does for its guests when their host has booted again (resume_guests_state_on_
        host_boot): vm1's and vm2's ports plugged again (the host's Open vSwitch made their tap
        devices anew, in the host's namespace), each guest asking for its DHCP lease until the DHCP
        agent's dnsmasq, back too, answers, as a guest's DHCP client keeps asking. vm3 is on host 2,
        which did not reboot. Returns the seconds it took."""
        t = time.monotonic()
        script = lease_script(self.work)
        for vm in self.vms[:2]:
            # Open vSwitch makes its tap devices persistent: the old one stays in the guest's
            # namespace, detached, where the new one has to go (Nova's plug removes a stale one too)
            sh("ip", "link", "del", vm.dev, ns=vm.ns, check=False)
            attach(vm, self.ovs, self.host)
        for vm in self.vms[:2]:

            def leased(v: Vm = vm) -> bool:
                try:
                    lease(v, script, tries=3)
                except (RuntimeError, subprocess.TimeoutExpired):
                    return False
                return True

            wait_for(f"{vm.name}'s DHCP lease", leased, timeout, every=0.1)
        return time.monotonic() - t

    def restore_agents(self) -> float:
        """The agents' units installed and started again (after DevStack's clean.sh took them: a test
        of install-openstack's remove), until each has resynced; the seconds it took."""
        return self.restart_agents(*neutron.AGENTS)

    def set_router(self, **attrs: object) -> None:
        self.neutron.api("PUT", f"routers/{self.router.router_id}", {"router": attrs})

    def gateway_port(self) -> dict:
        (port,) = self.neutron.find("ports", device_id=self.router.router_id, device_owner="network:router_gateway")
        return port

    def reset_gateway(self) -> float:
        """change_gateway, then until the agents are done with it (rewired). Returns the seconds it took."""
        t = time.monotonic()
        self.rewired(*self.change_gateway())
        return time.monotonic() - t

    def change_gateway(self) -> tuple[str, list[dict]]:
        """Clear the router's external gateway and set it again as it was (same network, same fixed
        IP, same SNAT) through the API, as an operator would: Neutron makes a new gateway port, so
        the L3 agent unplugs the old qg- device and plugs a new one. Neutron refuses to clear a
        gateway that floating IPs use, so they are disassociated first (rewired associates them
        again, as an operator has to). Returns as soon as the API has the new gateway, with
        `self.router` naming the new port: the old device and the floating IPs, for rewired."""
        api = self.neutron
        info = api.api("GET", f"routers/{self.router.router_id}")["router"]["external_gateway_info"]
        old = self.router.qg
        fips = api.find("floatingips", router_id=self.router.router_id)
        for fip in fips:
            api.api("PUT", f"floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
        self.set_router(external_gateway_info={})
        fixed = [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]} for ip in info["external_fixed_ips"]]
        gateway = {"network_id": info["network_id"], "external_fixed_ips": fixed, "enable_snat": info["enable_snat"]}
        self.set_router(external_gateway_info=gateway)
        self.router.gw_port_id = self.gateway_port()["id"]
        return old, fips

    def rewired(self, old: str, fips: list[dict]) -> None:
        """After change_gateway: the floating IPs associated again (the API calls go in one go: the
        agents' work overlaps), then until the old device is gone, the router is wired again and the
        floating IPs are on the new device."""
        for fip in fips:
            self.neutron.api("PUT", f"floatingips/{fip['id']}", {"floatingip": {"port_id": fip["port_id"]}})

        def gone() -> bool:
            return sh("ip", "link", "show", old, ns=self.rns, check=False).returncode != 0

        wait_for(f"the L3 agent to unplug {old}", gone, 60)
        self.wait_router()
        for fip in fips:
            address = fip["floating_ip_address"]
            on_qg = lambda a=address: f"{a}/32" in self.router_addrs()  # noqa: E731
            wait_for(f"floating IP {address} on {self.router.qg}", on_qg, 60)

    # --- use ---------------------------------------------------------------------------------
    def ssh(self, command: str, input: str = "", check: bool = True, timeout: float = 120):
        """Run `command` as the SSH exec command on the host, from the internet, as pulumi-command does."""
        return sh(
            "ssh",
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=3",
            *self.mux,
            f"root@{MGMT_EIP}",
            command,
            ns=self.inet,
            input=input,
            check=check,
            timeout=timeout,
        )

    def step(
        self, step: str, action: str, params: dict | None = None, env: dict | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """The exact command text Pulumi sends for the step (with `env`), run over SSH with the params
        on stdin (the scripts it runs are the ones the lab's upload row installed when it was built)."""
        command = self.command(step, action, env)
        return self.ssh(command, input=remote.params(params or {}), check=False, timeout=timeout)

    def command(self, step: str, action: str, env: dict | None = None) -> str:
        """The step's command text, with the lab's prefix and state folders."""
        return remote.command(step, action, prefix=str(self.prefix), state=str(self.state), env=env)

    @functools.cached_property
    def scripts(self) -> list[str]:
        """What the upload row of the lab's two stacks (OpenStack already there; DevStack) installs,
        both in one: the lab runs steps of both chains."""
        names: list[str] = []
        for settings in (self.settings, self.devstack_settings):
            args = args_from_settings(settings, contract_for_render(settings, "<the lab's key>"), None)
            names += [n for n in openstack.host_scripts(args) if n not in names]
        return names

    def host_config(self, **host: str) -> dict:
        """The stack config of the lab host: an existing machine (`host: {kind: existing}`), with
        `host`'s keys instead of the lab's (a new instance's providerMac, providerPublicIp)."""
        return {
            f"{NAMESPACE}:host": json.dumps(
                {
                    "kind": "existing",
                    "address": MGMT_EIP,
                    "user": "root",
                    "managementIp": MGMT_IP,
                    "providerMac": PROVIDER_MAC,
                    "providerCidr": PROVIDER_CIDR,
                    "providerGateway": PROVIDER_GW,
                    "providerIp": PROVIDER_IP,
                    "providerPublicIp": PROVIDER_EIP,
                    "dnsServer": PROVIDER_GW,
                    "floatingIps": {FLOATING_IP: FLOATING_EIP, LATER_IP: LATER_EIP, COMPUTE_FIP: COMPUTE_EIP},
                }
                | host
            ),
            f"{NAMESPACE}:sshPrivateKey": "<the lab's key>",
            f"{NAMESPACE}:tenantCidr": TENANT_CIDR,
        }

    @functools.cached_property
    def settings(self) -> Settings:
        """`settings_for` the lab host as built."""
        return self.settings_for()

    def settings_for(self, **host: str) -> Settings:
        """The lab host as a stack config describes it: an existing machine that already runs
        OpenStack (`host: {kind: existing}`, `openstack: {install: existing}`), the mode whose chain
        (scripts, external-gateway, gateway-mac, port-forwards) the lab runs, with two forwards to vm1
        (the tests that run port-forwards on their own give it theirs)."""
        forwards = [
            {"protocol": "tcp", "publicPort": 522, "tenantIp": VM1_IP, "tenantPort": 22},
            {"protocol": "udp", "publicPort": 5353, "tenantIp": VM1_IP, "tenantPort": 53},
        ]
        return load_settings(
            {
                **self.host_config(**host),
                f"{NAMESPACE}:openstack": json.dumps(
                    {
                        "install": "existing",
                        "cloud": CLOUD,
                        "cloudsYaml": str(self.clouds_yaml),
                        "physicalNetwork": neutron.PHYSNET,
                        "externalBridge": "br-ex",
                    }
                ),
                f"{NAMESPACE}:portForwards": json.dumps(forwards),
            }
        )

    @functools.cached_property
    def stack(self) -> openstack.OpenStackArgs:
        """The program's OpenStack arguments for that stack (`Lab.settings`)."""
        return self.stack_for(self.settings)

    @staticmethod
    def stack_for(settings: Settings) -> openstack.OpenStackArgs:
        """The program's OpenStack arguments for `settings`."""
        return args_from_settings(settings, contract_for_render(settings, "<the lab's key>"), None)

    def row_params(
        self, row: Step, emitted: dict[str, object], stack: openstack.OpenStackArgs | None = None
    ) -> dict[str, str]:
        """A row's stdin for that stack (or `stack`) exactly as the program builds it, with what the
        earlier rows printed (`parse_emitted`)."""
        return _params(stack or self.stack, row, emitted)

    @functools.cached_property
    def devstack_settings(self) -> Settings:
        """The same machine as a stack whose steps install DevStack (`openstack.install: devstack`):
        the mode whose chain has the TLS steps (tls-front, public-endpoints)."""
        return load_settings({**self.host_config(), f"{NAMESPACE}:openstack": json.dumps({"install": "devstack"})})

    def chain_params(self, step: str, forwards: str = "", tls: TlsParts | None = None) -> dict:
        """A step's stdin exactly as the program builds it from the step table for that config,
        with the router ids external-gateway printed (`FORWARDS` as the test gives it). With `tls`
        (the stack's certificates, as components/tls.py `Tls` hands them to the program), and for
        prepare-host, the row comes from the DevStack stack's chain; the program's Outputs (base64
        of the PEMs, the public base URL) are resolved."""
        if tls is None and step == "prepare-host":  # the DevStack chain's first step: no TLS parameter
            tls = TlsParts(MGMT_EIP, "<CA>", "<certificate>", "<key>", encode=False)
        settings = self.settings if tls is None else self.devstack_settings
        args = args_from_settings(settings, contract_for_render(settings, "<the lab's key>"), None, tls)
        (row,) = [r for r in selected_steps(args) if r.name == step]
        emitted: dict[str, object] = {"router_id": self.router.router_id, "gateway_port_id": self.router.gw_port_id}
        values = _params(args, row, emitted)
        return {**values, "FORWARDS": forwards} if step == "port-forwards" else values

    def external_gateway_params(self, **override: str) -> dict:
        return {**self.chain_params("external-gateway"), **override}

    def gateway_mac_params(self, **override: str) -> dict:
        return {**self.chain_params("gateway-mac"), **override}

    def port_forwards_params(self, forwards: str, **override: str) -> dict:
        return {**self.chain_params("port-forwards", forwards), **override}

    def tcp(self, ns: str, ip: str, port: int, timeout: float = 3) -> str:
        """Connect, return what the server says ('' when nothing gets through)."""
        p = sh(
            "socat",
            "-T",
            str(timeout),
            "-u",
            f"TCP:{ip}:{port},connect-timeout={timeout}",
            "-",
            ns=ns,
            check=False,
            timeout=timeout + 5,
        )
        return p.stdout.strip()

    def udp(self, ns: str, ip: str, port: int, timeout: float = 2, tries: int = 3) -> str:
        """Send a datagram, return the answer ('' when none comes back to any of `tries` tries,
        each from a new source port, as a DNS client retries). One datagram now and then gets no
        answer under load, mostly after an agent restart (its conntrack entry in the router stays
        UNREPLIED); TCP hides such a loss by retransmitting. A forward that does not work answers
        no try, so the retries keep what the tests prove."""
        for _ in range(tries):
            p = sh(
                "socat",
                "-T",
                str(timeout),
                "-",
                f"UDP:{ip}:{port}",
                ns=ns,
                input="ping\n",
                check=False,
                timeout=timeout + 5,
            )
            if p.stdout.strip():
                return p.stdout.strip()
        return ""

    def download(self, ns: str, ip: str, port: int) -> int:
        """Bytes received from a bulk listener (BULK when the transfer completes)."""
        cmd = f"socat -T 20 -u TCP:{ip}:{port},connect-timeout=3 - | wc -c"
        return int(sh("sh", "-c", cmd, ns=ns, check=False, timeout=60).stdout.strip() or 0)

    def upload(self, ns: str, ip: str, port: int) -> int:
        """Bytes a bulk sink says it received of BULK sent."""
        cmd = f"head -c {BULK} /dev/zero | socat -T 20 -t 10 - TCP:{ip}:{port},connect-timeout=3"
        return int(sh("sh", "-c", cmd, ns=ns, check=False, timeout=60).stdout.strip() or 0)

    def ping(self, ns: str, ip: str, count: int = 1) -> bool:
        return sh("ping", "-n", "-q", "-c", str(count), "-W", "1", ip, ns=ns, check=False).returncode == 0

    def drops(self, *names: str) -> dict[str, int]:
        """The VPC's drop counters (`names`: some of them; none: all three)."""
        out = {}
        for name in names or ("dropped_ipv4", "dropped_arp", "dropped_other"):
            text = sh("nft", "list", "counter", "bridge", "ooa_vpc", name, ns=self.vpc).stdout
            out[name] = int(text.split("packets")[1].split()[0])
        return out

    def registered_drops(self) -> dict[str, int]:
        """The drops that would cut a tenant off: IPv4 and ARP frames whose (port, MAC, IP) is not
        registered. Not `dropped_other`: Neutron leaves IPv6 on in the router namespace, and a
        gateway device whose MAC gateway-mac changed may send an IPv6 frame (link-local, neighbour
        discovery, MLD) seconds later (seen 3.5 s after an apply), which the VPC drops as an ENI
        without IPv6 does on AWS: noise, not the path under test."""
        return self.drops("dropped_ipv4", "dropped_arp")

    def snapshot(self) -> dict:
        """Everything the two steps may change: qg- MAC, br-ex's pinned MAC, the router's iptables."""
        r = self.router
        mac = sh("ip", "-o", "link", "show", r.qg, ns=self.rns).stdout.split("link/ether ")[1].split()[0]
        hwaddr = self.ovs("ovs-vsctl", "--if-exists", "get", "bridge", "br-ex", "other-config:hwaddr").stdout.strip()
        dpid_pin = self.ovs("ovs-vsctl", "--if-exists", "get", "bridge", "br-ex", "other-config:datapath-id").stdout
        tables = {}
        for table in ("nat", "mangle", "filter"):
            lines = sh("iptables-save", "-t", table, ns=self.rns).stdout.splitlines()
            tables[table] = [ln.split(" [")[0] for ln in lines if not ln.startswith("#")]
        return {
            "qg_mac": mac,
            "br_ex_hwaddr": hwaddr,
            "br_ex_dpid_pin": dpid_pin.strip(),
            "br_ex_dpid": self.br_ex_dpid(),
            "iptables": tables,
            "state": {
                str(p.relative_to(self.state)): p.read_text() if p.is_file() else "dir"
                for p in sorted(self.state.rglob("*"))
                if not str(p.relative_to(self.state)).startswith("external-gateway")
            }
            if self.state.exists()
            else {},
        }

    # --- teardown ----------------------------------------------------------------------------
    def teardown(self) -> None:
        if self._down:
            return
        self._down = True
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        sh("ssh", *self.mux, "-O", "exit", f"root@{MGMT_EIP}", ns=self.inet, check=False)
        try:
            self.timings["nova, placement, glance CPU at teardown"] = self.nova.cpu()
            self.compute.stop()
            self.neutron.down()
        finally:
            self.container.stop()  # its sshd, Open vSwitch, Apache, OVS agent, timers
            self.timings["container stop"] = self.container.timings["container stop"]
            self.compute.stop_ovs()
            for ns in reversed(self.namespaces):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            self.namespaces.clear()
            if self._netns_dir:  # the rest of the process sees the machine's /run/netns again
                subprocess.run(["umount", "--lazy", str(NETNS_DIR)], capture_output=True)
                self._netns_dir = False
            if self.keep:
                print(f"lab files kept in {self.work} (OOA_LAB_KEEP)")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
