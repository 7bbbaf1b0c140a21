"""Static checks: ruff on the whole repository, mypy on config/ components/ and the policies,
shellcheck on every shell script (each *.sh and .ci/run). The tools are pinned in
requirements-dev.txt, so a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SKIP_DIRS = {".git", ".venv", ".lab-venv", "venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def shell_scripts() -> list[Path]:
    found = [
        p for p in ROOT.rglob("*.sh")
        if not SKIP_DIRS & set(p.relative_to(ROOT).parts)
    ]
    return sorted(found) + [ROOT / ".ci" / "run"]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff() -> None:
    run = _run(BIN / "ruff", "check", "--no-cache", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy() -> None:
    run = _run(sys.executable, "-m", "mypy", "config", "components", "policy/policies.py")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_script_list_is_complete() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {".ci/run", "components/steps/lib.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck(script: Path) -> None:
    run = _run(BIN / "shellcheck", "-x", script.relative_to(ROOT))
    assert run.returncode == 0, run.stdout + run.stderr
