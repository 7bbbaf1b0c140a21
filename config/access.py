"""Section "access": who may reach the host through the AWS security groups (AWS host only)."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Annotated

from pydantic import Field

from config.base import Model, key


class AccessSettings(Model):
    allowed_cidrs: Annotated[list[IPv4Network], Field(min_length=1)] | None = Field(
        None,
        description="Who may reach SSH, the OpenStack APIs and Horizon. Required on AWS; never 0.0.0.0/0.",
    )

    def access_problems(self, aws: bool) -> list[str]:
        """allowedCidrs: required for an AWS host, and never the whole world."""
        if self.allowed_cidrs is None:
            return [f"{key('allowedCidrs')}: required"] if aws else []
        return [
            f"{key('allowedCidrs')}[{i}]: {cidr} opens SSH and the APIs to the world; name your own networks"
            for i, cidr in enumerate(self.allowed_cidrs)
            if cidr.prefixlen == 0
        ]
