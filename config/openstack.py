"""Section "OpenStack": DevStack installed by the steps (default), or an OpenStack already on the
host (`openstack: {install: existing, cloud: ..., ...}`) that the steps only configure.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr

from config.base import Model, key
from config.checks import is_dns_name

NAME = r"^[A-Za-z0-9_.-]{1,64}$"
# What DevStack's own set-up fixes (components' local.conf); refused with `install: devstack`.
EXISTING_ONLY = ("cloud", "cloudsYaml", "physicalNetwork", "externalBridge")
# Keys of the DevStack install, refused with `install: existing`.
DEVSTACK_KEYS = ("openstackBranch", "adminPassword", "smokeTest", "publicDnsName")
DEVSTACK_CLOUD = "devstack-admin"
DEVSTACK_CLOUDS_YAML = "/etc/openstack/clouds.yaml"


class OpenStackSection(Model):
    """The `openstack` key: how OpenStack gets on the host, and which cloud objects the steps use."""

    install: Literal["devstack", "existing"] = Field(
        "devstack", description="`devstack`: the steps install it; `existing`: Neutron (ML2/OVS + L3 agent) is there."
    )
    cloud: str | None = Field(None, pattern=NAME, description="existing: the admin cloud's name in clouds.yaml.")
    clouds_yaml: str | None = Field(
        None, pattern=r"^/[A-Za-z0-9_./-]{1,255}$", description="existing: clouds.yaml's path on the host."
    )
    external_network: str = Field(
        "public", pattern=NAME, description="External network: used if it exists, else created."
    )
    router: str = Field("router1", pattern=NAME, description="Router: used if it exists, else created.")
    physical_network: str = Field(
        "public", pattern=NAME, description="existing: physnet of a created external network."
    )
    external_bridge: str = Field(
        "br-ex", pattern=r"^[A-Za-z0-9_.-]{1,15}$", description="existing: the OVS bridge on the provider NIC."
    )

    @property
    def existing(self) -> bool:
        return self.install == "existing"

    @property
    def cloud_name(self) -> str:
        return self.cloud or DEVSTACK_CLOUD

    @property
    def clouds_yaml_path(self) -> str:
        return self.clouds_yaml or DEVSTACK_CLOUDS_YAML


class OpenStackSettings(Model):
    admin_password: SecretStr | None = Field(
        None,
        min_length=12,
        max_length=128,
        description="Secret. OpenStack admin (and service) password, 12-128 of A-Z a-z 0-9 _ - "
        "(DevStack writes it unquoted into URLs and config files); default: generated.",
    )
    openstack_branch: str = Field(
        "stable/2026.1",
        pattern=r"^(master|stable/20[0-9]{2}\.[12])$",
        description="DevStack branch: `stable/<year>.<1|2>` or `master`.",
    )
    smoke_test: bool = Field(
        True, description="Run the `smoke` step at the end of `up` (DevStack only: it boots DevStack's CirrOS)."
    )
    public_dns_name: str | None = Field(
        None,
        description="DevStack only: a DNS name of the public address (the management Elastic IP): "
        "in the TLS certificate and, instead of the address, in the public URLs and outputs.",
    )
    openstack: OpenStackSection = Field(
        default_factory=lambda: OpenStackSection.model_validate({}), description="How OpenStack is there."
    )

    def openstack_problems(self, fields_set: set[str], existing_host: bool) -> list[str]:
        """The admin password's charset; each install mode's own keys, and nothing of the other's."""
        problems: list[str] = []
        if self.admin_password is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]+", self.admin_password.get_secret_value()
        ):
            problems.append(f"{key('adminPassword')}: use only A-Z a-z 0-9 _ - (DevStack does not quote it)")
        if self.public_dns_name is not None and not is_dns_name(self.public_dns_name):
            problems.append(
                f"{key('publicDnsName')}: {self.public_dns_name!r} is not a DNS name "
                "(labels of letters, digits and '-', at least two, not an IP address)"
            )
        section = self.openstack
        given = {type(section).model_fields[n].alias or n for n in section.model_fields_set}
        at = f"{key('openstack')}."
        if section.existing:
            problems += [
                f"{key(k)}: DevStack only: with openstack.install existing the steps install nothing; remove it"
                for k in DEVSTACK_KEYS
                if k in fields_set
            ]
            if section.cloud is None:
                problems.append(f"{at}cloud: required with install existing: the admin cloud's name in clouds.yaml")
            if not existing_host:
                problems.append(
                    f"{at}install: existing needs an existing machine (host.kind: existing); "
                    "the EC2 host this program creates has no OpenStack"
                )
        else:
            problems += [
                f"{at}{k}: only with install existing (DevStack's set-up fixes it)" for k in EXISTING_ONLY if k in given
            ]
        return problems
