"""openstack-on-aws: an all-in-one OpenStack with the cloud's networking fixes applied.

Wiring only, top to bottom: the settings; the host (an EC2 instance in its own VPC, with compute
nodes if asked, or an existing machine) and its contract; the stack's TLS (DevStack); OpenStack
and the networking fix as remote steps on the host; the outputs (README: "Outputs", per mode).
Each component builds its arguments from the settings next to its own code (`*_from_settings`).
"""

import pulumi

from components.compute import ComputeNodes, ComputeSteps, nodes_args_from_settings, steps_args_from_settings
from components.contract import HostContract, known_hosts, ssh_command
from components.existing import ExistingMachine, ExistingMachineArgs
from components.host import KEY_FILE, Host, host_args_from_settings, instance_limits
from components.network import Network, network_args_from_settings
from components.openstack import OpenStack, args_from_settings
from components.tls import tls_for
from config.secrets import required_secret, secret
from config.settings import SettingsError, load_settings, stack_config

# ---- settings: every key checked (AWS asked about the instance types) before any resource ------
try:
    settings = load_settings(stack_config(), instance_limits)
except SettingsError as err:
    raise pulumi.RunError(str(err)) from None
for warning in settings.warnings():
    pulumi.log.warn(warning)
name = pulumi.get_stack()

# ---- the host and its contract: all that OpenStack knows of it ---------------------------------
contract: HostContract
compute: ComputeNodes | None = None
steps_opts: pulumi.ResourceOptions | None = None  # AWS host: parked steps keep their state
if settings.host is None:
    network = Network(name, network_args_from_settings(settings))
    host = Host(name, host_args_from_settings(settings, network, secret("sshPrivateKey")))
    contract = host.contract
    steps_opts = host.step_options
    if settings.compute_nodes.count > 0:
        compute = ComputeNodes(name, nodes_args_from_settings(settings, network, host))
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
else:
    machine = ExistingMachine(name, ExistingMachineArgs(settings.host, required_secret("sshPrivateKey")))
    contract = machine.contract

# ---- TLS (DevStack): the stack's CA and the certificate of the public address ------------------
tls = None if settings.openstack.existing else tls_for(name, contract, settings.public_dns_name)

# ---- OpenStack and the networking fix: one remote step each, on the host -----------------------
openstack = OpenStack(name, args_from_settings(settings, contract, secret("adminPassword"), tls), steps_opts)
if compute is not None and openstack.admin_password is not None:
    # The compute nodes' steps (DevStack as compute nodes), then the controller's discovery.
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
    pulumi.export("computeNodes", compute.stack_output())

if settings.host is None and settings.bake_image:
    # ---- an image of the controller once the smoke step passed (docs/park-and-bake.md) ---------
    pulumi.export("bakedImageId", host.bake_image(name, after=[openstack.steps["smoke"]]).id)

# ---- stack outputs: a contract for StackReference users (README "Outputs") ---------------------
ssh = contract.ssh
pulumi.export("managementPrivateIp", str(contract.management_ip))
pulumi.export("managementPublicIp", contract.public_address)
pulumi.export("sshCommand", ssh_command(ssh, KEY_FILE if settings.host is None else None))
pulumi.export("providerMac", contract.provider_mac)
pulumi.export("providerPrivateIp", str(contract.provider_ip))
if contract.provider_public_ip is not None:
    pulumi.export("providerPublicIp", contract.provider_public_ip)
pulumi.export("floatingIps", pulumi.Output.all(**{str(ip): pub for ip, pub in contract.floating_ips.items()}))
# The host's SSH key the steps pin (AWS: generated, installed by cloud-init; existing: host.hostKey).
if ssh.host_key is not None:
    pulumi.export("sshHostKey", ssh.host_key)
    pulumi.export("sshKnownHosts", known_hosts(ssh))
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
