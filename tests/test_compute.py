"""Compute nodes (docs/compute-nodes.md): the settings, the graph for 0, 1 and 3 nodes under
Pulumi's mocks, the cluster security-group rule, the steps' dependencies and options, a count
change touching only what it must, the outputs, secrets, render and the nodes' local.conf.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.rpc import is_rpc_secret

from config.settings import InstanceLimits, SettingsError, load_settings
from onhost import localconf
from onhost.chain import chain_for, scripts_of
from onhost.compute_chain import CONTROLLER_SCRIPTS, NODE_CHAIN, NODE_SCRIPTS
from onhost.localconf import local_conf_variables
from onhost.remote import UPLOAD, UPLOAD_COMMAND, command, texts, upload
from tests import harness
from tests.test_secrets import plain_leaks, secret_values

ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_VARIABLES = ROOT / "tests" / "data" / "devstack_variables.txt"
COMMAND = "command:remote:Command"
INSTANCE = "aws:ec2/instance:Instance"
ENI = "aws:ec2/networkInterface:NetworkInterface"
EIP = "aws:ec2/eip:Eip"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
M8I = InstanceLimits(4, 15, False, vcpus=8)


def nodes(count: int, **more: Any) -> dict[str, Any]:
    return {"computeNodes": {"count": count, **more}}


# Each node holds an Elastic IP: the node counts tested here need more than AWS's default 5.
QUOTA = {"elasticIpQuota": 100}


def run(count: int | None, **config: Any) -> harness.Result:
    return harness.run_program({**QUOTA, **(nodes(count) if count is not None else {}), **config})


@pytest.fixture(scope="module")
def none() -> harness.Result:
    return run(None)


@pytest.fixture(scope="module")
def one() -> harness.Result:
    return run(1)


@pytest.fixture(scope="module")
def three() -> harness.Result:
    return run(3)


def load(limits: InstanceLimits | None = M8I, **keys: Any):
    full = harness.config_strings({**harness.BASE_CONFIG, **QUOTA, **keys})
    return load_settings(full, (lambda t: limits) if limits else None)


def problems(**keys: Any) -> list[str]:
    with pytest.raises(SettingsError) as err:
        load(**keys)
    return err.value.problems


def snapshot(r: harness.Registered, result: harness.Result) -> dict[str, Any]:
    """Everything registered about one resource, with dependencies by name (URNs are per run)."""
    d = asdict(r)
    d["dependencies"] = sorted(result.name_of(u) for u in r.dependencies)
    d["deleted_with"] = result.name_of(r.deleted_with) if r.deleted_with else ""
    return d


def graph(result: harness.Result) -> dict[str, dict[str, Any]]:
    """Every resource by name (components named after the stack by `type:name`)."""
    return {(f"{r.type}:{r.name}" if r.name == "dev" else r.name): snapshot(r, result) for r in result.resources}


def stdin_of(result: harness.Result, name: str) -> dict[str, str]:
    text = harness.reveal(result.one(name).inputs["stdin"])
    return dict(line.split("=", 1) for line in text.splitlines())


# ---- settings ---------------------------------------------------------------------------------


def test_no_compute_nodes_by_default():
    s = load()
    assert s.compute_nodes.count == 0 and s.compute_ips == [] and s.warnings() == []


def test_node_ips_follow_the_controllers():
    s = load(**nodes(3))
    assert [str(ip) for ip in s.compute_ips] == ["10.42.1.11", "10.42.1.12", "10.42.1.13"]
    assert [s.compute_nodes.hostname(i) for i in range(3)] == ["compute-0", "compute-1", "compute-2"]


def test_nodes_must_fit_in_the_management_subnet():
    # a /27: .10 is the controller, .31 the broadcast AWS reserves: .11-.30 hold 20 nodes.
    assert load(managementSubnetCidr="10.42.1.0/27", **nodes(20)).compute_nodes.count == 20
    found = problems(managementSubnetCidr="10.42.1.0/27", **nodes(21))
    assert [p for p in found if p.startswith("openstack-on-aws:computeNodes.count: 21 nodes")], found


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"count": 1, "instanceType": "m7g.large"}, "openstack-on-aws:computeNodes.instanceType: m7g.large is arm64"),
        ({"count": 1, "instanceType": "big"}, "openstack-on-aws:computeNodes.instanceType: 'big' is not"),
        ({"count": -1}, "openstack-on-aws:computeNodes.count:"),
        ({"count": 1, "rootVolumeGiB": 10}, "openstack-on-aws:computeNodes.rootVolumeGiB:"),
        ({"count": 1, "size": 3}, "openstack-on-aws:computeNodes.size: unknown key"),
    ],
)
def test_bad_compute_settings_are_named_by_key(section, expected):
    found = problems(computeNodes=section)
    assert any(p.startswith(expected) for p in found), found


def test_an_unknown_node_type_is_asked_of_aws_and_named():
    def limits(instance_type: str) -> InstanceLimits:
        if instance_type == "m9z.large":
            raise RuntimeError("InvalidInstanceType")
        return M8I

    with pytest.raises(SettingsError) as err:
        load_settings(harness.config_strings({**harness.BASE_CONFIG, **nodes(1, instanceType="m9z.large")}), limits)
    assert err.value.problems == [
        "openstack-on-aws:computeNodes.instanceType: AWS does not know 'm9z.large': InvalidInstanceType"
    ]


def test_elastic_ips_of_the_nodes_count_against_the_quota_by_key():
    # 2 + 1 floating + 2 nodes = 5 EIPs: at AWS's default quota; a third node is refused, named by its key.
    assert load(**nodes(2), elasticIpQuota=5).eip_count == 5
    assert problems(**nodes(3), elasticIpQuota=5) == [
        "openstack-on-aws:computeNodes.count: the stack needs 6 Elastic IPs (management, provider, one per floating "
        "IP and one per compute node); the quota is 5 per region. Lower openstack-on-aws:computeNodes.count, or have "
        "AWS raise the quota and set openstack-on-aws:elasticIpQuota (Elastic IPs that other stacks hold in the "
        "region count too)"
    ]
    # the floating IPs alone over the quota: named by floatingIpCount
    assert problems(**nodes(1), floatingIpCount=4, elasticIpQuota=5)[0].startswith(
        "openstack-on-aws:floatingIpCount: the stack needs 7 Elastic IPs"
    )


def test_vcpu_quota_warns_with_the_key():
    # controller 8 vCPUs + 3 x 8 = 32: at the quota.
    assert load(**nodes(3)).warnings() == []
    four = load(**nodes(4)).warnings()
    assert [w for w in four if w.startswith("openstack-on-aws:computeNodes.count: the controller and 4 nodes need 40")]
    assert "L-1216C47A" in four[-1]
    # no vCPU figure from AWS: no vCPU warning
    assert not [w for w in load(limits=InstanceLimits(4, 15, False), **nodes(4)).warnings() if "vCPUs" in w]


def test_a_node_type_without_kvm_warns():
    found = load(**nodes(1, instanceType="m5.large")).warnings()
    assert found == [
        "openstack-on-aws:computeNodes.instanceType: m5.large has no nested virtualization; servers on the "
        "compute nodes will run on QEMU emulation (slow). Use c8i/m8i/r8i or *.metal for KVM."
    ]


# ---- the graph under mocks ----------------------------------------------------------------------


def test_count_zero_is_the_stack_without_the_key(none):
    """count 0 registers exactly what a stack without `computeNodes` registers: no compute resource,
    no cluster rule, no output; the controller untouched."""
    zero = run(0)
    assert graph(zero) == graph(none)
    assert not [n for n in graph(zero) if "compute" in n or "discover" in n]
    assert "computeNodes" not in zero.outputs


@pytest.mark.parametrize("count", [1, 3])
def test_nodes_leave_every_controller_resource_as_it_was(none, count, request):
    """The controller's resources (its local.conf inside install-openstack's stdin included) are
    registered identically with 1 or 3 nodes: adding nodes changes nothing on the controller but
    the scripts its upload row installs (the nodes' steps that run there join them)."""
    result = request.getfixturevalue({1: "one", 3: "three"}[count])
    before, after = graph(none), graph(result)
    controller = scripts_of(s.name for s in chain_for("devstack", {"smokeTest"}))
    assert after["dev-scripts"]["inputs"]["stdin"] == upload([*controller, *CONTROLLER_SCRIPTS])
    assert before["dev-scripts"]["inputs"]["stdin"] == upload(controller)
    after["dev-scripts"]["inputs"]["stdin"] = before["dev-scripts"]["inputs"]["stdin"]
    # The running-config record digests every key, computeNodes too: it changes with any config change.
    record = "dev-running-config"
    assert {k: after[k] for k in before if k != record} == {k: v for k, v in before.items() if k != record}
    conf = base64.b64decode(stdin_of(result, "dev-install-openstack")["LOCAL_CONF"]).decode()
    assert conf == base64.b64decode(stdin_of(none, "dev-install-openstack")["LOCAL_CONF"]).decode()


@pytest.mark.parametrize("count", [1, 3])
def test_what_each_count_adds(none, count, request):
    result = request.getfixturevalue({1: "one", 3: "three"}[count])
    added = sorted(set(graph(result)) - set(graph(none)))
    per_node = [
        f"dev-compute-{i}{suffix}"
        for i in range(count)
        for suffix in (
            "", "-host-key", "-management-eni", "-instance", "-instance-state", "-eip",
            "-scripts", "-compute-record", "-prepare-compute", "-install-compute",
        )
    ]
    assert added == sorted([
        *per_node, "dev-management-cluster", "dev-discover-hosts",
        "openstack-on-aws:compute:ComputeNodes:dev", "openstack-on-aws:compute:ComputeSteps:dev",
    ])
    types = {r.name: r.type for r in result.resources}
    assert [types[f"dev-compute-{i}"] for i in range(count)] == ["openstack-on-aws:compute:ComputeNode"] * count


def test_each_node_is_parented_to_its_component(three):
    urn_of = {name: urn for urn, name in three.urns.items()}
    for i in range(3):
        node = f"dev-compute-{i}"
        for child in ("-host-key", "-management-eni", "-instance", "-eip"):
            assert three.one(node + child).parent == urn_of[node]
        assert "ComputeNodes" in three.one(node).parent
        for step in ("-scripts", "-compute-record", "-prepare-compute", "-install-compute"):
            assert "ComputeSteps" in three.one(node + step).parent
    assert "ComputeNodes" in three.one("dev-management-cluster").parent
    assert "ComputeSteps" in three.one("dev-discover-hosts").parent


def test_node_instances_eni_and_eip(three):
    controller = three.one("dev-instance").inputs
    for i in range(3):
        eni = three.one(f"dev-compute-{i}-management-eni")
        assert eni.inputs["privateIps"] == [f"10.42.1.{11 + i}"]
        assert eni.inputs["subnetId"] == three.one("dev-management-eni").inputs["subnetId"]
        assert eni.inputs["securityGroups"] == three.one("dev-management-eni").inputs["securityGroups"]
        assert eni.delete_before_replace
        inst = three.one(f"dev-compute-{i}-instance")
        assert inst.inputs["metadataOptions"]["httpTokens"] == "required"
        assert inst.inputs["rootBlockDevice"]["encrypted"] is True
        assert inst.inputs["rootBlockDevice"]["volumeSize"] == 100
        assert inst.inputs["cpuOptions"] == {"nestedVirtualization": "enabled"}
        assert inst.inputs["keyName"] == controller["keyName"]
        assert inst.inputs["ami"] == controller["ami"] == harness.MOCK_AMI  # one image for the cluster
        assert inst.ignore_changes == ["ami"]
        assert inst.inputs["primaryNetworkInterface"]["networkInterfaceId"] == f"dev-compute-{i}-management-eni-id"
        assert "subnetId" not in inst.inputs and "associatePublicIpAddress" not in inst.inputs
        eip = three.one(f"dev-compute-{i}-eip")
        assert eip.inputs["associateWithPrivateIp"] == f"10.42.1.{11 + i}"
        assert eip.inputs["networkInterface"] == f"dev-compute-{i}-management-eni-id"
        assert "dev-igw" in three.depends_on(f"dev-compute-{i}-eip")


def test_node_type_and_volume_follow_their_keys():
    r = run(None, **nodes(1, instanceType="m5.large", rootVolumeGiB=60), amiId="ami-0123456789abcdef0")
    inst = r.one("dev-compute-0-instance")
    assert inst.inputs["instanceType"] == "m5.large" and "cpuOptions" not in inst.inputs
    assert inst.inputs["rootBlockDevice"]["volumeSize"] == 60
    assert inst.inputs["ami"] == "ami-0123456789abcdef0" and inst.ignore_changes == []


def test_the_cluster_rule_references_the_group_itself_and_nothing_wider(three):
    sg = three.one("dev-management-eni").inputs["securityGroups"][0]
    rule = three.one("dev-management-cluster").inputs
    assert rule["securityGroupId"] == sg and rule["referencedSecurityGroupId"] == sg
    assert rule["ipProtocol"] == "-1"
    assert not {"cidrIpv4", "cidrIpv6", "prefixListId"} & set(rule)
    # the only ingress rule compute nodes add; none from a CIDR
    before = {r.name for r in run(None).of_type(INGRESS)}
    assert {r.name for r in three.of_type(INGRESS)} - before == {"dev-management-cluster"}


def test_step_dependencies_and_options(three):
    reinstall = three.one("dev-compute-0-install-compute").inputs["triggers"][2]
    assert reinstall.startswith("controller-devstack-")
    for i in range(3):
        node = f"dev-compute-{i}"
        scripts, record, prepare, install = (f"{node}-{s.name}" for s in NODE_CHAIN)
        # (plus what their inputs reference: connections, keys, triggers)
        assert three.depends_on(scripts) >= {
            "dev-install-openstack", f"{node}-instance", f"{node}-eip", "dev-management-cluster"
        }
        # the node's steps after its scripts (so their removes before the scripts' on the way out)
        assert scripts in three.depends_on(record)
        assert record in three.depends_on(prepare) and prepare in three.depends_on(install)
        # the controller's CLI picks its catalog interface once per run: not while the catalog moves
        assert "dev-public-endpoints" in three.depends_on(record)
        # nodes are independent of each other
        others = {f"dev-compute-{j}" for j in range(3) if j != i}
        for name in (scripts, record, prepare, install):
            assert not [d for d in three.depends_on(name) if any(d.startswith(o + "-") for o in others)]
        snap = graph(three)
        # remove order on the way out: install (stops the node's services) -> record (controller
        # forgets the node) -> scripts -> instance. Record is skipped only when the controller goes.
        assert snap[record]["deleted_with"] == "dev-instance"
        assert snap[prepare]["deleted_with"] == snap[scripts]["deleted_with"] == f"{node}-instance"
        assert snap[install]["deleted_with"] == ""
        # the scripts are replaced (a new node) create-first: the old steps' removes still find them
        assert not three.one(scripts).delete_before_replace
        assert three.one(scripts).inputs["triggers"] == [f"{node}-instance-id"]
        for name in (record, prepare, install):
            r = three.one(name)
            assert r.delete_before_replace
            assert r.inputs["triggers"] == [f"{node}-instance-id", "dev-instance-id", reinstall]
        assert three.one(install).custom_timeouts["create"] == "60m"
        assert {"stdout", "stderr"} <= set(three.one(install).additional_secret_outputs)
        assert "stdout" not in three.one(record).additional_secret_outputs
        assert is_rpc_secret(three.one(install).inputs["stdin"])
        assert not is_rpc_secret(three.one(record).inputs["stdin"])
    discover = three.one("dev-discover-hosts")
    assert three.depends_on("dev-discover-hosts") >= {
        "dev-public-endpoints", *(f"dev-compute-{i}-install-compute" for i in range(3))
    }
    assert graph(three)["dev-discover-hosts"]["deleted_with"] == "dev-instance"
    assert discover.inputs["triggers"] == [
        "dev-instance-id", reinstall, *[f"dev-compute-{i}-instance-id" for i in range(3)]
    ]
    assert stdin_of(three, "dev-discover-hosts")["NODES"] == "compute-0,compute-1,compute-2"


def test_steps_connect_to_the_right_machine(three):
    controller = harness.reveal(three.one("dev-install-openstack").inputs["connection"])
    for i in range(3):
        node = f"dev-compute-{i}"
        on_node = harness.reveal(three.one(f"{node}-install-compute").inputs["connection"])
        assert on_node["host"] == harness.fake("ip", f"{node}-eip") and on_node["user"] == "ubuntu"
        assert on_node["privateKey"] == controller["privateKey"]
        assert harness.reveal(three.one(f"{node}-compute-record").inputs["connection"]) == controller
    assert harness.reveal(three.one("dev-discover-hosts").inputs["connection"]) == controller


def test_each_step_runs_its_script_and_parameters(three):
    admin = harness.MOCK_ADMIN_PASSWORD
    for i in range(3):
        node = f"dev-compute-{i}"
        for step in NODE_CHAIN:
            r = three.one(f"{node}-{step.name}")
            assert (r.inputs["create"], r.inputs["delete"]) == texts(step.name, NODE_SCRIPTS)
        assert NODE_SCRIPTS == ["prepare-compute", "install-compute"]
        assert three.one(f"{node}-scripts").inputs["stdin"] == upload(NODE_SCRIPTS)
        assert stdin_of(three, f"{node}-prepare-compute") == {
            "NODE_HOSTNAME": f"compute-{i}", "NODE_IP": f"10.42.1.{11 + i}"
        }
        assert stdin_of(three, f"{node}-compute-record") == {
            "NODE_HOSTNAME": f"compute-{i}", "CLOUD": "devstack-admin", "CLOUDS_YAML": "/etc/openstack/clouds.yaml"
        }
        install = stdin_of(three, f"{node}-install-compute")
        assert install["ADMIN_PASSWORD"] == admin and install["CONTROLLER_IP"] == "10.42.1.10"
        assert install["BRANCH"] == stdin_of(three, "dev-install-openstack")["BRANCH"]
        conf = base64.b64decode(install["LOCAL_CONF"]).decode()
        assert f"HOST_IP=10.42.1.{11 + i}\n" in conf and "SERVICE_HOST=10.42.1.10\n" in conf


def test_a_controller_reinstall_reruns_the_nodes_steps():
    """A new DevStack branch re-installs the controller (its databases anew): every node step and
    the discovery get a new trigger, so they are replaced too; the AWS side and the node's scripts stay."""
    old, new = graph(run(1)), graph(run(1, openstackBranch="stable/2025.2"))
    changed = {name for name in old if old[name] != new[name]}
    steps = {f"dev-compute-0-{s.name}" for s in NODE_CHAIN if s.name != UPLOAD} | {"dev-discover-hosts"}
    assert steps <= changed
    assert not [n for n in changed if n.startswith("dev-compute-0") and n not in steps]
    for name in steps:
        gone = set(old[name]["inputs"]["triggers"]) - set(new[name]["inputs"]["triggers"])
        assert len(gone) == 1 and gone.pop().startswith("controller-devstack-")


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1), (3, 2)])
def test_a_count_change_touches_only_the_nodes_that_come_or_go(before, after):
    old, new = graph(run(before)), graph(run(after))
    changed = {name for name in old.keys() & new.keys() if old[name] != new[name]}
    low, high = sorted((before, after))
    moved = {
        f"dev-compute-{i}{suffix}"
        for i in range(low, high)
        for suffix in ("", "-host-key", "-management-eni", "-instance", "-instance-state", "-eip",
                       "-scripts", "-compute-record", "-prepare-compute", "-install-compute")
    }
    # the components' registered outputs are not inputs: they do not count as a change
    changed -= {"openstack-on-aws:compute:ComputeNodes:dev", "openstack-on-aws:compute:ComputeSteps:dev"}
    # the running-config record digests every key (components/host.py park_guard)
    assert changed == {"dev-discover-hosts", "dev-running-config"}
    assert old.keys() ^ new.keys() == moved


