"""README.md stays true: every config key is documented, and "Using the cloud" runs as written."""

from __future__ import annotations

import re

from config.settings import Settings
from tests.harness import ROOT

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_every_config_key_is_in_the_configuration_table():
    table = section("Configuration")
    for name, field in Settings.model_fields.items():
        key = field.alias or name
        if name == "region":
            key = "aws:region"
        assert f"`{key}`" in table, key


def test_using_the_cloud_spells_options_out_and_finds_the_admin_projects_default_group():
    block = section("Using the cloud")
    commands = [line for line in block.splitlines() if line.startswith(("openstack ", "SG=", "ssh ", "sshuttle"))]
    assert commands
    # `--proto` works only as an abbreviation argparse may stop accepting; the option is `--protocol`.
    assert not any(re.search(r"--proto(\s|=)", line) for line in commands)
    rule = next(line for line in commands if "security group rule create" in line)
    assert "--protocol tcp" in rule
    # The admin sees every project's "default" group: the name alone is ambiguous.
    assert not re.search(r"\sdefault(\s|$)", rule.split("#")[0])
    lookup = next(line for line in commands if line.startswith("SG="))
    assert "--project admin" in lookup and '$2 == "default"' in lookup


def test_every_stack_output_is_documented():
    outputs = section("Outputs")
    program = (ROOT / "__main__.py").read_text()
    for name in re.findall(r'pulumi\.export\(\s*"(\w+)"', program):
        assert f"`{name}`" in outputs, name
