"""Compute nodes that join the controller (docs/compute-nodes.md).

`ComputeNodes` (AWS): per node an instance with one management ENI at a fixed IP after the
controller's, IMDSv2, an encrypted root volume, the controller's key pair and image, and an Elastic
IP (its way to the Internet for the install and the steps' way in over SSH), and its own SSH host
key (generated, installed by cloud-init, pinned by its steps, as the controller's); plus the one
security-group rule that lets the cluster's members talk to each other: all traffic from the
management security group to itself. Each node hands a `NodeContract` (components/contract.py).

`ComputeSteps`: per node the rows of onhost/compute_chain.py as dependent remote commands
(`scripts`, the node's upload row, and `prepare-compute` and `install-compute` on the node,
`compute-record` on the controller), then once `discover-hosts` on the controller. It consumes the
contracts only.

Nodes are named by index (`<stack>-compute-<i>`, host name `compute-<i>`), so a count change
registers or deletes only the nodes that come or go, and replaces `discover-hosts`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws
from pulumi_command import remote

from components.contract import HostContract, NodeContract, SshConnection
from components.host import ROLE_TAG, SSH_USER, gated, generated_host_key, hardened_instance, power_state
from components.openstack import connection_args, local_conf_for, row_stdin, step_stdin
from onhost import localconf
from onhost.compute_chain import CONTROLLER, DISCOVER, NODE_CHAIN, NODE_SCRIPTS, NodeInputs, discover_params
from onhost.remote import UPLOAD, texts

if TYPE_CHECKING:
    from components.host import Host
    from components.network import Network
    from config.settings import Settings

CLUSTER_RULE_DESCRIPTION = "between the cluster's nodes: VXLAN tunnels, RPC, database, APIs"


@dataclass
class ComputeNodesArgs:
    """Inputs of `ComputeNodes`."""

    management_subnet_id: pulumi.Input[str]
    """The controller's management subnet."""
    management_sg_id: pulumi.Input[str]
    """The controller's management security group: the nodes join it; the cluster rule references it."""
    internet_gateway: pulumi.Resource
    """Elastic IPs are created after it."""
    node_ips: list[IPv4Address]
    """Node i's management IP (the settings' compute_ips)."""
    hostnames: list[str]
    """Node i's host name."""
    instance_type: str
    """EC2 type of every node."""
    nested_virtualization: bool
    """Launch with `cpu_options.nested_virtualization = "enabled"` (c8i/m8i/r8i)."""
    root_volume_gib: int
    """Size of each node's encrypted gp3 root volume."""
    ami: pulumi.Input[str]
    """The controller's image (one image for the whole cluster)."""
    pin_ami: bool
    """The image is pinned by config (else a newer lookup result is ignored, like the controller's)."""
    key_name: pulumi.Input[str]
    """The controller's key pair."""
    private_key: pulumi.Input[str]
    """Its private half (secret), for the nodes' SSH connection."""
    parked: bool = False
    """Stop the nodes with the controller (config key parked)."""
    spot: bool = False
    """Persistent spot instances that stop on interruption (config key spot)."""
    gate: pulumi.Output[str] | None = None
    """The controller's park check (components.host.park_guard): the nodes' steps wait for it."""


def nodes_args_from_settings(settings: Settings, network: Network, controller: Host) -> ComputeNodesArgs:
    """ComputeNodesArgs from the settings' computeNodes section: on the controller's management
    subnet and security group, with its image and key pair."""
    nodes = settings.compute_nodes
    return ComputeNodesArgs(
        management_subnet_id=network.management_subnet.id,
        management_sg_id=network.management_sg.id,
        internet_gateway=network.internet_gateway,
        node_ips=settings.compute_ips,
        hostnames=[nodes.hostname(i) for i in range(nodes.count)],
        instance_type=nodes.instance_type,
        nested_virtualization=nodes.nested_virtualization,
        root_volume_gib=nodes.root_volume_gib,
        ami=controller.instance.ami,
        pin_ami=settings.ami_id is not None,
        key_name=controller.key_pair.key_name,
        private_key=controller.contract.ssh.private_key,
        parked=settings.parked,
        spot=settings.spot,
        gate=controller.gate,
    )


