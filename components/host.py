"""The EC2 side of the article: key pair, the two ENIs, the Elastic IPs and the instance; its power
state (parked or running), its market (on-demand or spot) and its image (docs/park-and-bake.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws
import pulumi_random as random
import pulumi_tls as tls

from components.contract import HostContract, SshConnection
from components.contract import known_hosts_line as known_hosts_line  # re-exported: its home was here
from config.host import InstanceLimits
from config.lifecycle import STEPS_RAN, STEPS_TEXT, fingerprint, park_problems
from onhost.chain import CHAIN, scripts_of
from onhost.compute_chain import DISCOVER, NODE_CHAIN
from onhost.remote import UPLOAD_COMMAND, command, upload

if TYPE_CHECKING:
    from components.network import Network
    from config.settings import Settings

CANONICAL = "099720109477"
# The only host key type generated and pinned: pulumi-command v1.2.1 offers the SSH server exactly the
# pinned key's type (HostKeyAlgorithms = [key.Type()]), and ED25519 is what every OpenSSH offers.
HOST_KEY_ALGORITHM = "ED25519"
UBUNTU_2404 = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
SSH_USER = "ubuntu"
# Marks each ENI's role; the policy pack finds the provider ENI by it.
ROLE_TAG = "openstack-on-aws:role"
# Where the sshCommand output expects the private key (`pulumi stack output sshPrivateKey > …`).
KEY_FILE = "openstack-on-aws.key"


def instance_limits(instance_type: str) -> InstanceLimits:
    """Ask AWS what the instance type allows (runs in preview too, before any resource; AWS host only)."""
    info = aws.ec2.get_instance_type(instance_type=instance_type)
    return InstanceLimits(
        max_network_interfaces=info.maximum_network_interfaces,
        max_ipv4_per_interface=info.maximum_ipv4_addresses_per_interface,
        bare_metal=info.bare_metal,
        vcpus=info.default_vcpus,
    )


# Spot (config key spot): a persistent request whose instance EC2 stops, not terminates, when it
# needs the capacity back; EC2 starts it again itself (persistent requires stop or hibernate).
SPOT_MARKET = aws.ec2.InstanceInstanceMarketOptionsArgs(
    market_type="spot",
    spot_options=aws.ec2.InstanceInstanceMarketOptionsSpotOptionsArgs(
        instance_interruption_behavior="stop", spot_instance_type="persistent"
    ),
)
# Creating an image copies every written block of the root volume into its snapshot.
BAKE_TIMEOUT = "90m"


@dataclass
class HostArgs:
    """Inputs of `Host`. IPs are fixed by the settings so that every step can be rendered ahead."""

    management_subnet_id: pulumi.Input[str]
    """Subnet of the management ENI."""
    provider_subnet_id: pulumi.Input[str]
    """Subnet of the provider ENI."""
    management_sg_id: pulumi.Input[str]
    """Security group of the management ENI."""
    provider_sg_id: pulumi.Input[str]
    """Security group of the provider ENI."""
    internet_gateway: pulumi.Resource
    """Elastic IPs are created after it (AWS needs the gateway attached first)."""
    management_ip: IPv4Address
    """Primary private IP of the management ENI (DevStack's HOST_IP)."""
    provider_ip: IPv4Address
    """Primary private IP of the provider ENI: the router gateway's fixed IP."""
    provider_cidr: IPv4Network
    """The provider subnet (the contract's provider CIDR)."""
    vpc_router_ip: IPv4Address
    """The VPC router of the provider subnet (the contract's provider gateway)."""
    vpc_resolver_ip: IPv4Address
    """The VPC's DNS resolver (the contract's DNS server for tenants)."""
    instance_type: str
    """EC2 instance type."""
    nested_virtualization: bool
    """Launch with `cpu_options.nested_virtualization = "enabled"` (c8i/m8i/r8i)."""
    root_volume_gib: int
    """Size of the encrypted gp3 root volume."""
    floating_ips: list[IPv4Address] = field(default_factory=list)
    """Secondary private IPs of the provider ENI, one Elastic IP each."""
    ami_id: str | None = None
    """A pinned AMI; None looks up the newest Ubuntu 24.04 (then ignored on later updates)."""
    architecture: str = "x86_64"
    """CPU architecture of the looked-up AMI: `x86_64` or `arm64`."""
    ssh_public_key: str | None = None
    """The user's OpenSSH public key; None generates an ED25519 key pair."""
    ssh_private_key: pulumi.Input[str] | None = None
    """Its private half (a secret), for the contract's SSH connection; needed with `ssh_public_key`."""
    management_cidr: IPv4Network | None = None
    """The management subnet (the contract's cluster CIDR: where compute nodes join from)."""

    parked: bool = False
    """Stop the instance (config key parked); False runs it."""
    spot: bool = False
    """A persistent spot instance that stops on interruption (config key spot)."""
    park_fingerprint: Mapping[str, str] = field(default_factory=dict)
    """The config's digests (config.lifecycle.fingerprint): frozen while parked."""


def host_args_from_settings(
    settings: Settings, network: Network, ssh_private_key: pulumi.Input[str] | None
) -> HostArgs:
    """HostArgs from the settings' host and address plan, on the network's subnets and security groups."""
    return HostArgs(
        management_subnet_id=network.management_subnet.id,
        provider_subnet_id=network.provider_subnet.id,
        management_sg_id=network.management_sg.id,
        provider_sg_id=network.provider_sg.id,
        internet_gateway=network.internet_gateway,
        management_ip=settings.management_ip,
        management_cidr=settings.management_subnet_cidr,
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
        ssh_private_key=ssh_private_key,
        parked=settings.parked,
        spot=settings.spot,
        park_fingerprint=fingerprint(settings),
    )


def host_key_cloud_config(private_key_openssh: str, public_key_openssh: str) -> str:
    """Cloud-init user data that installs this ED25519 host key pair and no other.

    cloud-init's `ssh` module writes `ssh_keys` to /etc/ssh/ssh_host_ed25519_key{,.pub} once per
    instance before sshd starts; `ssh_deletekeys` removes any key baked into the image, and with
    `ssh_keys` given it generates none (cc_ssh: `ssh_genkeytypes` applies only without `ssh_keys`;
    the schema refuses an empty list). So sshd presents exactly the key the remote steps pin.
    """
    private = private_key_openssh.strip("\n")
    public = public_key_openssh.strip()
    if not private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") or not public.startswith("ssh-ed25519 "):
        raise ValueError("the host key must be an ED25519 pair in OpenSSH format")
    body = "".join(f"    {line}\n" for line in private.splitlines())
    return (
        "#cloud-config\n"
        "# openstack-on-aws: the SSH host key that the remote steps pin (components/host.py)\n"
        "ssh_deletekeys: true\n"
        "ssh_keys:\n"
        "  ed25519_private: |\n"
        f"{body}"
        f"  ed25519_public: {public}\n"
    )


def generated_host_key(
    name: str, opts: pulumi.ResourceOptions
) -> tuple[tls.PrivateKey, pulumi.Output[str], pulumi.Output[str]]:
    """An instance's SSH host key pair `<name>-host-key` (pulumi-tls), its public half as the steps
    pin it (`ssh-ed25519 AAAA…`, no newline), and the secret user data that installs it.

    One helper for every instance the program creates (the controller, each compute node); the
    instance takes the user data with `user_data_replace_on_change` and `userData` secret.
    """
    key = tls.PrivateKey(f"{name}-host-key", algorithm=HOST_KEY_ALGORITHM, opts=opts)
    public: pulumi.Output[str] = key.public_key_openssh.apply(lambda k: k.strip())
    cloud_config: pulumi.Output[str] = pulumi.Output.all(key.private_key_openssh, key.public_key_openssh).apply(
        lambda keys: host_key_cloud_config(keys[0], keys[1])
    )
    user_data: pulumi.Output[str] = pulumi.Output.secret(cloud_config)  # type: ignore[arg-type]
    return key, public, user_data


def hardened_instance(
    resource_name: str,
    *,
    ami: pulumi.Input[str],
    instance_type: str,
    key_name: pulumi.Input[str],
    eni_id: pulumi.Input[str],
    root_volume_gib: int,
    nested_virtualization: bool,
    user_data: pulumi.Input[str],
    tag_name: str,
    pin_ami: bool,
    parent: pulumi.Resource,
    spot: bool = False,
) -> aws.ec2.Instance:
    """An instance as every machine of the stack is made (controller and compute nodes): on its
    primary ENI, IMDSv2 only, an encrypted gp3 root, nested virtualization where the type has it,
    the host key's user data kept secret; with `spot` a persistent spot instance (SPOT_MARKET)."""
    return aws.ec2.Instance(
        resource_name,
        ami=ami,
        instance_type=instance_type,
        key_name=key_name,
        primary_network_interface={"network_interface_id": eni_id},
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
        },
        root_block_device={
            "volume_type": "gp3",
            "volume_size": root_volume_gib,
            "encrypted": True,
            "delete_on_termination": True,
        },
        cpu_options={"nested_virtualization": "enabled"} if nested_virtualization else None,
        instance_market_options=SPOT_MARKET if spot else None,
        # Holds the host private key: secret in the state, as an input and as an output.
        user_data=user_data,
        # cloud-init installs the key once per instance: another key needs another instance.
        user_data_replace_on_change=True,
        tags={"Name": tag_name},
        opts=pulumi.ResourceOptions(
            parent=parent,
            additional_secret_outputs=["userData", "userDataBase64"],
            # A fixed-IP ENI: the new instance needs the ENI that the old one holds.
            delete_before_replace=True,
            # A newer Ubuntu image must not replace a running cloud; pin amiId to move on.
            ignore_changes=[] if pin_ami else ["ami"],
        ),
    )


