"""openstack-on-aws: an all-in-one OpenStack on EC2 with AWS's networking fixes applied.

Wiring only: load the settings, build the components, export the outputs (README: "Outputs").
"""

import pulumi
import pulumi_aws as aws

from components.host import Host, HostArgs, known_hosts_line
from components.network import Network, NetworkArgs
from components.openstack import OpenStack, args_from_settings
from config.settings import InstanceLimits, SettingsError, load_settings, stack_config


def instance_limits(instance_type: str) -> InstanceLimits:
    """Ask AWS what the instance type allows (runs in preview too, before any resource)."""
    info = aws.ec2.get_instance_type(instance_type=instance_type)
    return InstanceLimits(
        max_network_interfaces=info.maximum_network_interfaces,
        max_ipv4_per_interface=info.maximum_ipv4_addresses_per_interface,
        bare_metal=info.bare_metal,
    )


try:
    settings = load_settings(stack_config(), instance_limits)
except SettingsError as err:
    raise pulumi.RunError(str(err)) from None
for warning in settings.warnings():
    pulumi.log.warn(warning)

name = pulumi.get_stack()
network = Network(
    name,
    NetworkArgs(
        vpc_cidr=settings.vpc_cidr,
        availability_zone=settings.zone,
        management_subnet_cidr=settings.management_subnet_cidr,
        provider_subnet_cidr=settings.provider_subnet_cidr,
        allowed_cidrs=settings.allowed_cidrs,
        port_forwards=settings.port_forwards,
        floating_ips=settings.floating_ip_count > 0,
        floating_ip_ingress=settings.floating_ip_ingress,
    ),
)
host = Host(
    name,
    HostArgs(
        management_subnet_id=network.management_subnet.id,
        provider_subnet_id=network.provider_subnet.id,
        management_sg_id=network.management_sg.id,
        provider_sg_id=network.provider_sg.id,
        internet_gateway=network.internet_gateway,
        management_ip=str(settings.management_ip),
        provider_ip=str(settings.provider_ip),
        floating_ips=[str(ip) for ip in settings.floating_ips],
        instance_type=settings.instance_type,
        nested_virtualization=settings.nested_virtualization,
        root_volume_gib=settings.root_volume_gib,
        ami_id=settings.ami_id,
        architecture=settings.architecture,
        ssh_public_key=settings.ssh_public_key,
    ),
)

# ---- the remote steps: DevStack and the networking fix on the host -------------------------
openstack = OpenStack(
    name,
    args_from_settings(
        settings,
        instance=host.instance,
        instance_id=host.instance.id,
        provider_attachment=host.provider_attachment,
        management_eip=host.management_eip,
        host=host.management_eip.public_ip,
        ssh_user=host.ssh_user,
        private_key=(
            host.private_key.private_key_openssh
            if host.private_key is not None
            else pulumi.Output.secret(settings.ssh_private_key.get_secret_value())  # type: ignore[union-attr]
        ),
        provider_mac=host.provider_eni.mac_address,
        host_key=host.host_public_key,
        provider_public_ip=host.provider_eip.public_ip,
        admin_password=(
            pulumi.Output.secret(settings.admin_password.get_secret_value()) if settings.admin_password else None
        ),
    ),
)

# ---- stack outputs: a contract for StackReference users (README "Outputs") ----------------
pulumi.export("region", settings.region)
pulumi.export("availabilityZone", settings.zone)
pulumi.export("vpcId", network.vpc.id)
pulumi.export("managementSubnetId", network.management_subnet.id)
pulumi.export("providerSubnetId", network.provider_subnet.id)
pulumi.export("instanceId", host.instance.id)
pulumi.export("managementPrivateIp", str(settings.management_ip))
pulumi.export("managementPublicIp", host.management_eip.public_ip)
pulumi.export(
    "sshCommand",
    pulumi.Output.concat("ssh -i openstack-on-aws.key ", host.ssh_user, "@", host.management_eip.public_ip),
)
if host.private_key is not None:
    pulumi.export("sshPrivateKey", pulumi.Output.secret(host.private_key.private_key_openssh))
# The instance's SSH host key (generated, installed at boot, pinned by every remote step).
pulumi.export("sshHostKey", host.host_public_key)
pulumi.export(
    "sshKnownHosts",
    pulumi.Output.all(host.management_eip.public_ip, host.host_public_key).apply(lambda v: known_hosts_line(*v)),
)
pulumi.export("providerEniId", host.provider_eni.id)
pulumi.export("providerMac", host.provider_eni.mac_address)
pulumi.export("providerPrivateIp", str(settings.provider_ip))
pulumi.export("providerPublicIp", host.provider_eip.public_ip)
# What `make smoke` checks from outside: provider Elastic IP:publicPort for each forward.
pulumi.export(
    "portForwards",
    [{"protocol": f.protocol, "publicPort": f.public_port, "tenantIp": str(f.tenant_ip), "tenantPort": f.tenant_port}
     for f in settings.port_forwards],
)
pulumi.export(
    "floatingIps",
    pulumi.Output.all(**{ip: eip.public_ip for ip, eip in host.floating_eips.items()}),
)

# The service catalog lists the management private IP: from outside the VPC, Keystone and
# Horizon answer on the Elastic IP; the other APIs through an SSH tunnel (README "Using the cloud").
pulumi.export("keystoneAuthUrl", openstack.keystone_auth_url)
pulumi.export("horizonUrl", openstack.horizon_url)
pulumi.export("routerId", openstack.router_id)
pulumi.export("adminPassword", openstack.admin_password)
pulumi.export("cloudsYaml", openstack.clouds_yaml)