@dataclass
class ComputeNodeArgs:
    """Inputs of one `ComputeNode`: what all nodes share, and its own address and name."""

    shared: ComputeNodesArgs
    management_ip: IPv4Address
    hostname: str


class ComputeNode(pulumi.ComponentResource):
    """One compute node: SSH host key, management ENI, instance, Elastic IP."""

    def __init__(self, name: str, node: ComputeNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:compute:ComputeNode", name, None, opts)
        args, ip, hostname = node.shared, node.management_ip, node.hostname
        # Its own SSH host key, installed by cloud-init at first boot and pinned by its steps,
        # exactly as the controller's (components/host.py).
        self.host_key, self.host_public_key, user_data = generated_host_key(name, pulumi.ResourceOptions(parent=self))
        self.eni = aws.ec2.NetworkInterface(
            f"{name}-management-eni",
            subnet_id=args.management_subnet_id,
            private_ips=[str(ip)],
            security_groups=[args.management_sg_id],
            description=f"openstack-on-aws compute node {hostname}: SSH, RPC, VXLAN tunnels",
            tags={"Name": f"{name}-management", ROLE_TAG: "compute"},
            # A fixed IP: a replacement must delete the old ENI first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.instance = hardened_instance(
            f"{name}-instance",
            ami=args.ami,
            instance_type=args.instance_type,
            key_name=args.key_name,
            eni_id=self.eni.id,
            root_volume_gib=args.root_volume_gib,
            nested_virtualization=args.nested_virtualization,
            user_data=user_data,
            tag_name=f"{name}-openstack-compute",
            pin_ami=args.pin_ami,
            parent=self,
            spot=args.spot,
        )
        self.power = power_state(f"{name}-instance-state", self.instance, args.parked, self)
        self.eip = aws.ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            network_interface=self.eni.id,
            associate_with_private_ip=str(ip),
            tags={"Name": f"{name}"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.internet_gateway]),
        )
        self.contract = NodeContract(
            ssh=SshConnection(
                host=gated(self.eip.public_ip, args.gate),
                user=SSH_USER,
                private_key=args.private_key,
                host_key=self.host_public_key,
            ),
            machine_id=self.instance.id,
            management_ip=ip,
            hostname=hostname,
            ready=[self.instance, self.power, self.eip],
            deleted_with=self.instance,
        )
        self.register_outputs(
            {
                "instance_id": self.instance.id,
                "management_ip": str(ip),
                "public_ip": self.eip.public_ip,
                "host_public_key": self.host_public_key,
            }
        )


