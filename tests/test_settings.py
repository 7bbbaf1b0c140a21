"""The settings model: defaults that give a working cloud, and every bad input named by its key."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.compute import ComputeNodes
from config.host import InstanceTypeTraits
from config.settings import InstanceLimits, Settings, SettingsError, load_settings

NS = "openstack-on-aws"
BASE = {"aws:region": "eu-west-1", f"{NS}:allowedCidrs": '["203.0.113.0/24"]'}
M8I = InstanceLimits(max_network_interfaces=4, max_ipv4_per_interface=15, bare_metal=False)


def load(limits: InstanceLimits | None = M8I, **keys):
    config = dict(BASE)
    for key, value in keys.items():
        config[key if ":" in key else f"{NS}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return load_settings(config, (lambda _t: limits) if limits else None)


def problems(**keys) -> list[str]:
    with pytest.raises(SettingsError) as err:
        load(**keys)
    return err.value.problems


def fwd(port=522, ip="192.168.100.10", proto="tcp", tenant_port=22):
    return {"protocol": proto, "publicPort": port, "tenantIp": ip, "tenantPort": tenant_port}


def test_defaults_give_a_working_cloud():
    s = load()
    assert s.region == "eu-west-1" and s.zone == "eu-west-1a"
    assert s.instance_type == "m8i.2xlarge" and s.nested_virtualization and s.has_kvm
    assert s.management_ip == IPv4Address("10.42.1.10")
    assert s.provider_ip == IPv4Address("10.42.2.10")
    assert s.floating_ips == [IPv4Address("10.42.2.11")]
    assert s.vpc_router_ip == IPv4Address("10.42.2.1")
    assert s.openstack_branch.startswith("stable/")
    assert s.warnings() == []


def test_settings_are_frozen():
    s = load()
    with pytest.raises(ValueError):
        s.instance_type = "m5.large"  # type: ignore[misc]


def test_structured_values_and_strings_are_read_as_pulumi_stores_them():
    s = load(rootVolumeGiB="300", floatingIpCount="3", portForwards=[fwd(), fwd(53, proto="udp", tenant_port=53)])
    assert s.root_volume_gib == 300 and s.floating_ip_count == 3
    assert [(f.protocol, f.public_port) for f in s.port_forwards] == [("tcp", 522), ("udp", 53)]


def test_region_comes_from_the_aws_provider_key():
    s = load_settings({"aws:region": "ap-south-1", f"{NS}:allowedCidrs": '["10.9.0.0/16"]'})
    assert s.zone == "ap-south-1a"


def test_allowed_cidrs_is_required():
    with pytest.raises(SettingsError) as err:
        load_settings({"aws:region": "us-east-1"})
    assert err.value.problems == [f"{NS}:allowedCidrs: required"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"vpcCidr": "10.0.0.0/33"}, f"{NS}:vpcCidr: "),
        ({"vpcCidr": "10.0.0.0/8"}, f"{NS}:vpcCidr: a VPC CIDR must be /16 to /28"),
        ({"managementSubnetCidr": "10.1.0.0/24"}, f"{NS}:managementSubnetCidr: 10.1.0.0/24 is not inside"),
        ({"providerSubnetCidr": "10.42.1.0/25"}, f"{NS}:providerSubnetCidr: 10.42.1.0/25 overlaps"),
        ({"providerSubnetCidr": "10.42.2.0/28"}, f"{NS}:providerSubnetCidr: 10.42.2.0/28 is too small"),
        ({"tenantCidr": "10.42.200.0/24"}, f"{NS}:tenantCidr: 10.42.200.0/24 overlaps vpcCidr"),
        ({"tenantCidr": "192.168.1.300/24"}, f"{NS}:tenantCidr: "),
        ({"allowedCidrs": ["0.0.0.0/0"]}, f"{NS}:allowedCidrs[0]: 0.0.0.0/0 opens SSH"),
        ({"allowedCidrs": ["203.0.113.7"]}, None),  # a bare address is a /32: accepted
        ({"allowedCidrs": []}, f"{NS}:allowedCidrs: List should have at least 1 item"),
        ({"allowedCidrs": "203.0.113.0/24"}, f"{NS}:allowedCidrs: Input should be a valid list"),
        ({"availabilityZone": "us-west-2a"}, f"{NS}:availabilityZone: 'us-west-2a' is not a zone of eu-west-1"),
        ({"instanceType": "M8I 2XL"}, f"{NS}:instanceType: 'M8I 2XL' is not an EC2 type name"),
        ({"rootVolumeGiB": "lots"}, f"{NS}:rootVolumeGiB: Input should be a valid integer"),
        ({"rootVolumeGiB": 10}, f"{NS}:rootVolumeGiB: Input should be greater than or equal to 40"),
        ({"amiId": "ubuntu"}, f"{NS}:amiId: String should match pattern"),
        ({"openstackBranch": "main"}, f"{NS}:openstackBranch: String should match pattern"),
        ({"floatingIpCount": -1}, f"{NS}:floatingIpCount: Input should be greater than or equal to 0"),
        ({"floatingIpCount": 15}, f"{NS}:floatingIpCount: m8i.2xlarge allows 15 IPv4 addresses per ENI"),
        ({"providerSubnetCidr": "10.42.2.0/27", "floatingIpCount": 21, "limits": InstanceLimits(15, 50, True)},
         f"{NS}:floatingIpCount: 21 floating IPs do not fit in providerSubnetCidr 10.42.2.0/27"),
        ({"portForwards": [fwd(port=0)]}, f"{NS}:portForwards[0].publicPort: Input should be greater than"),
        ({"portForwards": [fwd(tenant_port=65536)]}, f"{NS}:portForwards[0].tenantPort: Input should be less"),
        ({"portForwards": [fwd(ip="192.168.100")]}, f"{NS}:portForwards[0].tenantIp: Input is not a valid IPv4"),
        ({"portForwards": [fwd(proto="icmp")]}, f"{NS}:portForwards[0].protocol: Input should be 'tcp' or 'udp'"),
        ({"portForwards": [fwd(ip="10.9.9.9")]},
         f"{NS}:portForwards[0].tenantIp: 10.9.9.9 is outside tenantCidr 192.168.100.0/24"),
        ({"portForwards": [fwd(ip="192.168.100.1")]}, f"{NS}:portForwards[0].tenantIp: 192.168.100.1 is the"),
        ({"portForwards": [fwd(), fwd(ip="192.168.100.11")]},
         f"{NS}:portForwards[1].publicPort: tcp/522 is already forwarded by portForwards[0]"),
        ({"portForwards": [fwd(port=9697)]}, f"{NS}:portForwards[0].publicPort: 9697 is reserved"),
        ({"portForwards": [{**fwd(), "target": "vm1"}]}, f"{NS}:portForwards[0].target: unknown key"),
        ({"portForwards": "tcp:522"}, f"{NS}:portForwards: Input should be a valid list"),
        ({"sshPublicKey": "ssh-ed25519 AAAA me@host"}, f"{NS}:sshPrivateKey: set both sshPublicKey and"),
        ({"vpcCIDR": "10.0.0.0/16"}, f"{NS}:vpcCIDR: unknown key"),
        ({"adminPassword": "short"}, f"{NS}:adminPassword: Value should have at least 12"),
        ({"adminPassword": "with space & quote'"}, f"{NS}:adminPassword: use only A-Z a-z 0-9 _ -"),
        ({"adminPassword": "Good_pass-word-123"}, None),
    ],
)
def test_each_bad_input_names_its_key(keys, expected):
    if expected is None:
        load(**keys)
        return
    found = problems(**keys)
    assert any(p.startswith(expected) for p in found), found


def test_one_message_lists_every_problem():
    with pytest.raises(SettingsError) as err:
        load(
            vpcCidr="10.42.0.0/16",
            providerSubnetCidr="10.42.1.0/25",
            tenantCidr="10.42.100.0/24",
            allowedCidrs=["0.0.0.0/0"],
            portForwards=[fwd(ip="192.168.100.10"), fwd()],
        )
    message = str(err.value)
    for key in ("providerSubnetCidr", "tenantCidr", "allowedCidrs[0]", "portForwards[0].tenantIp",
                "portForwards[1].publicPort"):
        assert f"{NS}:{key}:" in message
    assert len(err.value.problems) >= 5


def test_field_errors_are_listed_together():
    found = problems(rootVolumeGiB="x", amiId="nope", unknownThing=1, floatingIpCount="many")
    assert len(found) == 4


def test_secret_values_are_never_echoed():
    with pytest.raises(SettingsError) as err:
        load(adminPassword="hunter2", sshPrivateKey={"key": "s3cr3t-key"}, sshPublicKey="ssh-ed25519 AAAA")
    message = str(err.value)
    assert "hunter2" not in message and "s3cr3t-key" not in message
    assert f"{NS}:adminPassword:" in message and f"{NS}:sshPrivateKey:" in message


def test_unknown_instance_type_is_reported_by_key():
    def unknown(t):
        raise RuntimeError(f"InvalidInstanceType: {t}")

    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, f"{NS}:instanceType": "m99.huge"}, unknown)
    assert err.value.problems[0].startswith(f"{NS}:instanceType: AWS does not know 'm99.huge'")


def test_instance_type_with_one_interface_is_refused():
    found = problems(limits=InstanceLimits(1, 2, False), instanceType="t2.nano", floatingIpCount=0)
    assert found == [f"{NS}:instanceType: t2.nano takes only 1 network interface; two are needed"]


@pytest.mark.parametrize(
    ("instance_type", "nested", "kvm", "arch"),
    [
        ("m8i.2xlarge", True, True, "x86_64"),
        ("c8i-flex.large", True, True, "x86_64"),
        ("r8i.4xlarge", True, True, "x86_64"),
        ("c7i.metal-24xl", False, True, "x86_64"),
        ("m7g.metal", False, True, "arm64"),
        ("m5.large", False, False, "x86_64"),
    ],
)
def test_virtualization_follows_the_instance_type(instance_type, nested, kvm, arch):
    s = load(instanceType=instance_type)
    assert (s.nested_virtualization, s.has_kvm, s.architecture) == (nested, kvm, arch)
    qemu_warning = [w for w in s.warnings() if "QEMU" in w]
    assert bool(qemu_warning) == (not kvm)
    if qemu_warning:
        assert qemu_warning[0].startswith(f"{NS}:instanceType:")
    # The compute nodes take the controller's rules: one piece of code (InstanceTypeTraits).
    nodes = ComputeNodes.model_validate({"instanceType": instance_type})
    assert (nodes.nested_virtualization, nodes.has_kvm, nodes.architecture) == (nested, kvm, arch)
    for rule in ("nested_virtualization", "has_kvm", "architecture"):
        assert getattr(ComputeNodes, rule) is getattr(InstanceTypeTraits, rule) is getattr(Settings, rule)


def test_more_elastic_ips_than_the_quota_is_refused_naming_the_keys():
    assert load(floatingIpCount=3).warnings() == []
    (found,) = problems(floatingIpCount=4)
    assert found.startswith(f"{NS}:floatingIpCount: the stack needs 6 Elastic IPs")
    assert "the quota is 5" in found and f"{NS}:elasticIpQuota" in found
    assert load(floatingIpCount=4, elasticIpQuota=6).eip_count == 6


def test_user_key_pair_is_accepted():
    s = load(sshPublicKey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc me@host", sshPrivateKey="-----BEGIN...")
    assert s.ssh_private_key is not None and "BEGIN" not in repr(s)


# ---- property-based: any layout of valid subnets is accepted, any overlap is refused --------------

@st.composite
def layouts(draw):
    second = draw(st.integers(0, 255))
    vpc = IPv4Network(f"10.{second}.0.0/16")
    prefix = draw(st.integers(20, 27))
    subnets = list(vpc.subnets(new_prefix=prefix))
    i, j = draw(st.lists(st.integers(0, len(subnets) - 1), min_size=2, max_size=2, unique=True))
    return vpc, subnets[i], subnets[j]


@settings(max_examples=60, deadline=None)
@given(layouts(), st.integers(0, 5))
def test_any_disjoint_subnets_inside_the_vpc_are_accepted(layout, floating):
    vpc, mgmt, provider = layout
    s = load(vpcCidr=str(vpc), managementSubnetCidr=str(mgmt), providerSubnetCidr=str(provider),
             floatingIpCount=floating, elasticIpQuota=7)
    assert s.provider_ip in provider and all(ip in provider for ip in s.floating_ips)
    assert s.management_ip in mgmt and len(set(s.floating_ips) | {s.provider_ip}) == floating + 1


@st.composite
def overlapping_layouts(draw):
    """A VPC and two subnets inside it that overlap: one the same as, inside or around the other."""
    vpc, subnet, _ = draw(layouts())
    prefix = draw(st.integers(20, 27))
    if prefix > subnet.prefixlen:
        other = draw(st.sampled_from(list(subnet.subnets(new_prefix=prefix))))
    else:
        other = subnet.supernet(new_prefix=prefix)
    mgmt, provider = draw(st.permutations([subnet, other]))
    return vpc, mgmt, provider


@settings(max_examples=60, deadline=None)
@given(overlapping_layouts())
def test_overlapping_management_and_provider_subnets_are_refused(layout):
    vpc, mgmt, provider = layout
    found = problems(vpcCidr=str(vpc), managementSubnetCidr=str(mgmt), providerSubnetCidr=str(provider),
                     floatingIpCount=0)
    assert f"{NS}:providerSubnetCidr: {provider} overlaps managementSubnetCidr {mgmt}" in found


@settings(max_examples=60, deadline=None)
@given(layouts(), st.integers(16, 28))
def test_a_tenant_network_overlapping_the_vpc_is_refused(layout, prefix):
    vpc, mgmt, provider = layout
    tenant = IPv4Network((int(mgmt.network_address), max(prefix, 16)), strict=False)
    found = problems(vpcCidr=str(vpc), managementSubnetCidr=str(mgmt), providerSubnetCidr=str(provider),
                     tenantCidr=str(tenant))
    assert any(p.startswith(f"{NS}:tenantCidr: ") and "overlaps vpcCidr" in p for p in found)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tcp", "udp"]), st.integers(1, 65535)), min_size=1, max_size=8))
def test_duplicate_forwards_are_refused_and_distinct_ones_accepted(slots):
    forwards = [fwd(port=p, proto=proto) for proto, p in slots]
    has_dup = len(set(slots)) != len(slots)
    reserved = any(p == 9697 for _, p in slots)
    if has_dup or reserved:
        found = problems(portForwards=forwards)
        assert has_dup == any("already forwarded" in p for p in found)
    else:
        assert len(load(portForwards=forwards).port_forwards) == len(slots)


def test_the_example_stack_file_is_valid():
    """Pulumi.dev.yaml, read as Pulumi hands it over (structured values as JSON), validates clean."""
    import yaml

    from tests.harness import ROOT, config_strings

    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    s = load_settings(config_strings(config), lambda _t: M8I)
    assert s.port_forwards and s.allowed_cidrs and s.warnings() == []
