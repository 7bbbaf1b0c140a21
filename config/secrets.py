"""Secret settings read through `pulumi.Config`, so they arrive as Pulumi secrets (never re-wrapped)."""

from __future__ import annotations

import pulumi

from config.base import NAMESPACE


def secret(name: str) -> pulumi.Output[str] | None:
    """The secret config value `openstack-on-aws:<name>` as a secret Output; None when unset."""
    return pulumi.Config(NAMESPACE).get_secret(name)


def required_secret(name: str) -> pulumi.Output[str]:
    """The secret config value `openstack-on-aws:<name>`, which the validated settings require."""
    return pulumi.Config(NAMESPACE).require_secret(name)
