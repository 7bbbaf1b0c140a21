"""The openstack-on-aws policy pack: `pulumi preview --policy-pack policy` (see docs/ci.md).

The policies live in policies.py so that tests can import them without starting the pack's server.
"""

from policies import POLICIES, keep_secret_marks  # policy/ is sys.path[0] when the pack runs
from pulumi_policy import EnforcementLevel, PolicyPack

keep_secret_marks()

PolicyPack(
    name="openstack-on-aws",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