def power_state(resource_name: str, instance: aws.ec2.Instance, parked: bool, parent: pulumi.Resource):
    """The instance's power state: `stopped` while parked, else `running` (a stopped one is started).

    Registered in both states: deleting it leaves the instance as it is (the provider's delete only
    forgets it). pulumi-aws names the resource `aws.ec2transitgateway.InstanceState`.
    """
    return aws.ec2transitgateway.InstanceState(
        resource_name,
        instance_id=instance.id,
        state="stopped" if parked else "running",
        opts=pulumi.ResourceOptions(parent=parent),
    )


def steps_digest() -> str:
    """A digest of every step's command text and of the upload row's stdin (scripts and lib.sh):
    another program version changes it."""
    names = scripts_of([*(s.name for s in CHAIN), *(s.name for s in NODE_CHAIN), DISCOVER.name])
    steps = [command(step, action) for step in names for action in ("apply", "remove")]
    texts = [UPLOAD_COMMAND, upload(names), *steps]
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def park_guard(
    name: str, parked: bool, fingerprint: Mapping[str, str], parent: pulumi.Resource
) -> pulumi.Output[str]:
    """The host's state for the outputs (`running` or `parked`), or, while parked, a refusal naming
    every key that changed since the last update that ran the steps (config.lifecycle.park_problems).

    The record `<name>-running-config` keeps the config's digests (secret: they digest the secrets
    too) of each update with parked false; while parked it is registered with its keepers ignored,
    so the engine hands back the recorded digests (no diff, known at preview) to compare with.
    """
    current = {**fingerprint, STEPS_TEXT: steps_digest(), STEPS_RAN: "no" if parked else "yes"}
    record = random.RandomId(
        f"{name}-running-config",
        byte_length=4,
        keepers=pulumi.Output.secret(current),
        opts=pulumi.ResourceOptions(
            parent=parent, ignore_changes=["keepers"] if parked else None, additional_secret_outputs=["keepers"]
        ),
    )
    if not parked:
        return pulumi.Output.from_input("running")

    def check(recorded: Mapping[str, str] | None) -> str:
        problems = park_problems(recorded or {}, current)
        if problems:
            raise pulumi.RunError("\n".join(problems))
        return "parked"

    return pulumi.Output.unsecret(record.keepers.apply(check))


