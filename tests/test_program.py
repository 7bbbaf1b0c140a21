"""The whole program under Pulumi's mocks: the AWS resource graph, its properties and the outputs."""

from __future__ import annotations

from collections import Counter

import pulumi
import pytest

from tests.harness import MOCK_AMI, SECRET_PRIVATE_KEY, fake, run_program

FWD_TCP = {"protocol": "tcp", "publicPort": 522, "tenantIp": "192.168.100.10", "tenantPort": 22}
FWD_UDP = {"protocol": "udp", "publicPort": 5353, "tenantIp": "192.168.100.11", "tenantPort": 53,
           "sourceCidrs": ["0.0.0.0/0"]}
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUserUserUserUserUserUserUserUserUserUser me@laptop"
USER_PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nuser-secret-key-material\n-----END OPENSSH PRIVATE KEY-----"

EC2 = "aws:ec2/"
T = {
    "vpc": f"{EC2}vpc:Vpc",
    "igw": f"{EC2}internetGateway:InternetGateway",
    "subnet": f"{EC2}subnet:Subnet",
    "rt": f"{EC2}routeTable:RouteTable",
    "route": f"{EC2}route:Route",
    "rta": f"{EC2}routeTableAssociation:RouteTableAssociation",
    "sg": f"{EC2}securityGroup:SecurityGroup",
    "ingress": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "egress": "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "eni": f"{EC2}networkInterface:NetworkInterface",
    "attach": f"{EC2}networkInterfaceAttachment:NetworkInterfaceAttachment",
    "eip": f"{EC2}eip:Eip",
    "instance": f"{EC2}instance:Instance",
    "keypair": f"{EC2}keyPair:KeyPair",
    "tlskey": "tls:index/privateKey:PrivateKey",
}

# The stack outputs, README "Outputs": a contract for StackReference users.
CONTRACT = {
    "region", "availabilityZone", "vpcId", "managementSubnetId", "providerSubnetId", "instanceId", "hostState",
    "managementPrivateIp", "managementPublicIp", "sshCommand", "sshPrivateKey", "providerEniId",
    "providerMac", "providerPrivateIp", "providerPublicIp", "floatingIps", "sshHostKey", "sshKnownHosts",
    "portForwards",
    # the OpenStack side (components/openstack.py)
    "keystoneAuthUrl", "horizonUrl", "routerId", "adminPassword", "cloudsYaml", "caCertificate",
}
# The Tls component's (components/tls.py) keys: the stack's CA and the TLS front's server key.
TLS_KEYS = ("dev-ca-key", "dev-server-key")


@pytest.fixture(scope="module")
def default():
    return run_program({"portForwards": [FWD_TCP, FWD_UDP], "floatingIpCount": 2})


def props(result, name):
    return result.one(name).inputs


def test_resource_graph_types_and_counts(default):
    counts = Counter(r.type for r in default.resources)
    for kind, n in {"vpc": 1, "igw": 1, "subnet": 2, "rt": 1, "route": 1, "rta": 2, "sg": 2, "egress": 2,
                    "eni": 2, "attach": 1, "eip": 4, "instance": 1, "keypair": 1, "tlskey": 4}.items():
        assert counts[T[kind]] == n, kind
    assert counts["openstack-on-aws:network:Network"] == 1
    assert counts["openstack-on-aws:host:Host"] == 1
    # TLS: a CA, a server certificate signed by it, for the management Elastic IP.
    assert counts["openstack-on-aws:tls:Tls"] == 1
    assert counts["tls:index/selfSignedCert:SelfSignedCert"] == 1
    assert counts["tls:index/certRequest:CertRequest"] == 1
    assert counts["tls:index/locallySignedCert:LocallySignedCert"] == 1
    request = default.one("dev-server-request").inputs
    assert request["ipAddresses"] == [default.outputs["managementPublicIp"]]
    assert default.one("dev-ca").inputs["isCaCertificate"] is True


def test_every_aws_resource_is_parented_to_its_component(default):
    network_urn = next(u for u, n in default.urns.items() if "network:Network" in u)
    host_urn = next(u for u, n in default.urns.items() if "host:Host" in u)
    tls_urn = next(u for u, n in default.urns.items() if "tls:Tls" in u)
    network_kinds = {"vpc", "igw", "subnet", "rt", "route", "rta", "sg", "ingress", "egress"}
    for r in default.resources:
        kind = next((k for k, t in T.items() if t == r.type), None)
        if kind is None:
            continue
        if r.name in TLS_KEYS:
            assert r.parent == tls_urn, r.name
            continue
        assert r.parent == (network_urn if kind in network_kinds else host_urn), r.name
        assert r.name.startswith("dev-"), r.name
    for component in ("openstack-on-aws:network:Network", "openstack-on-aws:host:Host"):
        (c,) = default.of_type(component)
        assert c.parent.endswith("pulumi:pulumi:Stack::openstack-on-aws-dev")


