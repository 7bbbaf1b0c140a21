"""Section "lifecycle": what becomes of the EC2 machines between deployments (AWS host only).

`parked` stops the controller and the compute nodes (and starts them again when false), `spot` runs
them as persistent spot instances that stop on interruption, `bakeImage` makes an image (AMI) of the
controller once the smoke step proved the cloud (docs/park-and-bake.md).

While a stack is parked its steps cannot run (SSH to a stopped machine), so its config is frozen:
`fingerprint` digests every key, the program records the digests of the last update that ran with
`parked: false` and `park_problems` names each key that differs from them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr

from config.base import Model, key

# The keys of this section (all AWS-only: an existing machine has nothing to stop or to image).
LIFECYCLE_KEYS = ("parked", "spot", "bakeImage")
# What may change while parked: keys that touch neither a machine nor a step.
PARK_FREE_KEYS = ("parked", "bakeImage", "elasticIpQuota", "securityGroupRuleQuota")
# An entry of the record besides the config keys: "yes" once an update ran the steps (unparked).
STEPS_RAN = "stepsRan"
# The digest of the step scripts' command text (components/host.py adds it): a new program version.
STEPS_TEXT = "steps"


class LifecycleSettings(Model):
    parked: bool = Field(
        False,
        description="Stop the instances (controller and compute nodes); false starts them again. While parked "
        "only parked, bakeImage and the quota keys may change.",
    )
    spot: bool = Field(
        False,
        description="Persistent spot instances that stop when AWS interrupts them; changing it replaces the instances.",
    )
    bake_image: bool = Field(
        False,
        description="An image (AMI) of the controller once the smoke step passed; output bakedImageId.",
    )

    def lifecycle_problems(self, smoke_test: bool, compute_nodes: int) -> list[str]:
        """The image is of a proven controller, and of a stack whose cloud is the controller alone."""
        problems: list[str] = []
        if self.bake_image and not smoke_test:
            problems.append(
                f"{key('bakeImage')}: needs {key('smokeTest')} true: the image is taken once the smoke step "
                "has proven the cloud"
            )
        if self.bake_image and compute_nodes:
            problems.append(
                f"{key('bakeImage')}: the image holds the controller only, and {key('computeNodes')}.count is "
                f"{compute_nodes}: its Nova would wait for nodes a stack launched from it does not have; use 0"
            )
        return problems

    def lifecycle_warnings(self, compute_nodes: int) -> list[str]:
        if not self.spot:
            return []
        nodes = f" and {compute_nodes} compute node{'s' if compute_nodes > 1 else ''}" if compute_nodes else ""
        machines = "the controller" + nodes + (" run" if compute_nodes else " runs")
        return [
            f"{key('spot')}: {machines} as persistent spot instances: AWS may stop them at any time (two "
            "minutes' notice) and the cloud is down, as if parked, until EC2 itself starts them again when it has "
            "capacity (an interrupted instance cannot be started by you). Disks, Elastic IPs and the cloud's state "
            "stay; stack.sh does not run again: the services start at boot and the re-apply timers restore the "
            "gateway MAC and the forwards. Switching spot on or off replaces the instances (every step runs again)."
        ]


def _plain(value: Any) -> Any:
    """JSON for what a settings dump holds besides JSON types (secrets digested with the rest)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def fingerprint(settings: Model) -> dict[str, str]:
    """Each config key's (full key) digest of its validated value, defaults included: a program
    whose defaults changed counts as a change too. The parking keys are left out."""
    dump = settings.model_dump(by_alias=True)
    return {
        key(alias): hashlib.sha256(json.dumps(value, sort_keys=True, default=_plain).encode()).hexdigest()[:16]
        for alias, value in dump.items()
        if alias not in PARK_FREE_KEYS
    }


def park_problems(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Why this update may not run while parked: the stack never ran its steps, or keys differ from
    the last update that did (`recorded`), each named."""
    if recorded.get(STEPS_RAN) != "yes":
        return [
            f"{key('parked')}: this stack has not run its steps with parked false yet (a new stack, or one "
            "deployed by a version without parking): deploy it with parked false first"
        ]
    names = sorted(k for k in {*recorded, *current} - {STEPS_RAN} if recorded.get(k) != current.get(k))
    if not names:
        return []
    shown = ", ".join("the steps' scripts (another version of this program)" if n == STEPS_TEXT else n for n in names)
    return [
        f"{key('parked')}: the stack is parked (its instances stopped) and these changed since it last ran: {shown}. "
        f"Applying them needs SSH to the stopped host: set parked false first (or undo the change); while parked "
        f"only {', '.join(PARK_FREE_KEYS)} may change"
    ]
