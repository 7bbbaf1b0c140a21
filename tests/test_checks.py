"""Duplicates, AWS quotas at preview, merged forward rules, floating-IP ingress.

The pure functions (config/checks.py, config/ingress.py) on their own, then through the settings
model (messages name the key and index), then the whole program under mocks (rules registered).
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pulumi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import checks
from config.ingress import forward_ranges, plan_ingress
from config.settings import FloatingIpIngress, PortForward
from tests.harness import run_program
from tests.test_settings import NS, fwd, load, problems

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
NET = IPv4Network


def forwards(ports, proto="tcp", sources=None):
    return [
        {**fwd(port=p, proto=proto, ip=f"192.168.100.{10 + i % 200}"), **({"sourceCidrs": sources} if sources else {})}
        for i, p in enumerate(ports)
    ]


# ---- config/checks.py -----------------------------------------------------------------------


def test_duplicates_name_the_key_and_both_indexes():
    assert checks.duplicates(["a", "b", "a", "a"], "k") == [
        "k[2]: a is listed twice (also at [0])",
        "k[3]: a is listed twice (also at [0])",
    ]
    assert checks.duplicates([1, 2, 3], "k") == []
    assert checks.duplicates([(1, "x"), (1, "y")], "k", identity=lambda t: t[0], show=lambda t: t[1]) == [
        "k[1]: y is listed twice (also at [0])"
    ]


def test_rule_quota_problem_says_count_quota_and_key():
    assert checks.rule_quota_problems({"provider": 60, "management": 5}, 60, "ns:q", "x") == []
    (found,) = checks.rule_quota_problems({"provider": 61, "management": 5}, 60, "ns:q", "portForwards")
    assert found.startswith("ns:q: the provider security group needs 61 inbound rules; the quota is 60")
    assert "set ns:q" in found and "portForwards" in found


def test_eip_quota_problem_says_count_quota_and_keys():
    assert checks.eip_quota_problems(5, 5, "ns:q", "ns:c") == []
    (found,) = checks.eip_quota_problems(6, 5, "ns:q", "ns:c")
    assert found.startswith("ns:c: the stack needs 6 Elastic IPs") and "quota is 5" in found and "ns:q" in found


# ---- every list refuses duplicates, by key and index ---------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"allowedCidrs": ["203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"]},
         f"{NS}:allowedCidrs[2]: 203.0.113.0/24 is listed twice (also at [0])"),
        # the same network written two ways is the same rule for AWS
        ({"allowedCidrs": ["203.0.113.7", "203.0.113.7/32"]},
         f"{NS}:allowedCidrs[1]: 203.0.113.7/32 is listed twice (also at [0])"),
        ({"portForwards": [{**fwd(), "sourceCidrs": ["0.0.0.0/0", "10.9.0.0/16", "0.0.0.0/0"]}]},
         f"{NS}:portForwards[0].sourceCidrs[2]: 0.0.0.0/0 is listed twice (also at [0])"),
        ({"portForwards": [fwd(), fwd()]},
         f"{NS}:portForwards[1].publicPort: tcp/522 is already forwarded by portForwards[0]"),
        ({"floatingIpIngress": [{"protocol": "tcp", "port": 80}, {"protocol": "udp", "port": 80},
                                {"protocol": "tcp", "port": 80, "sourceCidrs": ["0.0.0.0/0"]}]},
         f"{NS}:floatingIpIngress[2]: tcp/80 is listed twice (also at [0])"),
        ({"floatingIpIngress": [{"protocol": "icmp", "sourceCidrs": ["10.1.0.0/16", "10.1.0.0/16"]}]},
         f"{NS}:floatingIpIngress[0].sourceCidrs[1]: 10.1.0.0/16 is listed twice (also at [0])"),
    ],
)
def test_each_list_refuses_duplicates_by_key_and_index(keys, expected):
    found = problems(**keys)
    assert expected in found, found


def test_duplicate_cidrs_fail_before_any_resource_is_registered():
    with pytest.raises(pulumi.RunError, match=r"openstack-on-aws:allowedCidrs\[1\]: 203.0.113.0/24 is listed twice"):
        run_program({"allowedCidrs": ["203.0.113.0/24", "203.0.113.0/24"]})
    registered = pulumi.runtime.settings.SETTINGS.monitor.registered  # type: ignore[attr-defined]
    assert [r.type for r in registered if r.type != "pulumi:pulumi:Stack"] == []


# ---- quotas at preview -----------------------------------------------------------------------


def test_too_many_rules_for_the_quota_are_refused_with_count_quota_and_key():
    # 61 scattered forwards from one CIDR + ping + floating-IP SSH = 63 provider rules > 60.
    (found,) = problems(portForwards=forwards(range(1000, 1122, 2)))
    assert found.startswith(f"{NS}:securityGroupRuleQuota: the provider security group needs 63 inbound rules; "
                            "the quota is 60 per group")
    assert load(portForwards=forwards(range(1000, 1122, 2)), securityGroupRuleQuota=63).port_forwards


def test_management_rules_count_too():
    cidrs = [f"10.9.{i}.0/24" for i in range(21)]  # 21 x (SSH, HTTPS + ping) = 63 management rules
    found = problems(allowedCidrs=cidrs, floatingIpCount=0)
    assert any(p.startswith(f"{NS}:securityGroupRuleQuota: the management security group needs 63") for p in found)


@pytest.mark.parametrize(("keys", "expected"), [
    ({"securityGroupRuleQuota": 0}, f"{NS}:securityGroupRuleQuota: Input should be greater than or equal to 1"),
    ({"securityGroupRuleQuota": 1001}, f"{NS}:securityGroupRuleQuota: Input should be less than or equal to 1000"),
    ({"elasticIpQuota": "many"}, f"{NS}:elasticIpQuota: Input should be a valid integer"),
])
def test_quota_keys_are_validated(keys, expected):
    found = problems(**keys)
    assert any(p.startswith(expected) for p in found), found


def test_a_thousand_contiguous_forwards_from_one_cidr_fit_the_default_quota():
    s = load(portForwards=forwards(range(20000, 21000)))
    plan = plan_ingress(s.allowed_cidrs, s.port_forwards, s.floating_ip_rules)
    # ping + floating SSH + one range rule
    assert [(r.protocol, r.from_port, r.to_port) for r in plan["provider"]] == [
        ("icmp", -1, -1), ("tcp", 22, 22), ("tcp", 20000, 20999)]


# ---- forwards merged into port ranges ----------------------------------------------------------


def pf(port, proto="tcp", sources=None):
    return PortForward(protocol=proto, public_port=port, tenant_ip="192.168.100.10", tenant_port=22,
                       source_cidrs=sources)


def test_contiguous_ports_with_the_same_protocol_and_sources_merge():
    a, b = NET("203.0.113.0/24"), NET("198.51.100.0/24")
    ranges = forward_ranges(
        [pf(102), pf(100), pf(101), pf(104), pf(103, "udp"), pf(105, sources=[b, a]), pf(106, sources=[a, b])],
        [a],
    )
    got = [(r.protocol, r.from_port, r.to_port, r.sources) for r in ranges]
    assert got == [
        ("tcp", 105, 106, (b, a)),  # sources compared as a set, in any order
        ("tcp", 100, 102, (a,)),
        ("tcp", 104, 104, (a,)),  # 103 is udp: a gap for tcp
        ("udp", 103, 103, (a,)),
    ]
    assert ranges[1].description() == "forward to 3 tenant ports: tcp/100-102"
    assert ranges[2].description() == "forward to 192.168.100.10:22"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tcp", "udp"]), st.integers(1, 60), st.sampled_from([0, 1, 2])),
                max_size=40, unique_by=lambda t: (t[0], t[1])))
def test_ranges_cover_exactly_the_forwards_and_leave_nothing_mergeable(specs):
    pool = [[NET("10.0.0.0/8")], [NET("10.0.0.0/8"), NET("172.16.0.0/12")], None]
    fwds = [pf(port, proto, pool[s]) for proto, port, s in specs]
    default = [NET("10.0.0.0/8")]
    ranges = forward_ranges(fwds, default)
    covered = {(r.protocol, p, r.sources) for r in ranges for p in range(r.from_port, r.to_port + 1)}
    wanted = {(f.protocol, f.public_port, tuple(sorted(set(f.source_cidrs or default)))) for f in fwds}
    assert covered == wanted
    assert sum(len(r.forwards) for r in ranges) == len(fwds)
    ends = {(r.protocol, r.sources, r.to_port) for r in ranges}
    assert not any((r.protocol, r.sources, r.from_port - 1) in ends for r in ranges)


def test_identical_rules_are_planned_once():
    cidr = NET("203.0.113.0/24")
    plan = plan_ingress([cidr], [pf(22)], [FloatingIpIngress(protocol="tcp", port=22)])
    tcp22 = [r for r in plan["provider"] if (r.protocol, r.from_port) == ("tcp", 22)]
    assert len(tcp22) == 1


def test_program_registers_one_rule_per_range_and_source():
    result = run_program({"portForwards": forwards(range(1000, 1100)) + forwards([2000], "udp", ["0.0.0.0/0"]),
                          "floatingIpCount": 0})
    rules = {r.name: r.inputs for r in result.of_type(INGRESS) if r.inputs["securityGroupId"] == "dev-provider-sg-id"}
    assert set(rules) == {"dev-provider-icmp-203-0-113-0-24", "dev-fwd-tcp-1000-1099-203-0-113-0-24",
                          "dev-fwd-udp-2000-0-0-0-0-0"}
    rng = rules["dev-fwd-tcp-1000-1099-203-0-113-0-24"]
    assert (rng["fromPort"], rng["toPort"]) == (1000, 1099)
    assert rng["description"] == "forward to 100 tenant ports: tcp/1000-1099"


# ---- floating-IP ingress -------------------------------------------------------------------------


def provider_rules(config):
    result = run_program(config)
    return sorted((r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"], r.inputs["cidrIpv4"])
                  for r in result.of_type(INGRESS) if r.inputs["securityGroupId"] == "dev-provider-sg-id")


def test_floating_ip_ingress_is_configurable():
    cidr = "203.0.113.0/24"
    assert provider_rules({}) == [("icmp", -1, -1, cidr), ("tcp", 22, 22, cidr)]  # default: SSH, as before
    got = provider_rules({"floatingIpIngress": [
        {"protocol": "tcp", "port": 80, "sourceCidrs": ["0.0.0.0/0"]},
        {"protocol": "tcp", "port": 8000, "toPort": 8100},
        {"protocol": "udp", "port": 53},
        {"protocol": "icmp", "sourceCidrs": ["0.0.0.0/0"]},
    ]})
    assert got == sorted([("icmp", -1, -1, cidr), ("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 8000, 8100, cidr),
                          ("udp", 53, 53, cidr), ("icmp", -1, -1, "0.0.0.0/0")])
    assert provider_rules({"floatingIpIngress": []}) == [("icmp", -1, -1, cidr)]  # nothing but ping
    assert provider_rules({"floatingIpCount": 0, "floatingIpIngress": [{"port": 80}]}) == [("icmp", -1, -1, cidr)]


def test_floating_ip_ingress_without_floating_ips_warns():
    warnings = load(floatingIpCount=0, floatingIpIngress=[{"port": 80}]).warnings()
    assert any(w.startswith(f"{NS}:floatingIpIngress: ignored") for w in warnings)


@pytest.mark.parametrize(("rule", "expected"), [
    ({"protocol": "icmp", "port": 8}, f"{NS}:floatingIpIngress[0].port: icmp takes no port"),
    ({"protocol": "udp"}, f"{NS}:floatingIpIngress[0].port: required for udp"),
    ({"port": 90, "toPort": 80}, f"{NS}:floatingIpIngress[0].toPort: 80 is below port 90"),
    ({"protocol": "gre"}, f"{NS}:floatingIpIngress[0].protocol: Input should be 'tcp', 'udp' or 'icmp'"),
    ({"port": 22, "from": "x"}, f"{NS}:floatingIpIngress[0].from: unknown key"),
    ({"port": 70000}, f"{NS}:floatingIpIngress[0].port: Input should be less than or equal to 65535"),
])
def test_bad_floating_ip_ingress_names_its_key(rule, expected):
    found = problems(floatingIpIngress=[rule])
    assert any(p.startswith(expected) for p in found), found


def test_rule_names_are_unique_and_keep_the_ssh_rules_old_name():
    a, b = NET("203.0.113.0/24"), NET("10.1.0.0/16")
    plan = plan_ingress([a], [pf(22, sources=[b]), pf(23, sources=[b]), pf(53, "udp")], [
        FloatingIpIngress(protocol="tcp", port=22), FloatingIpIngress(protocol="icmp", source_cidrs=[b]),
        FloatingIpIngress(protocol="udp", port=500, to_port=510)])
    names = [r.suffix for rules in plan.values() for r in rules]
    assert len(names) == len(set(names))
    assert {"provider-22-203-0-113-0-24", "provider-floating-icmp-10-1-0-0-16",
            "provider-floating-udp-500-510-203-0-113-0-24", "fwd-tcp-22-23-10-1-0-0-16",
            "fwd-udp-53-203-0-113-0-24"} <= set(names)


def test_the_quota_counts_exactly_the_rules_the_program_registers():
    config = {
        "allowedCidrs": ["203.0.113.0/24", "198.51.100.7/32"],
        "portForwards": forwards([*range(1000, 1010), 1020, 1022]) + forwards([53, 54], "udp", ["0.0.0.0/0"])
        + forwards([22], sources=["203.0.113.0/24"]),
        "floatingIpCount": 2,
        "floatingIpIngress": [{"protocol": "tcp", "port": 22}, {"protocol": "icmp", "sourceCidrs": ["0.0.0.0/0"]}],
    }
    s = load(**config)
    plan = plan_ingress(s.allowed_cidrs, s.port_forwards, s.floating_ip_rules)
    result = run_program(config)
    rules = result.of_type(INGRESS)
    registered = {group: len([r for r in rules if r.inputs["securityGroupId"] == f"dev-{group}-sg-id"])
                  for group in ("management", "provider")}
    assert registered == {group: len(rules) for group, rules in plan.items()}
    # and one rule fewer than the plan's count is refused with exactly that count
    found = problems(**config, securityGroupRuleQuota=registered["provider"] - 1)
    assert any(f"the provider security group needs {registered['provider']} inbound rules" in p for p in found)