def test_subnets_share_the_zone_and_route_to_the_internet_gateway(default):
    subnets = {r.name: r.inputs for r in default.of_type(T["subnet"])}
    assert {s["cidrBlock"] for s in subnets.values()} == {"10.42.1.0/24", "10.42.2.0/24"}
    assert {s["availabilityZone"] for s in subnets.values()} == {"us-east-1a"}
    assert not any(s["mapPublicIpOnLaunch"] for s in subnets.values())
    route = props(default, "dev-default-route")
    assert route["destinationCidrBlock"] == "0.0.0.0/0" and route["gatewayId"] == "dev-igw-id"
    assert {r.inputs["subnetId"] for r in default.of_type(T["rta"])} == {"dev-management-id", "dev-provider-id"}


def test_provider_eni_carries_the_floating_ips_with_source_dest_check_off(default):
    eni = props(default, "dev-provider-eni")
    assert eni["sourceDestCheck"] is False
    assert eni["privateIpListEnabled"] is True
    assert eni["privateIpLists"] == ["10.42.2.10", "10.42.2.11", "10.42.2.12"]
    assert eni["subnetId"] == "dev-provider-id" and eni["securityGroups"] == ["dev-provider-sg-id"]
    assert eni["tags"]["openstack-on-aws:role"] == "provider"
    mgmt = props(default, "dev-management-eni")
    assert mgmt["privateIps"] == ["10.42.1.10"] and mgmt["securityGroups"] == ["dev-management-sg-id"]
    assert mgmt.get("sourceDestCheck", True) is True  # the management ENI keeps AWS's check (default on)
    for name in ("dev-provider-eni", "dev-management-eni"):
        assert default.one(name).delete_before_replace


def test_instance_properties(default):
    inst = default.one("dev-instance")
    p = inst.inputs
    assert p["instanceType"] == "m8i.2xlarge"
    assert p["primaryNetworkInterface"] == {"networkInterfaceId": "dev-management-eni-id"}
    assert "networkInterfaces" not in p
    assert p["metadataOptions"]["httpTokens"] == "required"
    assert p["rootBlockDevice"] == {"volumeType": "gp3", "volumeSize": 200, "encrypted": True,
                                    "deleteOnTermination": True}
    assert p["cpuOptions"] == {"nestedVirtualization": "enabled"}
    assert p["ami"] == MOCK_AMI and inst.ignore_changes == ["ami"]
    assert p["keyName"] == "dev-key"
    # A replacement must free the pre-created ENI before the new instance takes it.
    assert inst.delete_before_replace


def test_provider_eni_is_attached_at_device_index_1(default):
    att = default.one("dev-provider-attachment")
    assert att.inputs == {"instanceId": "dev-instance-id", "networkInterfaceId": "dev-provider-eni-id",
                          "deviceIndex": 1}
    assert {"dev-instance", "dev-provider-eni"} <= default.depends_on("dev-provider-attachment")
    assert att.delete_before_replace


def test_elastic_ips_target_the_registered_private_ips_after_the_gateway(default):
    targets = {r.name: (r.inputs["networkInterface"], r.inputs["associateWithPrivateIp"])
               for r in default.of_type(T["eip"])}
    assert targets == {
        "dev-management-eip": ("dev-management-eni-id", "10.42.1.10"),
        "dev-provider-eip": ("dev-provider-eni-id", "10.42.2.10"),
        "dev-floating-0-eip": ("dev-provider-eni-id", "10.42.2.11"),
        "dev-floating-1-eip": ("dev-provider-eni-id", "10.42.2.12"),
    }
    for name in targets:
        assert props(default, name)["domain"] == "vpc"
        assert "dev-igw" in default.depends_on(name)


def test_security_group_rules_follow_the_settings(default):
    rules = {r.name: r.inputs for r in default.of_type(T["ingress"])}
    by_sg = {
        sg: sorted((i["ipProtocol"], i["fromPort"], i["cidrIpv4"]) for i in rules.values()
                   if i["securityGroupId"] == f"dev-{sg}-sg-id")
        for sg in ("management", "provider")
    }
    cidr = "203.0.113.0/24"
    assert by_sg["management"] == sorted(
        [("tcp", 22, cidr), ("tcp", 443, cidr), ("icmp", -1, cidr)])
    # Horizon, the APIs and noVNC only through the TLS front: port 80 and 6080 stay closed from outside.
    assert not [r for r in rules.values() if r["fromPort"] in (80, 6080)]
    assert by_sg["provider"] == sorted(
        [("tcp", 522, cidr), ("udp", 5353, "0.0.0.0/0"), ("icmp", -1, cidr), ("tcp", 22, cidr)])
    for r in rules.values():
        assert r["fromPort"] == r["toPort"]
    assert rules["dev-fwd-tcp-522-203-0-113-0-24"]["description"] == "forward to 192.168.100.10:22"
    egress = [r.inputs for r in default.of_type(T["egress"])]
    assert all(e["ipProtocol"] == "-1" and e["cidrIpv4"] == "0.0.0.0/0" for e in egress)
    assert {e["securityGroupId"] for e in egress} == {"dev-management-sg-id", "dev-provider-sg-id"}


