"""The emulated AWS VPC lab: network namespaces, nftables, real Open vSwitch (userspace datapath), sshd.

    internet ns                vpc ns                                host ns (the EC2 instance)
    eth0 198.51.100.10 ── inet0 198.51.100.1                        sshd on eth0 10.0.1.10
                          1:1 NAT elastic IP <-> registered IP       eth0 ── p-mgmt (vbr-mgmt 10.0.1.1)
                          vbr-prov 10.0.2.1: bridge that drops       eth1 (no IP, arp off) in br-ex
                          frames whose (port, MAC, IP) is not        br-ex ══ phy-br-ex/int-br-ex ══ br-int
                          registered to an ENI ── p-prov ── eth1     br-int: qg- (VLAN 1), qr-/tap- (VLAN 2)

    qrouter-<id> ns: qg-<port id[:11]> 10.0.2.10/24 + floating 10.0.2.11/32, qr- 192.168.100.1/24,
                     the L3 agent's iptables (SNAT to the gateway IP, the floating IP's DNAT/SNAT)
    vm1 ns: 192.168.100.10 (no floating IP)      vm2 ns: 192.168.100.20 (floating IP 10.0.2.11)

The provider ENI has the primary IP 10.0.2.10 (elastic IP 203.0.113.20) and the secondary IP
10.0.2.11 (elastic IP 203.0.113.21); the management ENI 10.0.1.10 (elastic IP 203.0.113.10), which
is where the steps' SSH goes, from the internet namespace, as pulumi-command's would.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from onhost import remote

INTERNET_IP = "198.51.100.10"
VPC_OUTER_IP = "198.51.100.1"
MGMT_GW, MGMT_IP, MGMT_EIP, MGMT_MAC = "10.0.1.1", "10.0.1.10", "203.0.113.10", "0e:00:00:00:01:10"
PROVIDER_GW, PROVIDER_MAC = "10.0.2.1", "0e:00:00:00:02:10"
PROVIDER_IP, PROVIDER_EIP = "10.0.2.10", "203.0.113.20"
FLOATING_IP, FLOATING_EIP = "10.0.2.11", "203.0.113.21"
TENANT_GW, VM1_IP, VM2_IP = "192.168.100.1", "192.168.100.10", "192.168.100.20"
ELASTIC = {MGMT_EIP: MGMT_IP, PROVIDER_EIP: PROVIDER_IP, FLOATING_EIP: FLOATING_IP}
REGISTERED = [
    ("p-mgmt", MGMT_MAC, MGMT_IP),
    ("p-prov", PROVIDER_MAC, PROVIDER_IP),
    ("p-prov", PROVIDER_MAC, FLOATING_IP),
]
EXT_VLAN, TENANT_VLAN = 1, 2

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
    "sshd",
    "ssh",
    "ssh-keygen",
    "sudo",
    "flock",
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
    return problems


def sh(
    *args: str,
    ns: str | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    p = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env} if env else None
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def neutron_mac() -> str:
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in os.urandom(3))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class Router:
    """What Neutron's L3 agent builds for a router; re-created by `build_router`."""

    router_id: str
    gw_port_id: str
    qr_port_id: str
    # Neutron ports keep their MACs when the agent re-creates the router's devices.
    gw_mac: str = field(default_factory=lambda: neutron_mac())
    qr_mac: str = field(default_factory=lambda: neutron_mac())

    @property
    def ns(self) -> str:
        return f"qrouter-{self.router_id}"

    @property
    def qg(self) -> str:
        return f"qg-{self.gw_port_id[:11]}"

    @property
    def qr(self) -> str:
        return f"qr-{self.qr_port_id[:11]}"


