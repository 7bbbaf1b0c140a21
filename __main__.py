"""openstack-on-aws: an all-in-one OpenStack with the cloud's networking fixes applied.

Wiring only: load the settings, build the host (an EC2 instance, or an existing machine), hand its
contract to OpenStack, export the outputs (README: "Outputs", per mode).
"""

import pulumi
import pulumi_aws as aws

from components.compute import ComputeNodes, ComputeNodesArgs, ComputeSteps, steps_args_from_settings
from components.contract import HostContract, known_hosts_line, ssh_command
from components.existing import ExistingMachine, ExistingMachineArgs
from components.host import Host, HostArgs
from components.network import Network, NetworkArgs
from components.openstack import OpenStack, TlsParts, args_from_settings, tls_names
from components.tls import Tls, TlsArgs
from config.lifecycle import fingerprint
from config.secrets import required_secret, secret
from config.settings import InstanceLimits, SettingsError, load_settings, stack_config


def instance_limits(instance_type: str) -> InstanceLimits:
    """Ask AWS what the instance type allows (runs in preview too, before any resource; AWS host only)."""
    info = aws.ec2.get_instance_type(instance_type=instance_type)
    return InstanceLimits(
        max_network_interfaces=info.maximum_network_interfaces,
        max_ipv4_per_interface=info.maximum_ipv4_addresses_per_interface,
        bare_metal=info.bare_metal,
        vcpus=info.default_vcpus,
    )


try:
    settings = load_settings(stack_config(), instance_limits)
except SettingsError as err:
    raise pulumi.RunError(str(err)) from None
for warning in settings.warnings():
    pulumi.log.warn(warning)

name = pulumi.get_stack()
contract: HostContract
compute: ComputeNodes | None = None  # AWS host only
steps_opts: pulumi.ResourceOptions | None = None  # AWS host: parked steps keep their state
if settings.host is None:
    # ---- the EC2 host: VPC, ENIs, Elastic IPs, instance ---------------------------------------
    network = Network(
        name,
        NetworkArgs(
            vpc_cidr=settings.vpc_cidr,
            availability_zone=settings.zone,
            management_subnet_cidr=settings.management_subnet_cidr,
            provider_subnet_cidr=settings.provider_subnet_cidr,
            allowed_cidrs=settings.allowed_cidrs or [],
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
            management_ip=settings.management_ip,
            provider_ip=settings.provider_ip,
            provider_cidr=settings.provider_subnet_cidr,
            vpc_router_ip=settings.vpc_router_ip,
            vpc_resolver_ip=settings.vpc_resolver_ip,
            floating_ips=settings.floating_ips,
            instance_type=settings.instance_type,
            nested_virtualization=settings.nested_virtualization,
            root_volume_gib=settings.root_volume_gib,
            ami_id=settings.ami_id,
            architecture=settings.architecture,
            ssh_public_key=settings.ssh_public_key,
            ssh_private_key=secret("sshPrivateKey"),
            parked=settings.parked,
            spot=settings.spot,
            park_fingerprint=fingerprint(settings),
        ),
    )
    contract = host.contract
    steps_opts = host.step_options
    pulumi.export("region", settings.region)
    pulumi.export("availabilityZone", settings.zone)
    pulumi.export("vpcId", network.vpc.id)
    pulumi.export("managementSubnetId", network.management_subnet.id)
    pulumi.export("providerSubnetId", network.provider_subnet.id)
    pulumi.export("instanceId", host.instance.id)
    pulumi.export("hostState", host.state)
    if host.private_key is not None:
        pulumi.export("sshPrivateKey", pulumi.Output.secret(host.private_key.private_key_openssh))
    pulumi.export("providerEniId", host.provider_eni.id)
    key_file: str | None = "openstack-on-aws.key"
    if settings.compute_nodes.count > 0:
        # ---- compute nodes: instances on the management subnet that join the controller ------
        nodes = settings.compute_nodes
        compute = ComputeNodes(
            name,
            ComputeNodesArgs(
                management_subnet_id=network.management_subnet.id,
                management_sg_id=network.management_sg.id,
                internet_gateway=network.internet_gateway,
                node_ips=settings.compute_ips,
                hostnames=[nodes.hostname(i) for i in range(nodes.count)],
                instance_type=nodes.instance_type,
                nested_virtualization=nodes.nested_virtualization,
                root_volume_gib=nodes.root_volume_gib,
                ami=host.instance.ami,
                pin_ami=settings.ami_id is not None,
                key_name=host.key_pair.key_name,
                private_key=host.contract.ssh.private_key,
                parked=settings.parked,
                spot=settings.spot,
                gate=host.gate,
            ),
        )