def test_rules_scale_with_cidrs_and_forwards():
    result = run_program({"allowedCidrs": ["203.0.113.0/24", "198.51.100.7/32"], "floatingIpCount": 0,
                          "portForwards": [FWD_TCP]})
    rules = [r.inputs for r in result.of_type(T["ingress"])]
    # 2 CIDRs x (2 management ports + 2 pings) + 1 forward x 2 CIDRs; no SSH to floating IPs.
    assert len(rules) == 2 * 4 + 2
    assert not any(r["fromPort"] == 22 and r["securityGroupId"] == "dev-provider-sg-id" for r in rules)
    assert len(result.of_type(T["eip"])) == 2


def test_outputs_are_the_documented_contract(default):
    assert set(default.outputs) == CONTRACT
    out = default.outputs
    assert out["managementPublicIp"] == fake("ip", "dev-management-eip")
    assert out["sshCommand"] == f"ssh -i openstack-on-aws.key ubuntu@{out['managementPublicIp']}"
    assert out["providerPrivateIp"] == "10.42.2.10" and out["managementPrivateIp"] == "10.42.1.10"
    assert set(out["floatingIps"]) == {"10.42.2.11", "10.42.2.12"}
    assert len(set(out["floatingIps"].values()) | {out["providerPublicIp"]}) == 3
    assert out["providerMac"] == fake("mac", "dev-provider-eni") != fake("mac", "dev-management-eni")
    assert out["providerEniId"] == "dev-provider-eni-id"
    assert out["vpcId"] == "dev-vpc-id" and out["instanceId"] == "dev-instance-id"
    assert out["portForwards"] == [{k: v for k, v in f.items() if k != "sourceCidrs"} for f in (FWD_TCP, FWD_UDP)]


def test_nothing_secret_is_exported_in_plain(default):
    assert default.secret_outputs == {"sshPrivateKey", "adminPassword", "cloudsYaml"}
    assert default.outputs["sshPrivateKey"] == SECRET_PRIVATE_KEY
    plain = {k: v for k, v in default.outputs.items() if k not in default.secret_outputs}
    assert "PRIVATE KEY" not in repr(plain) and default.outputs["adminPassword"] not in repr(plain)


def test_a_user_key_pair_is_used_and_its_private_half_never_exported():
    result = run_program({"sshPublicKey": USER_KEY, "sshPrivateKey": USER_PRIVATE},
                         secret_keys=["sshPrivateKey"])
    # no login key generated (the Tls component's keys are not SSH keys)
    assert [r.name for r in result.of_type(T["tlskey"]) if r.name not in TLS_KEYS] == ["dev-host-key"]
    assert props(result, "dev-key")["publicKey"] == USER_KEY
    assert "sshPrivateKey" not in result.outputs
    assert "user-secret-key-material" not in repr(result.outputs)
    assert "user-secret-key-material" not in repr([r.inputs for r in result.of_type(T["keypair"])])


def test_pinned_ami_is_tracked_and_other_types_drop_nested_virtualization():
    result = run_program({"amiId": "ami-0123456789abcdef0", "instanceType": "m5.large"})
    inst = result.one("dev-instance")
    assert inst.inputs["ami"] == "ami-0123456789abcdef0" and inst.ignore_changes == []
    assert "cpuOptions" not in inst.inputs
    assert any("QEMU" in w for w in result.warnings)


def test_bad_config_fails_before_any_resource_is_registered():
    with pytest.raises(pulumi.RunError) as err:
        run_program({"vpcCidr": "10.42.0.0/33", "allowedCidrs": ["0.0.0.0/0"], "bogus": "1"})
    message = str(err.value)
    assert "openstack-on-aws:vpcCidr:" in message and "openstack-on-aws:bogus: unknown key" in message
    registered = pulumi.runtime.settings.SETTINGS.monitor.registered  # type: ignore[attr-defined]
    assert [r.type for r in registered if r.type != "pulumi:pulumi:Stack"] == []


def test_unknown_instance_type_fails_with_its_key():
    with pytest.raises(pulumi.RunError, match="openstack-on-aws:instanceType: AWS does not know 'm99.huge'"):
        run_program({"instanceType": "m99.huge"})


def test_too_many_floating_ips_for_the_instance_type_fails():
    with pytest.raises(pulumi.RunError, match="openstack-on-aws:floatingIpCount: t3.nano allows 2 IPv4"):
        run_program({"instanceType": "t3.nano", "floatingIpCount": 2})