class Lab:
    def __init__(self, workdir: Path):
        self.tag = f"ooa{os.getpid() % 100000}{os.urandom(2).hex()}"
        self.work = Path(workdir)
        self.run = self.work / "ovs"
        self.prefix = self.work / "prefix"
        self.state = self.work / "state"
        self.vpc, self.inet, self.host = (f"{self.tag}-{n}" for n in ("vpc", "inet", "host"))
        self.vm1, self.vm2 = f"{self.tag}-vm1", f"{self.tag}-vm2"
        self.router = Router(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.key = self.work / "id_ed25519"
        self._down = False

    # --- helpers -----------------------------------------------------------------------------
    def ovs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(*args, ns=self.host, check=check, env={"OVS_RUNDIR": str(self.run)})

    def netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        for key in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1", ns=name)
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
        atexit.register(self.teardown)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _interrupt)  # so finally/teardown run on `kill`
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            for ns in (self.vpc, self.inet, self.host, self.vm1, self.vm2):
                self.netns(ns)
            self._build_vpc()
            self._build_host()
            self._build_ovs()
            self._build_vms()
            self.build_router()
            self._build_sshd()
            self._listeners()
        except BaseException:
            self.teardown()
            raise
        return self

    def _build_vpc(self) -> None:
        vpc = self.vpc
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=vpc)
        sh("ip", "link", "add", "inet0", "netns", vpc, "type", "veth", "peer", "name", "eth0", "netns", self.inet)
        sh("ip", "addr", "add", f"{VPC_OUTER_IP}/24", "dev", "inet0", ns=vpc)
        sh("ip", "link", "set", "inet0", "up", ns=vpc)
        sh("ip", "addr", "add", f"{INTERNET_IP}/24", "dev", "eth0", ns=self.inet)
        sh("ip", "link", "set", "eth0", "up", ns=self.inet)
        sh("ip", "route", "add", "default", "via", VPC_OUTER_IP, ns=self.inet)
        for br, gw, port, nic, mac in (
            ("vbr-mgmt", MGMT_GW, "p-mgmt", "eth0", MGMT_MAC),
            ("vbr-prov", PROVIDER_GW, "p-prov", "eth1", PROVIDER_MAC),
        ):
            sh("ip", "link", "add", br, "type", "bridge", ns=vpc)
            sh("ip", "addr", "add", f"{gw}/24", "dev", br, ns=vpc)
            sh("ip", "link", "add", port, "netns", vpc, "type", "veth", "peer", "name", nic, "netns", self.host)
            sh("ip", "link", "set", nic, "address", mac, ns=self.host)
            sh("ip", "link", "set", port, "master", br, "up", ns=vpc)
            sh("ip", "link", "set", br, "up", ns=vpc)
        # TCP through the userspace datapath fails with checksum offload on the VPC side.
        sh("ethtool", "-K", "p-prov", "tx", "off", ns=vpc)
        registered = ", ".join(f'"{p}" . {m} . {i}' for p, m, i in REGISTERED)
        dnat = ", ".join(f"{e} : {i}" for e, i in ELASTIC.items())
        snat = ", ".join(f"{i} : {e}" for e, i in ELASTIC.items())
        private = ", ".join(ELASTIC.values())
        # ARP passes only if both the frame's and the ARP sender's (MAC, IP) are registered.
        arp_registered = (
            "iifname . ether saddr . arp saddr ip @registered iifname . arp saddr ether . arp saddr ip @registered"
        )
        ruleset = f"""
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
        sh("nft", "-f", "-", ns=vpc, input=ruleset)

    def _build_host(self) -> None:
        h = self.host
        sh("ip", "addr", "add", f"{MGMT_IP}/24", "dev", "eth0", ns=h)
        sh("ip", "link", "set", "eth0", "up", ns=h)
        sh("ip", "route", "add", "default", "via", MGMT_GW, ns=h)
        sh("ip", "link", "set", "eth1", "arp", "off", "up", ns=h)

    def _build_ovs(self) -> None:
        self.run.mkdir(parents=True)
        db, sock = self.run / "conf.db", f"unix:{self.run}/db.sock"
        sh("ovsdb-tool", "create", str(db), str(OVS_SCHEMA))
        self.ovs(
            "ovsdb-server",
            str(db),
            f"--remote=p{sock}",
            f"--pidfile={self.run}/ovsdb-server.pid",
            f"--unixctl={self.run}/ovsdb-server.ctl",
            f"--log-file={self.run}/ovsdb-server.log",
            "--detach",
        )
        self.ovs("ovs-vsctl", "--no-wait", "init")
        self.ovs(
            "ovs-vswitchd",
            sock,
            f"--pidfile={self.run}/ovs-vswitchd.pid",
            f"--unixctl={self.run}/ovs-vswitchd.ctl",
            f"--log-file={self.run}/ovs-vswitchd.log",
            "--detach",
        )
        for br in ("br-int", "br-ex"):
            self.ovs("ovs-vsctl", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "fail_mode=secure")
        self.ovs("ovs-vsctl", "add-port", "br-ex", "eth1")
        self.ovs(
            "ovs-vsctl",
            "add-port",
            "br-int",
            "int-br-ex",
            "--",
            "set",
            "interface",
            "int-br-ex",
            "type=patch",
            "options:peer=phy-br-ex",
            "--",
            "add-port",
            "br-ex",
            "phy-br-ex",
            "--",
            "set",
            "interface",
            "phy-br-ex",
            "type=patch",
            "options:peer=int-br-ex",
        )
        # The flows Neutron's OVS agent installs for a flat provider network on local VLAN EXT_VLAN.
        for br, flows in (
            (
                "br-ex",
                [
                    f"priority=4,in_port=phy-br-ex,dl_vlan={EXT_VLAN},actions=strip_vlan,NORMAL",
                    "priority=2,in_port=phy-br-ex,actions=drop",
                    "priority=0,actions=NORMAL",
                ],
            ),
            (
                "br-int",
                [
                    f"priority=3,in_port=int-br-ex,vlan_tci=0x0000/0x1fff,actions=mod_vlan_vid:{EXT_VLAN},NORMAL",
                    "priority=2,in_port=int-br-ex,actions=drop",
                    "priority=0,actions=NORMAL",
                ],
            ),
        ):
            for flow in flows:
                self.ovs("ovs-ofctl", "add-flow", br, flow)
        sh("ip", "link", "set", "br-ex", "up", ns=self.host)

    def _internal_port(self, name: str, vlan: int, ns: str, mac: str, port_id: str) -> None:
        self.ovs(
            "ovs-vsctl",
            "add-port",
            "br-int",
            name,
            f"tag={vlan}",
            "--",
            "set",
            "interface",
            name,
            "type=internal",
            f"external_ids:iface-id={port_id}",
            f"external_ids:attached-mac={mac}",
        )
        for _ in range(50):  # the userspace datapath creates the tap device asynchronously
            if sh("ip", "link", "show", name, ns=self.host, check=False).returncode == 0:
                break
            time.sleep(0.05)
        sh("ip", "link", "set", name, "netns", ns, ns=self.host)
        sh("ip", "link", "set", name, "address", mac, "up", ns=ns)

    def _build_vms(self) -> None:
        for ns, ip in ((self.vm1, VM1_IP), (self.vm2, VM2_IP)):
            tap = f"tap{uuid.uuid4().hex[:11]}"
            self._internal_port(tap, TENANT_VLAN, ns, neutron_mac(), str(uuid.uuid4()))
            sh("ip", "addr", "add", f"{ip}/24", "dev", tap, ns=ns)
            sh("ip", "route", "add", "default", "via", TENANT_GW, ns=ns)
            sh("ethtool", "-K", tap, "tx", "off", ns=ns)

    def build_router(self) -> None:
        """What the L3 agent does for the router: namespace, qg-/qr- ports, addresses, iptables."""
        r = self.router
        self.netns(r.ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=r.ns)
        self._internal_port(r.qg, EXT_VLAN, r.ns, r.gw_mac, r.gw_port_id)
        self._internal_port(r.qr, TENANT_VLAN, r.ns, r.qr_mac, r.qr_port_id)
        sh("ip", "addr", "add", f"{PROVIDER_IP}/24", "dev", r.qg, ns=r.ns)
        sh("ip", "addr", "add", f"{FLOATING_IP}/32", "dev", r.qg, ns=r.ns)
        sh("ip", "addr", "add", f"{TENANT_GW}/24", "dev", r.qr, ns=r.ns)
        sh("ip", "route", "add", "default", "via", PROVIDER_GW, ns=r.ns)
        for dev in (r.qg, r.qr):
            sh("ethtool", "-K", dev, "tx", "off", ns=r.ns)
        sh("iptables-restore", "-n", ns=r.ns, input=self.l3_rules())

    def l3_rules(self) -> str:
        """The mangle and nat rules the L3 agent's iptables_manager builds for this router."""
        r = self.router
        a = "neutron-l3-agent"
        rules = f"""*mangle
:{a}-PREROUTING - [0:0]
:{a}-mark - [0:0]
-A PREROUTING -j {a}-PREROUTING
-A {a}-PREROUTING -j {a}-mark
-A {a}-mark -i {r.qg} -j MARK --set-xmark 0x2/0xffff
COMMIT
*nat
:{a}-OUTPUT - [0:0]
:{a}-POSTROUTING - [0:0]
:{a}-PREROUTING - [0:0]
:{a}-float-snat - [0:0]
:{a}-snat - [0:0]
:neutron-postrouting-bottom - [0:0]
-A PREROUTING -j {a}-PREROUTING
-A OUTPUT -j {a}-OUTPUT
-A POSTROUTING -j {a}-POSTROUTING
-A POSTROUTING -j neutron-postrouting-bottom
-A {a}-OUTPUT -d {FLOATING_IP}/32 -j DNAT --to-destination {VM2_IP}
-A {a}-POSTROUTING ! -o {r.qg} -m conntrack ! --ctstate DNAT -j ACCEPT
-A {a}-PREROUTING -d {FLOATING_IP}/32 -j DNAT --to-destination {VM2_IP}
-A {a}-float-snat -s {VM2_IP}/32 -j SNAT --to-source {FLOATING_IP}
-A {a}-snat -j {a}-float-snat
-A {a}-snat -o {r.qg} -j SNAT --to-source {PROVIDER_IP}
-A {a}-snat -m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT --to-source {PROVIDER_IP}
-A neutron-postrouting-bottom -m comment --comment "Perform source NAT on outgoing traffic." -j {a}-snat
COMMIT
"""
        return rules

    def rewrite_l3_chains(self) -> None:
        """Re-write every neutron-* chain in one iptables-restore -n, a superset of what
        iptables_manager does on a resync (it sends only the diff of its own chains)."""
        own = [
            ln
            for ln in self.l3_rules().splitlines()
            if not ln.startswith(("-A PREROUTING", "-A OUTPUT", "-A POSTROUTING"))
        ]
        sh("iptables-restore", "-n", ns=self.router.ns, input="\n".join(own) + "\n")

    def delete_router(self) -> None:
        """As a reboot or an agent resync that re-creates the router does: ports and namespace go."""
        r = self.router
        self.ovs(
            "ovs-vsctl", "--if-exists", "del-port", "br-int", r.qg, "--", "--if-exists", "del-port", "br-int", r.qr
        )
        if r.ns in self.namespaces:
            sh("ip", "netns", "del", r.ns, check=False)
            self.namespaces.remove(r.ns)

    def _build_sshd(self) -> None:
        w = self.work
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(w / "ssh_host_ed25519_key"))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        shutil.copy(f"{self.key}.pub", w / "authorized_keys")
        (w / "sshd_config").write_text(
            f"ListenAddress {MGMT_IP}\nPort 22\nHostKey {w}/ssh_host_ed25519_key\nPidFile {w}/sshd.pid\n"
            f"AuthorizedKeysFile {w}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "X11Forwarding no\nAllowTcpForwarding no\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        # Give the SSH sessions this lab's Open vSwitch at the default path, as on a real host: a
        # bind mount private to sshd's mount namespace (ip netns exec makes one). The empty
        # /run/openvswitch it mounts over is left in place (the openvswitch package owns it).
        Path("/run/openvswitch").mkdir(mode=0o755, exist_ok=True)
        self.spawn(
            self.host,
            "sh",
            "-c",
            f'mount --bind "{self.run}" /run/openvswitch && exec /usr/sbin/sshd -D -e -f "{w}/sshd_config"',
        )
        for _ in range(100):
            if self.ssh("true", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("sshd in the host namespace does not answer")

    def _listeners(self) -> None:
        """Tenant services and an internet service that tells each client its source address."""
        self.spawn(self.inet, "socat", "TCP-LISTEN:8000,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR")
        for ns, name in ((self.vm1, "vm1"), (self.vm2, "vm2")):
            for port in (22, 80):
                self.spawn(
                    ns, "socat", f"TCP-LISTEN:{port},reuseaddr,fork", f"SYSTEM:echo {name}/tcp/{port}/$SOCAT_PEERADDR"
                )
            self.spawn(ns, "socat", "UDP-RECVFROM:53,fork", f"SYSTEM:echo {name}/udp/53/$SOCAT_PEERADDR")
        time.sleep(0.2)

    # --- use ---------------------------------------------------------------------------------
    def ssh(self, command: str, input: str = "", check: bool = True, timeout: float = 60):
        """Run `command` as the SSH exec command on the host, from the internet, as pulumi-command does."""
        return sh(
            "ssh",
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=3",
            f"root@{MGMT_EIP}",
            command,
            ns=self.inet,
            input=input,
            check=check,
            timeout=timeout,
        )

    def step(self, step: str, action: str, params: dict | None = None) -> subprocess.CompletedProcess:
        """The exact command text Pulumi sends for the step, run over SSH with the params on stdin."""
        text = remote.command(step, action, prefix=str(self.prefix), state=str(self.state))
        return self.ssh(text, input=remote.params(params or {}), check=False)

    def gateway_mac_params(self, **override: str) -> dict:
        return {
            "ROUTER_ID": self.router.router_id,
            "GATEWAY_PORT_ID": self.router.gw_port_id,
            "PROVIDER_MAC": PROVIDER_MAC,
            "EXTERNAL_BRIDGE": "br-ex",
            "VPC_GATEWAY_IP": PROVIDER_GW,
            **override,
        }

    def port_forwards_params(self, forwards: str, **override: str) -> dict:
        return {"ROUTER_ID": self.router.router_id, "GATEWAY_IP": PROVIDER_IP, "FORWARDS": forwards, **override}

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

    def udp(self, ns: str, ip: str, port: int, timeout: float = 2) -> str:
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
        return p.stdout.strip()

    def ping(self, ns: str, ip: str, count: int = 1) -> bool:
        return sh("ping", "-n", "-q", "-c", str(count), "-W", "1", ip, ns=ns, check=False).returncode == 0

    def drops(self) -> dict[str, int]:
        out = {}
        for name in ("dropped_ipv4", "dropped_arp", "dropped_other"):
            text = sh("nft", "list", "counter", "bridge", "ooa_vpc", name, ns=self.vpc).stdout
            out[name] = int(text.split("packets")[1].split()[0])
        return out

    def snapshot(self) -> dict:
        """Everything the two steps may change: qg- MAC, br-ex's pinned MAC, the router's iptables."""
        r = self.router
        mac = sh("cat", f"/sys/class/net/{r.qg}/address", ns=r.ns).stdout.strip()
        hwaddr = self.ovs("ovs-vsctl", "--if-exists", "get", "bridge", "br-ex", "other-config:hwaddr").stdout.strip()
        tables = {}
        for table in ("nat", "mangle", "filter"):
            lines = sh("iptables-save", "-t", table, ns=r.ns).stdout.splitlines()
            tables[table] = [ln.split(" [")[0] for ln in lines if not ln.startswith("#")]
        return {
            "qg_mac": mac,
            "br_ex_hwaddr": hwaddr,
            "iptables": tables,
            "state": {
                str(p.relative_to(self.state)): p.read_text() if p.is_file() else "dir"
                for p in sorted(self.state.rglob("*"))
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
        pids = []
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            pidfile = self.run / f"{daemon}.pid"
            if pidfile.exists():
                pids.append(int(pidfile.read_text().split()[0]))
        # Throw-away database and userspace datapath: nothing to shut down gracefully; the tap
        # devices of the internal ports go with ovs-vswitchd's file descriptors.
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.02)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()
