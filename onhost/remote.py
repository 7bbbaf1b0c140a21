"""How a remote step's script reaches the host: the exact command text Pulumi sends.

A step is `onhost/steps/<step>.sh` (a row of the step table, onhost/chain.py) with `apply` /
`remove` (and maybe more) as its first argument. Its parameters are `KEY=value` lines on stdin,
never in the command line (pulumi-command prints the whole command when it fails). The command
installs `lib.sh` and the step script under `prefix` on the host, then runs the script with sudo;
the script keeps what it needs for `remove` and for re-applying at boot under
`$OOA_STATE/<step>/` (default /var/lib/openstack-on-aws).

The same `command()` text is what the lab runs over SSH and what `make render` writes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

STEPS_DIR = Path(__file__).parent / "steps"
REMOTE_PREFIX = "/usr/local/lib/openstack-on-aws"
REMOTE_STATE = "/var/lib/openstack-on-aws"
_EOF = "OPENSTACK_ON_AWS_EOF"
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SETTING = re.compile(r"OOA_[A-Z0-9_]+=[A-Za-z0-9_.-]+")


def script_path(step: str) -> Path:
    return STEPS_DIR / f"{step}.sh"


def _upload(name: str, text: str, prefix: str) -> str:
    if any(line == _EOF for line in text.splitlines()):
        raise ValueError(f"{name} contains the line {_EOF}")
    return f"sudo -n tee {prefix}/{name} >/dev/null <<'{_EOF}'\n{text}{_EOF}\n"


def command(
    step: str, action: str, prefix: str = REMOTE_PREFIX, state: str = REMOTE_STATE, env: Mapping[str, str] | None = None
) -> str:
    """The shell command that installs the step's script on the host and runs `<step>.sh <action>`.

    Parameters are read by the script from the command's stdin (see `params()`); the script keeps
    its state (saved parameters, what `remove` must undo) under `state`/<step>/. `env`: more
    `OOA_…` settings for the script (tests: how long a step waits, e.g. OOA_ROUTER_WAIT).
    """
    script = script_path(step).read_text()
    lib = (STEPS_DIR / "lib.sh").read_text()
    settings = "".join(f" {k}={v}" for k, v in (env or {}).items())
    if not all(_SETTING.fullmatch(word) for word in settings.split()):
        raise ValueError(f"env must be OOA_NAME=word settings: {env!r}")
    return (
        "set -euo pipefail\n"
        f"sudo -n install -d -m 0755 {prefix}\n"
        + _upload("lib.sh", lib, prefix)
        + _upload(f"{step}.sh", script, prefix)
        + f"sudo -n chmod 0755 {prefix}/{step}.sh\n"
        f"exec sudo -n OOA_STATE={state}{settings} {prefix}/{step}.sh {action}\n"
    )


def params(values: Mapping[str, object]) -> str:
    """`KEY=value` lines, one per parameter, for a step's stdin."""
    lines = []
    for key, value in values.items():
        text = str(value)
        if not _KEY.fullmatch(key):  # not match(): `$` also matches before a final newline
            raise ValueError(f"parameter name {key!r} must match {_KEY.pattern}")
        if "\n" in text or "\r" in text:
            raise ValueError(f"parameter {key} must be one line")
        lines.append(f"{key}={text}\n")
    return "".join(lines)