else:
    # ---- an existing machine: no AWS resource, no AWS call ----------------------------------
    machine = ExistingMachine(
        name, ExistingMachineArgs(host=settings.host, private_key=required_secret("sshPrivateKey"))
    )
    contract = machine.contract
    key_file = None

# ---- TLS (DevStack): the stack's CA and the certificate of the public address --------------
tls_parts: TlsParts | None = None
if not settings.openstack.existing:
    tls_ip, tls_dns = tls_names(contract, settings.public_dns_name)
    tls = Tls(name, TlsArgs(public_ip=tls_ip, dns_name=tls_dns))
    tls_parts = TlsParts(
        public_ip=tls_ip,
        ca_certificate=tls.ca_certificate,
        server_certificate=tls.server_certificate,
        server_private_key=tls.server_private_key,
        dns_name=tls_dns,
    )

# ---- the remote steps: OpenStack and the networking fix on the host ------------------------
openstack = OpenStack(name, args_from_settings(settings, contract, secret("adminPassword"), tls_parts), steps_opts)

if compute is not None and openstack.admin_password is not None:
    # ---- the compute nodes' steps: DevStack as compute nodes, then the controller's discovery
    ComputeSteps(
        name,
        steps_args_from_settings(
            settings,
            contract,
            compute.contracts,
            openstack.admin_password,
            controller_installed=openstack.steps["install-openstack"],
            cluster_rule=compute.cluster_rule,
            controller_catalog=openstack.steps.get("public-endpoints"),
        ),
        steps_opts,
    )
    pulumi.export(
        "computeNodes",
        [
            {
                "hostname": n.contract.hostname,
                "instanceId": n.instance.id,
                "managementPrivateIp": str(n.contract.management_ip),
                "publicIp": n.eip.public_ip,
                "sshHostKey": n.host_public_key,
            }
            for n in compute.nodes
        ],
    )

if settings.host is None and settings.bake_image:
    # ---- an image of the controller once the smoke step passed (docs/park-and-bake.md) ---------
    pulumi.export("bakedImageId", host.bake_image(name, after=[openstack.steps["smoke"]]).id)

# ---- stack outputs: a contract for StackReference users (README "Outputs") ----------------
pulumi.export("managementPrivateIp", str(contract.management_ip))
pulumi.export("managementPublicIp", contract.public_address)
pulumi.export("sshCommand", ssh_command(contract.ssh, key_file))
pulumi.export("providerMac", contract.provider_mac)
pulumi.export("providerPrivateIp", str(contract.provider_ip))
if contract.provider_public_ip is not None:
    pulumi.export("providerPublicIp", contract.provider_public_ip)
pulumi.export("floatingIps", pulumi.Output.all(**{str(ip): pub for ip, pub in contract.floating_ips.items()}))
# The host's SSH key the steps pin (AWS: generated, installed by cloud-init; existing: host.hostKey).
if contract.ssh.host_key is not None:
    ssh = contract.ssh
    pulumi.export("sshHostKey", ssh.host_key)
    pulumi.export(
        "sshKnownHosts",
        pulumi.Output.all(ssh.host, ssh.host_key).apply(lambda v: known_hosts_line(v[0], v[1], ssh.port)),
    )
# What `make smoke` checks from outside: the provider's public IP:publicPort for each forward.
pulumi.export(
    "portForwards",
    [
        {"protocol": f.protocol, "publicPort": f.public_port, "tenantIp": str(f.tenant_ip), "tenantPort": f.tenant_port}
        for f in settings.port_forwards
    ],
)

# With DevStack, Horizon and every API answer on https://<public address>/ and the catalog's public
# endpoints point there: a consumer needs the CA and clouds.yaml, no tunnel (README "Using the cloud").
if openstack.admin_password is not None:
    pulumi.export("keystoneAuthUrl", openstack.keystone_auth_url)
    pulumi.export("horizonUrl", openstack.horizon_url)
    pulumi.export("adminPassword", openstack.admin_password)
    pulumi.export("cloudsYaml", openstack.clouds_yaml)
    pulumi.export("caCertificate", openstack.ca_certificate)
pulumi.export("routerId", openstack.router_id)
