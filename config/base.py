"""What every settings section shares: the config namespace, key naming, the error type, the base model."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

NAMESPACE = "openstack-on-aws"
REGION_KEY = "aws:region"
# Keys whose values must never be echoed in an error message.
SECRET_KEYS = {"sshPrivateKey", "adminPassword"}

Port = Annotated[int, Field(ge=1, le=65535)]


class SettingsError(ValueError):
    """Bad stack configuration; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class Model(BaseModel):
    """Frozen, unknown keys refused, camelCase aliases (the config keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


def key(alias: str) -> str:
    """The full config key of a top-level alias (`vpcCidr` -> `openstack-on-aws:vpcCidr`)."""
    return REGION_KEY if alias == "region" else f"{NAMESPACE}:{alias}"
