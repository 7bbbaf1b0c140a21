"""Static checks: ruff on the whole repository, mypy on config/ components/ onhost/ and the policies,
shellcheck on every shell script (each *.sh, and each file with a sh/bash shebang, such as
.ci/run). The tools are pinned in requirements-dev.txt, so a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SKIP_DIRS = {".git", ".venv", ".lab-venv", "venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


SHELL_SHEBANG = re.compile(rb"^#!\s*(?:/usr)?/bin/(?:env\s+)?(?:ba|da)?sh\b")


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    with path.open("rb") as f:
        return bool(SHELL_SHEBANG.match(f.read(64)))


def shell_scripts() -> list[Path]:
    """Every shell script of the repository: each *.sh, and each file with a sh/bash shebang."""
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        found += [p for f in files if (p := Path(top) / f).is_file() and _is_shell_script(p)]
    return sorted(found)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff() -> None:
    run = _run(BIN / "ruff", "check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy() -> None:
    run = _run(sys.executable, "-m", "mypy", "config", "components", "onhost", "policy/policies.py")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_script_list_is_complete() -> None:
    """The list shellcheck gets is found, not written down: .ci/run (no suffix, a bash shebang)
    and the step scripts are in it, and nothing that is not a shell script."""
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    steps = {f"onhost/steps/{s}.sh" for s in ("lib", "prepare-host", "install-openstack",
                                               "external-gateway", "gateway-mac", "port-forwards")}
    assert {".ci/run", *steps} <= names
    assert not {n for n in names if n.endswith((".py", ".yml", ".yaml", ".md", ".txt"))}


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck(script: Path) -> None:
    run = _run(BIN / "shellcheck", "-x", script.relative_to(ROOT))
    assert run.returncode == 0, run.stdout + run.stderr
