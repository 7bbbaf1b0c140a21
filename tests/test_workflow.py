"""The GitHub Actions workflow: actionlint finds nothing, and it keeps the promises of docs/ci.md.

actionlint comes from the Go module proxy (`make venv` installs it beside the venv's python). It
is skipped when missing on a workstation, and a failure when CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def actionlint() -> str:
    found = _tool("actionlint")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("actionlint is missing (make venv installs it with Go)")
        pytest.skip("actionlint is not installed (make venv installs it with Go)")
    return found


def _lint(actionlint: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    args = [actionlint, "-no-color"]
    shellcheck = _tool("shellcheck")
    args += ["-shellcheck", shellcheck] if shellcheck else []
    return subprocess.run([*args, *map(str, files)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_actionlint_passes(actionlint: str) -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    run = _lint(actionlint, WORKFLOWS)
    assert run.returncode == 0, run.stdout + run.stderr


def test_harness_self_check_actionlint_catches_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    """A self-check of the tool (not of the project): actionlint, run as above, does fail on a
    broken workflow, so test_actionlint_passes is not passing for want of looking."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nonexistent_context_key }}\n        shell: bash\n"
        "      - uses: actions/checkout@v4\n        with:\n          not-an-input: 1\n"
    )
    run = _lint(actionlint, [broken])
    assert run.returncode != 0 and "not-an-input" in run.stdout, run.stdout


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(CI.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action + "@")]


def test_every_action_is_pinned_to_a_commit() -> None:
    text = CI.read_text()
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for ref, comment in uses:
        assert PINNED.match(ref), ref
        assert re.search(r"# v\d+\.\d+\.\d+", comment), f"{ref}: no version comment"


def test_pull_requests_get_tests_and_a_policy_checked_preview_comment() -> None:
    wf = _workflow()
    assert "pull_request" in wf["on"]
    jobs = wf["jobs"]
    assert any("make test" in s.get("run", "") for s in jobs["test"]["steps"])
    preview = jobs["preview"]
    assert preview["needs"] == "test" and "pull_request" in preview["if"]
    assert preview["permissions"]["id-token"] == "write"
    assert preview["permissions"]["pull-requests"] == "write"
    [pulumi] = _steps(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policy"
    assert "stack-name" in pulumi["with"]


def test_main_deploys_behind_an_environment() -> None:
    wf = _workflow()
    assert wf["on"]["push"]["branches"] == ["main"]
    up = wf["jobs"]["up"]
    assert "environment" in up and "refs/heads/main" in up["if"] and up["needs"] == "test"
    [pulumi] = _steps(up, "pulumi/actions")
    assert pulumi["with"]["command"] == "up" and pulumi["with"]["policyPacks"] == "policy"


def test_aws_credentials_come_from_oidc_only() -> None:
    wf = _workflow()
    assert wf["permissions"] == {"contents": "read"}  # id-token only where a job asks for it
    for name in ("preview", "up"):
        [aws] = _steps(wf["jobs"][name], "aws-actions/configure-aws-credentials")
        assert aws["with"]["role-to-assume"].startswith("${{ vars.")
        assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(aws["with"])
    text = CI.read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