# A remote step's inputs: while parked the engine keeps each as the state has it (parked_steps).
STEP_INPUTS = ["connection", "create", "update", "delete", "stdin", "triggers"]


def parked_steps(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
    """While parked, a remote step keeps its inputs as the state has them: what changes without a
    config change (a server certificate renewed in its last 30 days) waits for the resume, when the
    step runs after the machine started, instead of dialling a stopped one."""
    if args.type_ != "command:remote:Command":
        return None
    keep = pulumi.ResourceOptions(ignore_changes=STEP_INPUTS)
    return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(args.opts, keep))


def gated(address: pulumi.Input[str], gate: pulumi.Output[str] | None) -> pulumi.Input[str]:
    """`address`, once `gate` has resolved (a park refusal never lets a step register); None: as is."""
    if gate is None:
        return address
    return pulumi.Output.all(address, gate).apply(lambda v: v[0])


class Host(pulumi.ComponentResource):
    """The all-in-one OpenStack instance with a management ENI and a provider ENI."""

    def __init__(self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:host:Host", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.private_key: tls.PrivateKey | None = None
        public_key: pulumi.Input[str]
        if args.ssh_public_key is None:
            self.private_key = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=child)
            public_key = self.private_key.public_key_openssh
        else:
            public_key = args.ssh_public_key
        self.key_pair = aws.ec2.KeyPair(f"{name}-key", public_key=public_key, opts=child)

        # The instance's SSH host key, made here and handed over at boot, so that every remote
        # step talks to this instance only (pulumi-command ignores host keys unless one is pinned).
        self.host_key, self.host_public_key, user_data = generated_host_key(name, child)

        # Fixed IPs: an ENI replacement must delete the old one first to reuse them.
        eni_opts = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self.management_eni = aws.ec2.NetworkInterface(
            f"{name}-management-eni",
            subnet_id=args.management_subnet_id,
            private_ips=[str(args.management_ip)],
            security_groups=[args.management_sg_id],
            description="openstack-on-aws management: SSH, APIs, tunnels",
            tags={"Name": f"{name}-management", ROLE_TAG: "management"},
            opts=eni_opts,
        )
        self.provider_eni = aws.ec2.NetworkInterface(
            f"{name}-provider-eni",
            subnet_id=args.provider_subnet_id,
            private_ip_list_enabled=True,
            private_ip_lists=[str(ip) for ip in (args.provider_ip, *args.floating_ips)],
            security_groups=[args.provider_sg_id],
            # Frames from tenant VMs carry their own addresses through this ENI.
            source_dest_check=False,
            description="openstack-on-aws provider: br-ex, router gateway, floating IPs",
            tags={"Name": f"{name}-provider", ROLE_TAG: "provider"},
            opts=eni_opts,
        )

        ubuntu_arch = "amd64" if args.architecture == "x86_64" else "arm64"
        ami = args.ami_id or aws.ec2.get_ami_output(
            most_recent=True,
            owners=[CANONICAL],
            filters=[
                {"name": "name", "values": [UBUNTU_2404.format(arch=ubuntu_arch)]},
                {"name": "virtualization-type", "values": ["hvm"]},
            ],
        ).id
        self.instance = hardened_instance(
            f"{name}-instance",
            ami=ami,
            instance_type=args.instance_type,
            key_name=self.key_pair.key_name,
            eni_id=self.management_eni.id,
            root_volume_gib=args.root_volume_gib,
            nested_virtualization=args.nested_virtualization,
            user_data=user_data,
            tag_name=f"{name}-openstack",
            pin_ami=args.ami_id is not None,
            parent=self,
            spot=args.spot,
        )
        # Parked: stopped (and the config frozen: park_guard); else running. The steps wait for it.
        self.power = power_state(f"{name}-instance-state", self.instance, args.parked, self)
        self.state: pulumi.Output[str] = park_guard(name, args.parked, args.park_fingerprint, self)
        self.gate = self.state if args.parked else None
        # For the components that own the steps (OpenStack, ComputeSteps).
        self.step_options = pulumi.ResourceOptions(transformations=[parked_steps] if args.parked else None)
        self.provider_attachment = aws.ec2.NetworkInterfaceAttachment(
            f"{name}-provider-attachment",
            instance_id=self.instance.id,
            network_interface_id=self.provider_eni.id,
            device_index=1,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        def eip(suffix: str, eni: aws.ec2.NetworkInterface, private_ip: IPv4Address) -> aws.ec2.Eip:
            return aws.ec2.Eip(
                f"{name}-{suffix}-eip",
                domain="vpc",
                network_interface=eni.id,
                associate_with_private_ip=str(private_ip),
                tags={"Name": f"{name}-{suffix}"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[args.internet_gateway]),
            )

        self.management_eip = eip("management", self.management_eni, args.management_ip)
        self.provider_eip = eip("provider", self.provider_eni, args.provider_ip)
        self.floating_eips = {
            ip: eip(f"floating-{i}", self.provider_eni, ip) for i, ip in enumerate(args.floating_ips)
        }

        self.ssh_user = SSH_USER
        if self.private_key is not None:
            private_key: pulumi.Input[str] = self.private_key.private_key_openssh
        elif args.ssh_private_key is not None:
            private_key = args.ssh_private_key
        else:
            raise ValueError("HostArgs.ssh_private_key is required with ssh_public_key")
        self.contract = HostContract(
            ssh=SshConnection(
                host=gated(self.management_eip.public_ip, self.gate),
                user=SSH_USER,
                private_key=private_key,
                # The key cloud-init installs: every remote step talks to this instance only.
                host_key=self.host_public_key,
            ),
            machine_id=self.instance.id,
            management_ip=args.management_ip,
            provider_mac=self.provider_eni.mac_address,
            provider_ip=args.provider_ip,
            provider_cidr=args.provider_cidr,
            provider_gateway=args.vpc_router_ip,
            public_address=self.management_eip.public_ip,
            dns_server=args.vpc_resolver_ip,
            floating_ips={ip: eip.public_ip for ip, eip in self.floating_eips.items()},
            provider_public_ip=self.provider_eip.public_ip,
            cluster_cidr=args.management_cidr,
            # prepare-host needs the provider NIC attached and the address it dials.
            ready=[self.instance, self.power, self.provider_attachment, self.management_eip],
            # When the instance goes, there is nothing left to undo on it.
            deleted_with=self.instance,
        )
        self.register_outputs(
            {
                "instance_id": self.instance.id,
                "management_public_ip": self.management_eip.public_ip,
                "provider_eni_id": self.provider_eni.id,
                "provider_mac": self.provider_eni.mac_address,
                "provider_public_ip": self.provider_eip.public_ip,
                "host_public_key": self.host_public_key,
                "state": self.state,
            }
        )

    def bake_image(self, name: str, after: Sequence[pulumi.Resource]) -> aws.ec2.AmiFromInstance:
        """An image of the controller (config key bakeImage), taken after `after` (the smoke step):
        EC2 reboots the instance for a consistent disk (a stopped one, parked, is taken as is). A
        stack launched from it (`amiId`) skips stack.sh when its local.conf is this one's."""
        return aws.ec2.AmiFromInstance(
            f"{name}-baked-image",
            name=pulumi.Output.concat(f"openstack-on-aws-{name}-", self.instance.id),
            source_instance_id=self.instance.id,
            description=f"openstack-on-aws {name}: the controller with DevStack installed and proven",
            tags={"Name": f"{name}-baked", ROLE_TAG: "controller-image"},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.power, *after],
                custom_timeouts=pulumi.CustomTimeouts(create=BAKE_TIMEOUT),
            ),
        )
