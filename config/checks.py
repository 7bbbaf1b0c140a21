"""Checks that refuse at preview what AWS (or the engine) would refuse half-way through `up`.

Pure functions over plain values, each returning problem lines that name the config key to fix
(`<key>[<index>]: ...`); `config/settings.py` calls them from its cross-field validation, so one
`SettingsError` still lists every problem before any resource is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# AWS defaults (Service Quotas, "Amazon VPC" and "Amazon EC2"): adjustable on request.
DEFAULT_SG_INBOUND_RULE_QUOTA = 60  # inbound rules per security group (IPv4 and IPv6 counted apart)
MAX_SG_INBOUND_RULE_QUOTA = 1000  # rules per group x groups per ENI may not pass 1,000
DEFAULT_EIP_QUOTA = 5  # Elastic IPs per region


def duplicates(
    items: Sequence[T],
    key: str,
    identity: Callable[[T], Hashable] | None = None,
    show: Callable[[T], str] = str,
) -> list[str]:
    """One problem per item equal (by `identity`, default the item) to an earlier one of the list.

    `key` is the list's full config key (e.g. `openstack-on-aws:allowedCidrs`); the message names
    the later index and the earlier one: `<key>[2]: 203.0.113.0/24 is listed twice (also at [0])`.
    """
    ident = identity or (lambda item: item)  # type: ignore[return-value]
    first: dict[Hashable, int] = {}
    problems = []
    for i, item in enumerate(items):
        slot = ident(item)
        if slot in first:
            problems.append(f"{key}[{i}]: {show(item)} is listed twice (also at [{first[slot]}])")
        else:
            first[slot] = i
    return problems


def rule_quota_problems(rules_per_group: Mapping[str, int], quota: int, quota_key: str, causes: str) -> list[str]:
    """A problem per security group whose inbound rules exceed `quota`.

    `rules_per_group` maps a group's role (`management`, `provider`) to the inbound rules the stack
    registers on it; `causes` names the keys that make those rules, for the message.
    """
    return [
        f"{quota_key}: the {group} security group needs {count} inbound rules; the quota is {quota} "
        f"per group. Use fewer rules ({causes}: contiguous public ports with the same protocol and "
        f"sources share one rule) or have AWS raise the quota and set {quota_key}"
        for group, count in sorted(rules_per_group.items())
        if count > quota
    ]


def eip_quota_problems(needed: int, quota: int, quota_key: str, count_key: str) -> list[str]:
    """A problem when the stack needs more Elastic IPs than the region's quota allows."""
    if needed <= quota:
        return []
    return [
        f"{count_key}: the stack needs {needed} Elastic IPs (management, provider, one per floating IP "
        f"and one per compute node); the quota is {quota} per region. Lower {count_key}, or have AWS raise the "
        f"quota and set {quota_key} (Elastic IPs that other stacks hold in the region count too)"
    ]


def is_dns_name(name: str) -> bool:
    """A DNS name a certificate can carry: at least two labels of letters, digits and '-' (not at
    either end), at most 63 characters each and 253 in all, the last not all digits (an IP address)."""
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
        for label in labels
    ) and not labels[-1].isdigit()


def indexed(key: str, i: int, field: str | None = None) -> str:
    """`key[i]` or `key[i].field`: how a list element's key is named in messages."""
    return f"{key}[{i}]" + (f".{field}" if field else "")


def nested_duplicates(
    items: Sequence[Any], key: str, field: str, values: Callable[[Any], Sequence[Any] | None]
) -> list[str]:
    """Duplicates inside a list field of each element: `key[i].field[j]`."""
    problems: list[str] = []
    for i, item in enumerate(items):
        inner = values(item)
        if inner:
            problems += duplicates(inner, indexed(key, i, field))
    return problems