class ComputeNodes(pulumi.ComponentResource):
    """The compute nodes and the security-group rule between the cluster's members."""

    def __init__(self, name: str, args: ComputeNodesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:compute:ComputeNodes", name, None, opts)
        # The controller's and the nodes' management ENIs share this group: all traffic among
        # its members, nothing from anywhere else.
        self.cluster_rule = aws.vpc.SecurityGroupIngressRule(
            f"{name}-management-cluster",
            security_group_id=args.management_sg_id,
            referenced_security_group_id=args.management_sg_id,
            ip_protocol="-1",
            description=CLUSTER_RULE_DESCRIPTION,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.nodes = [
            ComputeNode(f"{name}-compute-{i}", ComputeNodeArgs(args, ip, hostname), pulumi.ResourceOptions(parent=self))
            for i, (ip, hostname) in enumerate(zip(args.node_ips, args.hostnames, strict=True))
        ]
        self.contracts = [n.contract for n in self.nodes]
        self.register_outputs({"instance_ids": [n.instance.id for n in self.nodes]})

    def stack_output(self) -> list[dict[str, pulumi.Input[str]]]:
        """The `computeNodes` stack output: per node its name, instance, addresses and SSH host key."""
        return [
            {
                "hostname": n.contract.hostname,
                "instanceId": n.instance.id,
                "managementPrivateIp": str(n.contract.management_ip),
                "publicIp": n.eip.public_ip,
                "sshHostKey": n.host_public_key,
            }
            for n in self.nodes
        ]


@dataclass
class ComputeStepsArgs:
    """Inputs of `ComputeSteps`: the contracts and the controller's DevStack settings."""

    controller: HostContract
    """The controller (its SSH connection, management IP, machine)."""
    controller_installed: pulumi.Resource | None
    """The controller's DevStack install step: every node step comes after it (None: render)."""
    nodes: list[NodeContract]
    branch: str
    """The controller's DevStack branch."""
    admin_password: pulumi.Input[str]
    """The controller's admin password (secret): every service password of the cloud."""
    cloud: str = "devstack-admin"
    clouds_yaml: str = "/etc/openstack/clouds.yaml"
    cluster_rule: pulumi.Resource | None = None
    """The security-group rule the nodes need to reach the controller."""
    controller_catalog: pulumi.Resource | None = None
    """The controller's step that moves its catalog (public-endpoints; None where it does not run).
    The node steps that call the controller's CLI start after it: a step picks the catalog interface
    once, when it starts (onhost/steps/lib.sh), so it must not start while the catalog moves."""


def node_inputs(args: ComputeStepsArgs, node: NodeContract) -> NodeInputs:
    """What the compute step table's parameter builders read, from the contracts."""
    return NodeInputs(
        hostname=node.hostname,
        node_ip=node.management_ip,
        controller_ip=args.controller.management_ip,
        branch=args.branch,
        local_conf=compute_local_conf_for(args.controller, node),
        admin_password=args.admin_password,
        cloud=args.cloud,
        clouds_yaml=args.clouds_yaml,
    )


def compute_local_conf_for(controller: HostContract, node: NodeContract) -> str:
    """A node's DevStack local.conf (its placeholders are filled on the node)."""
    return localconf.render_compute_local_conf(host_ip=node.management_ip, service_host=controller.management_ip)


def controller_install_id(branch: str, controller: HostContract) -> str:
    """What makes the controller's install-openstack re-install DevStack, as one digest (its
    password changes reach the nodes through their own install-compute parameters)."""
    text = f"{branch}\n{local_conf_for(controller)}"
    return "controller-devstack-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def placeholder_nodes(settings: Settings, private_key: str) -> list[NodeContract]:
    """What `ComputeNodes` hands over, with <placeholders> for what AWS assigns (make render)."""
    nodes = settings.compute_nodes
    return [
        NodeContract(
            ssh=SshConnection(host=f"<Elastic IP of {nodes.hostname(i)}>", user=SSH_USER, private_key=private_key),
            machine_id=f"<instance id of {nodes.hostname(i)}>",
            management_ip=ip,
            hostname=nodes.hostname(i),
        )
        for i, ip in enumerate(settings.compute_ips)
    ]


def steps_args_from_settings(
    settings: Settings,
    controller: HostContract,
    nodes: list[NodeContract],
    admin_password: pulumi.Input[str],
    controller_installed: pulumi.Resource | None = None,
    cluster_rule: pulumi.Resource | None = None,
    controller_catalog: pulumi.Resource | None = None,
) -> ComputeStepsArgs:
    """ComputeStepsArgs from the settings' OpenStack side (the program and render share it)."""
    return ComputeStepsArgs(
        controller=controller,
        controller_installed=controller_installed,
        nodes=nodes,
        branch=settings.openstack_branch,
        admin_password=admin_password,
        cloud=settings.openstack.cloud_name,
        clouds_yaml=settings.openstack.clouds_yaml_path,
        cluster_rule=cluster_rule,
        controller_catalog=controller_catalog,
    )


class ComputeSteps(pulumi.ComponentResource):
    """The compute nodes' remote steps and the controller's discovery of them."""

    def __init__(self, name: str, args: ComputeStepsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("openstack-on-aws:compute:ComputeSteps", name, None, opts)
        controller = args.controller
        controller_connection = connection_args(controller)
        # A re-installed controller (new branch or local.conf: stack.sh re-creates its databases)
        # re-runs every node's steps and the discovery, as a new controller machine does.
        reinstall = controller_install_id(args.branch, controller)
        self.steps: dict[str, dict[str, remote.Command]] = {}
        last: list[pulumi.Resource] = []
        for node in args.nodes:
            inputs = node_inputs(args, node)
            triggers = [node.machine_id, controller.machine_id, reinstall]
            node_connection = connection_args(node)
            mine: dict[str, remote.Command] = {}
            for step in NODE_CHAIN:
                on_controller = step.runs_on == CONTROLLER
                if step.after is not None:
                    depends: list[pulumi.Resource] = [mine[step.after]]
                else:
                    depends = [*node.ready, *(r for r in (args.controller_installed, args.cluster_rule) if r)]
                if on_controller and args.controller_catalog is not None:
                    depends.append(args.controller_catalog)
                if on_controller:
                    deleted_with = controller.deleted_with
                else:
                    deleted_with = node.deleted_with if step.skip_remove_with_node else None
                mine[step.name] = _step(
                    f"{name}-{node.hostname}-{step.name}",
                    step.name,
                    controller_connection if on_controller else node_connection,
                    row_stdin(step, step.params(inputs), NODE_SCRIPTS),
                    # The node's scripts go again to a new node only.
                    triggers=triggers[:1] if step.name == UPLOAD else triggers,
                    depends_on=depends,
                    deleted_with=deleted_with,
                    timeouts=(step.timeout, step.delete_timeout),
                    secret=step.secret,
                    parent=self,
                )
            self.steps[node.hostname] = mine
            last.append(mine[NODE_CHAIN[-1].name])
        hostnames = [n.hostname for n in args.nodes]
        self.discover = _step(
            f"{name}-{DISCOVER.name}",
            DISCOVER.name,
            controller_connection,
            step_stdin(discover_params(hostnames, args.cloud, args.clouds_yaml)),
            # A new or replaced node, or a new controller, is discovered again.
            triggers=[controller.machine_id, reinstall, *[n.machine_id for n in args.nodes]],
            depends_on=[*last, *([args.controller_catalog] if args.controller_catalog else [])],
            deleted_with=controller.deleted_with,
            timeouts=(DISCOVER.timeout, DISCOVER.delete_timeout),
            secret=False,
            parent=self,
        )
        self.register_outputs({"hosts": hostnames})


def _step(
    resource_name: str,
    step: str,
    connection: remote.ConnectionArgs,
    stdin: pulumi.Output[str],
    *,
    triggers: list[pulumi.Input[str]],
    depends_on: list[pulumi.Resource],
    deleted_with: pulumi.Resource | None,
    timeouts: tuple[str, str],
    secret: bool,
    parent: pulumi.Resource,
) -> remote.Command:
    """One remote step, with the options every step of the program has (components/openstack.py);
    the upload row installs the node's scripts (NODE_SCRIPTS)."""
    apply, remove = texts(step, NODE_SCRIPTS)
    return remote.Command(
        resource_name,
        connection=connection,
        create=apply,
        update=apply,
        delete=remove,
        stdin=stdin,
        triggers=triggers,
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=depends_on,
            # Not the upload row: the old steps' removes run its scripts (components/openstack.py).
            delete_before_replace=step != UPLOAD,
            deleted_with=deleted_with,
            custom_timeouts=pulumi.CustomTimeouts(create=timeouts[0], update=timeouts[0], delete=timeouts[1]),
            additional_secret_outputs=["stdout", "stderr"] if secret else None,
        ),
    )
