"""A consumer of an openstack-on-aws stack: a network, a server and a floating IP in its cloud.

Everything it needs comes from the stack's outputs through `pulumi.StackReference` — the https
Keystone URL, the admin password (a secret), the CA that signed the cloud's certificate, the
router and the floating IPs — and reaches the cloud from outside over TLS, with no tunnel:

    pulumi config set stackName <org>/openstack-on-aws/<stack>
    pulumi up

The OpenStack provider is explicit (no OS_* environment, no clouds.yaml) and verifies the cloud's
certificate against the stack's CA: `cacert_file` takes a path *or the PEM itself*
(terraform-provider-openstack reads it with pathorcontents), so the CA travels in the state and
`pulumi destroy` works on any machine. `insecure` is false: a certificate not signed by that CA
is refused.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_openstack as openstack

config = pulumi.Config()
stack = pulumi.StackReference("openstack-on-aws", stack_name=config.require("stackName"))
image = config.get("image") or "cirros-0.6.3-x86_64-disk"
flavor = config.get("flavor") or "m1.tiny"
cidr = str(ipaddress.ip_network(config.get("cidr") or "192.168.200.0/24"))
chosen = config.get("floatingIp") or ""

auth_url = stack.require_output("keystoneAuthUrl")


def _https(url: str) -> str:
    if not url.startswith("https://"):
        raise ValueError(f"keystoneAuthUrl {url!r} is not https: the stack predates its TLS front")
    return url


def _pick(floating_ips: dict[str, str]) -> str:
    """The floating IP (a private address registered on the provider ENI) this project uses."""
    if not floating_ips:
        raise ValueError("the stack has no floatingIps (its floatingIpCount is 0)")
    if chosen:
        if chosen not in floating_ips:
            raise ValueError(f"floatingIp {chosen} is not one of the stack's floatingIps {sorted(floating_ips)}")
        return chosen
    return sorted(floating_ips, key=ipaddress.ip_address)[0]


floating_ips = stack.require_output("floatingIps")
floating_private = floating_ips.apply(_pick)

provider = openstack.Provider(
    "openstack-on-aws",
    auth_url=auth_url.apply(_https),
    user_name="admin",
    password=stack.require_output("adminPassword"),
    tenant_name="admin",
    user_domain_name="Default",
    project_domain_name="Default",
    region="RegionOne",
    endpoint_type="public",
    cacert_file=stack.require_output("caCertificate"),
    insecure=False,
)
on_cloud = pulumi.ResourceOptions(provider=provider)

network = openstack.networking.Network("consumer", admin_state_up=True, opts=on_cloud)
subnet = openstack.networking.Subnet("consumer", network_id=network.id, cidr=cidr, ip_version=4, opts=on_cloud)
# The stack's router (gateway on the provider ENI's registered IP and MAC) routes the new subnet.
router_interface = openstack.networking.RouterInterface(
    "consumer", router_id=stack.require_output("routerId"), subnet_id=subnet.id, opts=on_cloud
)
ssh = openstack.networking.SecGroup("consumer-ssh", description="SSH to the consumer server", opts=on_cloud)
openstack.networking.SecGroupRule(
    "consumer-ssh",
    security_group_id=ssh.id,
    direction="ingress",
    ethertype="IPv4",
    protocol="tcp",
    port_range_min=22,
    port_range_max=22,
    remote_ip_prefix="0.0.0.0/0",
    opts=on_cloud,
)
port = openstack.networking.Port(
    "consumer",
    network_id=network.id,
    fixed_ips=[openstack.networking.PortFixedIpArgs(subnet_id=subnet.id)],
    security_group_ids=[ssh.id],
    opts=on_cloud,
)
server = openstack.compute.Instance(
    "consumer",
    image_name=image,
    flavor_name=flavor,
    networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
    opts=on_cloud,
)
# Only the stack's floatingIps work (the VPC forwards registered addresses only): ask for that one.
floating_ip = openstack.networking.FloatingIp("consumer", pool="public", address=floating_private, opts=on_cloud)
openstack.networking.FloatingIpAssociate(
    "consumer",
    floating_ip=floating_ip.address,
    port_id=port.id,
    opts=pulumi.ResourceOptions(provider=provider, depends_on=[router_interface]),
)

pulumi.export("serverId", server.id)
pulumi.export("floatingIp", floating_ip.address)
pulumi.export("publicIp", pulumi.Output.all(floating_ips, floating_private).apply(lambda a: a[0][a[1]]))
pulumi.export("sshCommand", pulumi.Output.concat("ssh cirros@", pulumi.Output.all(floating_ips, floating_private)
                                                 .apply(lambda a: a[0][a[1]])))
