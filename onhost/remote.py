"""How a remote step's script reaches the host: the exact command texts Pulumi sends.

A step is `onhost/steps/<step>.sh` (a row of the step table, onhost/chain.py) with `apply` /
`remove` (and maybe more) as its first argument. Its parameters are `KEY=value` lines on stdin,
never in the command line (pulumi-command prints the whole command when it fails).

The first row of each host's table, `scripts` (UPLOAD), installs `lib.sh` and the scripts of the
steps that run there under `prefix`: its command is one constant line (`UPLOAD_COMMAND`) and its
stdin the script that installs them (`upload()`, holding every script), so `pulumi preview --diff`
shows each change, and no size limit of one argument applies (sshd runs a command as the one
argument of `$SHELL -c`, which Linux caps at 128 KiB). Every other row's command is one short line that runs
the installed script with sudo (`command()`), so a failure's message shows the error, not the
script; the line ends with a hash of lib.sh and of the script, so that a change of either changes
the step's text and re-runs it (an update: apply again), and a change of one script re-runs only the
steps that call it. A script keeps what it needs for `remove` and for re-applying at boot under
`$OOA_STATE/<step>/` (default /var/lib/openstack-on-aws). The upload row's remove (`unload()`)
runs after every step's remove (they all depend on it) and takes the scripts and the empty state
folder away.

The same texts are what the lab runs over SSH and what `make render` writes out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

STEPS_DIR = Path(__file__).parent / "steps"
REMOTE_PREFIX = "/usr/local/lib/openstack-on-aws"
REMOTE_STATE = "/var/lib/openstack-on-aws"
UPLOAD = "scripts"
"""The name of the row that installs the scripts (the first row of each table)."""
UPLOAD_COMMAND = "exec bash -s"
"""The upload row's create/update text: bash runs `upload()`'s text, read from its stdin."""
_EOF = "OPENSTACK_ON_AWS_EOF"
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SETTING = re.compile(r"OOA_[A-Z0-9_]+=[A-Za-z0-9_.-]+")


def script_path(step: str) -> Path:
    return STEPS_DIR / f"{step}.sh"


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def command(
    step: str, action: str, prefix: str = REMOTE_PREFIX, state: str = REMOTE_STATE, env: Mapping[str, str] | None = None
) -> str:
    """The one line that runs the installed `<step>.sh <action>` (parameters on its stdin, see
    `params()`; its state under `state`/<step>/), with the hashes of what it runs as a comment.
    `env`: more `OOA_…` settings for the script (tests: how long a step waits, e.g. OOA_ROUTER_WAIT)."""
    settings = "".join(f" {k}={v}" for k, v in (env or {}).items())
    if not all(_SETTING.fullmatch(word) for word in settings.split()):
        raise ValueError(f"env must be OOA_NAME=word settings: {env!r}")
    return (
        f"exec sudo -n OOA_STATE={state}{settings} {prefix}/{step}.sh {action}"
        f" # lib.sh {_hash(STEPS_DIR / 'lib.sh')} {step}.sh {_hash(script_path(step))}"
    )


def upload(steps: Sequence[str], prefix: str = REMOTE_PREFIX) -> str:
    """The upload row's stdin, the script `UPLOAD_COMMAND` runs: lib.sh and each step's script under `prefix`.

    It is one brace group: bash parses it whole before it runs any of it, so a stream cut short
    runs nothing, and no command it runs can read the rest of the script from stdin. Each file is
    written beside its old version and renamed over it: a re-apply timer that is running the old
    one keeps reading it, the next run finds the new one whole. Scripts it no longer lists stay
    until its remove (a step that left the chain runs its remove from them).
    """
    files = {"lib.sh": STEPS_DIR / "lib.sh", **{f"{s}.sh": script_path(s) for s in steps}}
    names = list(files)
    text = f"set -euo pipefail\n{{\nsudo -n install -d -m 0755 {prefix}\n"
    for name, path in files.items():
        body = path.read_text()
        if any(line == _EOF for line in body.splitlines()):
            raise ValueError(f"{name} contains the line {_EOF}")
        text += f"sudo -n tee {prefix}/{name}.new >/dev/null <<'{_EOF}'\n{body}{_EOF}\n"
    text += "sudo -n chmod 0755" + "".join(f" {prefix}/{n}.new" for n in names) + "\n"
    return text + "".join(f"sudo -n mv -f {prefix}/{n}.new {prefix}/{n}\n" for n in names) + "}\n"


def unload(prefix: str = REMOTE_PREFIX, state: str = REMOTE_STATE) -> str:
    """The upload row's remove: the scripts and the state folder go once no step keeps state there.

    It runs after every step's remove; what a step still keeps (a remove that failed, or the steps
    of a replacement on the same machine) keeps the folders too: the scripts are what undoes it.
    """
    return (
        "set -euo pipefail\n"
        f"left=$(sudo -n ls -A {state} 2>/dev/null | tr '\\n' ' ') || left=\n"
        'if [ -n "$left" ]; then\n'
        f"  echo \"[{UPLOAD}] kept {prefix} and {state}: steps still keep state there: $left\" >&2\n"
        "  exit 0\n"
        "fi\n"
        f"sudo -n rm -rf {prefix}\n"
        f"if sudo -n test -d {state}; then sudo -n rmdir {state}; fi\n"
        f"echo '[{UPLOAD}] removed {prefix} and {state}' >&2\n"
    )


def texts(row: str, scripts: Sequence[str], prefix: str = REMOTE_PREFIX, state: str = REMOTE_STATE) -> tuple[str, str]:
    """A table row's (apply, remove) command text on a host whose steps are `scripts` (step names):
    the upload row installs them (`stdin()`) and finally removes them, any other row runs its own."""
    if row == UPLOAD:
        return UPLOAD_COMMAND, unload(prefix, state)
    return command(row, "apply", prefix, state), command(row, "remove", prefix, state)


def stdin(row: str, scripts: Sequence[str], values: Mapping[str, object], prefix: str = REMOTE_PREFIX) -> str:
    """A table row's stdin: the upload row's is `upload()` of `scripts`, any other's its parameters `values`."""
    return upload(scripts, prefix) if row == UPLOAD else params(values)


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