def test_outputs_per_node(three, none):
    assert three.outputs["computeNodes"] == [
        {
            "hostname": f"compute-{i}",
            "instanceId": f"dev-compute-{i}-instance-id",
            "managementPrivateIp": f"10.42.1.{11 + i}",
            "publicIp": harness.fake("ip", f"dev-compute-{i}-eip"),
            "sshHostKey": harness.mock_host_key(f"dev-compute-{i}-host-key")[1].strip(),
        }
        for i in range(3)
    ]
    assert "computeNodes" not in three.secret_outputs
    assert set(three.outputs) - set(none.outputs) == {"computeNodes"}


def test_no_secret_in_plain_with_nodes(three):
    assert plain_leaks(three, secret_values(three, set())) == []


def test_an_existing_machine_refuses_compute_nodes():
    from tests.test_modes import HOST

    with pytest.raises(SettingsError) as err:
        load_settings(harness.config_strings({"host": HOST, "sshPrivateKey": "k", **nodes(1)}))
    assert "openstack-on-aws:computeNodes: AWS-only" in str(err.value)


# ---- local.conf and render ----------------------------------------------------------------------


def _known() -> set[str]:
    return {
        line.strip()
        for line in DEVSTACK_VARIABLES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def node_conf(host_ip: str = "10.42.1.11", service_host: str = "10.42.1.10") -> str:
    from ipaddress import IPv4Address

    return localconf.render_compute_local_conf(host_ip=IPv4Address(host_ip), service_host=IPv4Address(service_host))


def test_every_node_variable_is_read_by_devstack():
    names = local_conf_variables(node_conf())
    assert names and set(names) <= _known(), sorted(set(names) - _known())


def test_the_node_conf_says_what_devstacks_multinode_guide_says():
    values = dict(line.split("=", 1) for line in node_conf().splitlines() if "=" in line and line[0].isupper())
    assert values["HOST_IP"] == "10.42.1.11" and values["SERVICE_HOST"] == "10.42.1.10"
    for name in ("DATABASE_HOST", "RABBIT_HOST", "Q_HOST"):
        assert values[name] == "$SERVICE_HOST"
    assert values["GLANCE_HOSTPORT"] == "$SERVICE_HOST:9292"
    assert values["DATABASE_TYPE"] == "mysql"
    assert values["ENABLED_SERVICES"] == "n-cpu,placement-client,q-agt"  # no API, no L3/DHCP, no provider NIC
    assert values["Q_AGENT"] == "openvswitch" and values["Q_ML2_TENANT_NETWORK_TYPE"] == "vxlan"
    assert values["TUNNEL_ENDPOINT_IP"] == "$HOST_IP"
    assert values["ADMIN_PASSWORD"] == localconf.PASSWORD_PLACEHOLDER
    assert values["LIBVIRT_TYPE"] == localconf.LIBVIRT_PLACEHOLDER
    assert "PUBLIC_INTERFACE" not in values and "enable_service" not in node_conf()


def test_the_nodes_nova_calls_the_internal_catalog():
    """public-endpoints moves the public endpoints to the https Elastic IP, which a node's
    nova-compute must not call (port binding, placement reports, volume attach); like the
    controller's, its clients use the internal interface, and the post-config file is a DevStack
    variable. No [keystone_authtoken]: no API runs on a node."""
    from onhost.localconf import post_config_files

    text = node_conf()
    assert text.endswith(
        "[[post-config|$NOVA_CONF]]\n[neutron]\nvalid_interfaces = internal,public\n"
        "[placement]\nvalid_interfaces = internal,public\n[cinder]\ncatalog_info = volumev3::internalURL\n"
    )
    assert post_config_files(text) == ["NOVA_CONF"] and "NOVA_CONF" in _known()
    assert text.index("IP_VERSION=") < text.index("[[post-config|")


def _render(tmp_path: Path, count: int) -> Path:
    sys.path.insert(0, str(ROOT / "tools"))
    import render

    stack = tmp_path / "stack.yaml"
    stack.write_text(
        "config:\n  aws:region: us-east-1\n  openstack-on-aws:allowedCidrs: ['203.0.113.0/24']\n"
        + (f"  openstack-on-aws:computeNodes: {{count: {count}}}\n" if count is not None else "")
    )
    out = tmp_path / "out"
    render.render(None, out, config_file=stack)
    return out


def test_render_writes_each_nodes_steps_and_local_conf(tmp_path):
    out = _render(tmp_path, 2)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted([
        "1-scripts", "2-prepare-host", "3-install-openstack", "4-tls-front", "5-external-gateway",
        "6-gateway-mac", "7-port-forwards", "8-public-endpoints", "9-smoke", "10-discover-hosts", "compute-0",
        "compute-1",
    ])
    program = run(2)
    # the controller's upload row installs the nodes' steps that run there too
    assert (out / "1-scripts" / "command.sh").read_text() == program.one("dev-scripts").inputs["create"]
    for i in range(2):
        node = out / f"compute-{i}"
        assert sorted(p.name for p in node.iterdir()) == [
            "1-scripts", "2-compute-record", "3-prepare-compute", "4-install-compute", "local.conf"
        ]
        assert (node / "1-scripts" / "command.sh").read_text() == UPLOAD_COMMAND
        assert (node / "1-scripts" / "stdin.sh").read_text() == upload(NODE_SCRIPTS)
        assert (node / "1-scripts" / "runs-on.txt").read_text().startswith(f"compute-{i} (")
        assert (node / "local.conf").read_text() == node_conf(f"10.42.1.{11 + i}")
        assert set(local_conf_variables((node / "local.conf").read_text())) <= _known()
        assert (node / "2-compute-record" / "runs-on.txt").read_text() == "controller\n"
        assert (node / "4-install-compute" / "runs-on.txt").read_text().startswith(f"compute-{i} (")
        assert (node / "4-install-compute" / "command.sh").read_text() == command("install-compute", "apply")
        # render = what the program sends (secrets masked)
        for step in NODE_CHAIN[1:]:  # the upload row's stdin.sh: above
            rendered = dict(
                line.split("=", 1) for line in (node / f"{NODE_CHAIN.index(step) + 1}-{step.name}" / "params.env")
                .read_text().splitlines()
            )
            sent = stdin_of(program, f"dev-compute-{i}-{step.name}")
            if step.secret:
                assert rendered.pop("ADMIN_PASSWORD") == "<secret: masked>"
                sent.pop("ADMIN_PASSWORD")
            assert rendered == sent, step.name
    assert (out / "10-discover-hosts" / "params.env").read_text() == (
        "NODES=compute-0,compute-1\nCLOUD=devstack-admin\nCLOUDS_YAML=/etc/openstack/clouds.yaml\n"
    )


def test_render_without_nodes_writes_the_controller_only(tmp_path):
    out = _render(tmp_path, 0)
    assert not [p for p in out.iterdir() if "compute" in p.name or "discover" in p.name]


def test_compute_step_table_rows_have_scripts():
    for step in NODE_CHAIN[1:]:
        assert (ROOT / "onhost" / "steps" / step.script).is_file()
    assert json.dumps([s.name for s in NODE_CHAIN]) == (
        '["scripts", "compute-record", "prepare-compute", "install-compute"]'
    )
    assert CONTROLLER_SCRIPTS == ["compute-record", "discover-hosts"]


def test_the_program_warns_at_preview_with_what_aws_says_of_the_types():
    """The vCPU figures come from AWS's answer for both types (getInstanceType, under mocks)."""
    result = run(4)
    assert [w.split(";")[0] for w in result.warnings] == [
        "openstack-on-aws:computeNodes.count: the controller and 4 nodes need 40 vCPUs",
    ]
    assert result.invokes.count("aws:ec2/getInstanceType:getInstanceType") == 2
    smaller = run(4, computeNodes={"count": 4, "instanceType": "m8i.xlarge"})  # 8 + 4 x 4 = 24 vCPUs
    assert not [w for w in smaller.warnings if "vCPUs" in w]
