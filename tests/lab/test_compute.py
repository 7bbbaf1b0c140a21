"""The compute host (tests/lab/compute.py): its own Open vSwitch and OVS agent joined to the
controller's Neutron, a VXLAN tunnel over the management network, and a tenant VM on it that
reaches the internet through the controller's router and is reached through a floating IP."""

from __future__ import annotations

import pytest

from tests.lab import compute
from tests.lab.net import (
    BULK,
    COMPUTE_EIP,
    COMPUTE_FIP,
    COMPUTE_MGMT_IP,
    COMPUTE_MGMT_MAC,
    INTERNET_IP,
    MGMT_IP,
    MGMT_MAC,
    PROVIDER_EIP,
    VM3_IP,
    Lab,
    sh,
)
from tests.lab.test_steps import ok

pytestmark = pytest.mark.lab


def vm3(lab: Lab):
    return lab.compute.vm


def test_the_compute_host_has_its_own_agent_joined_to_the_controller_over_the_management_network(lab):
    hosts = {a["host"]: a for a in lab.neutron.find("agents", binary="neutron-openvswitch-agent")}
    assert set(hosts) == {"lab-host", compute.HOSTNAME}
    assert all(a["alive"] for a in hosts.values())
    # each agent's VXLAN endpoint is its management IP (the controller's was 127.0.0.1 before)
    assert hosts[compute.HOSTNAME]["configurations"]["tunneling_ip"] == COMPUTE_MGMT_IP
    assert hosts["lab-host"]["configurations"]["tunneling_ip"] == MGMT_IP
    assert hosts[compute.HOSTNAME]["configurations"]["tunnel_types"] == ["vxlan"]
    assert hosts[compute.HOSTNAME]["configurations"]["bridge_mappings"] == {}  # no provider network there
    # its own Open vSwitch: other daemons, other bridges than the controller's
    system_id = lab.compute.ovs("ovs-vsctl", "get", "Open_vSwitch", ".", "external_ids:system-id").stdout
    assert system_id.strip().strip('"') == compute.HOSTNAME
    assert set(lab.compute.ovs("ovs-vsctl", "list-br").stdout.split()) == {"br-int", "br-tun", compute.UNDERLAY}
    # the agent's RPC goes to the controller's RabbitMQ over the management network
    conns = sh("ss", "-Htn", "state", "established", f"dst {MGMT_IP}:17672", ns=lab.compute.ns).stdout
    assert f"{COMPUTE_MGMT_IP}:" in conns


def test_vm3_is_a_port_bound_to_the_compute_host_on_the_vxlan_tenant_network(lab):
    port = lab.neutron.api("GET", f"ports/{vm3(lab).port_id}")["port"]
    assert (port["binding:host_id"], port["binding:vif_type"], port["status"]) == (compute.HOSTNAME, "ovs", "ACTIVE")
    net = lab.neutron.api("GET", f"networks/{port['network_id']}")["network"]
    assert net["provider:network_type"] == "vxlan"
    assert net["mtu"] == compute.TENANT_MTU  # fits the 9001 management link with VXLAN's 50 bytes
    # plugged into host 2's br-int (not the controller's), addressed by the controller's dnsmasq
    dhcp = lab.neutron.api("GET", f"networks/{net['id']}/dhcp-agents")["agents"]
    assert [a["host"] for a in dhcp] == ["lab-host"]
    assert vm3(lab).dev not in lab.ovs("ovs-vsctl", "list-ports", "br-int").stdout.split()
    assert lab.compute.ovs("ovs-vsctl", "iface-to-br", vm3(lab).dev).stdout.strip() == "br-int"
    got = sh("ip", "-4", "-o", "addr", "show", "dev", vm3(lab).dev, ns=lab.vm3).stdout
    assert f"{VM3_IP}/24" in got
    # the management link is an ENA ENI's on both hosts: the IP on br-mgmt with the ENI's MAC
    for ns, mac in ((lab.host, MGMT_MAC), (lab.compute.ns, COMPUTE_MGMT_MAC)):
        link = sh("ip", "-o", "link", "show", compute.UNDERLAY, ns=ns).stdout
        assert f"mtu {compute.MGMT_MTU} " in link and f"link/ether {mac} " in link, link


def test_a_vxlan_tunnel_joins_the_two_hosts_over_the_management_network(lab):
    c = lab.compute
    there, here = c.vxlan_options("host2"), c.vxlan_options("host")
    assert (there["local_ip"], there["remote_ip"]) == (COMPUTE_MGMT_IP, MGMT_IP)
    assert (here["local_ip"], here["remote_ip"]) == (MGMT_IP, COMPUTE_MGMT_IP)
    # Open vSwitch routes and resolves the outer packets itself, through br-mgmt
    route = c.appctl("ovs/route/lookup", MGMT_IP)
    assert f"dev {compute.UNDERLAY}" in route and f"src {COMPUTE_MGMT_IP}" in route, route
    assert lab.ping(lab.vm3, "192.168.100.1")  # the router's qr- on the controller, through the tunnel
    arp = c.appctl("tnl/arp/show")
    assert any(MGMT_IP in ln and MGMT_MAC in ln and compute.UNDERLAY in ln for ln in arp.splitlines()), arp


def test_vm3_reaches_the_internet_through_the_controllers_router_with_the_elastic_ip(clean):
    lab = clean
    assert lab.tcp(lab.vm3, INTERNET_IP, 8000, timeout=1) == ""  # cut off by the VPC before the fix
    ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
    before = lab.compute.vxlan_counted()
    drops = lab.registered_drops()
    assert lab.tcp(lab.vm3, INTERNET_IP, 8000) == PROVIDER_EIP
    assert lab.registered_drops() == drops
    after = lab.compute.vxlan_counted()
    assert all(after[k] > before[k] for k in after), (before, after)  # both ways through the tunnel


def test_vm3_is_reached_through_a_floating_ip_of_its_own_and_the_tunnel_carries_it(clean):
    lab = clean
    ok(lab.step("gateway-mac", "apply", lab.gateway_mac_params()))
    fip = lab.floating_ip(COMPUTE_FIP, vm3(lab).port_id)  # the ENI's fourth secondary IP, with its own Elastic IP
    try:
        assert lab.tcp(lab.inet, COMPUTE_EIP, 80) == f"vm3/tcp/80/{INTERNET_IP}"  # in, unmasqueraded
        assert lab.tcp(lab.vm3, INTERNET_IP, 8000) == COMPUTE_EIP  # out through its own Elastic IP
        # 4 MiB each way; the VPC's management bridge counts them as VXLAN packets between the hosts
        before = lab.compute.vxlan_counted()
        assert lab.download(lab.inet, COMPUTE_EIP, 9000) == BULK  # from the compute host's VM
        middle = lab.compute.vxlan_counted()
        assert lab.upload(lab.inet, COMPUTE_EIP, 9001) == BULK  # to it
        after = lab.compute.vxlan_counted()
        assert middle["to_controller"] - before["to_controller"] > BULK
        assert after["to_compute"] - middle["to_compute"] > BULK
    finally:
        lab.delete_floating_ip(fip)
