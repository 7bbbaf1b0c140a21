"""The lab host's root filesystem cache (tests/lab/rootfs.sh): named by the script's own content, so
a changed package list or build step is a new cache, and the lab finds the one its script builds."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.lab import container

SCRIPT = Path(__file__).resolve().parent / "lab" / "rootfs.sh"


def _path(script: Path, cache: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "OOA_ROOTFS_CACHE": str(cache)}
    out = subprocess.run([str(script), "path"], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def test_the_cache_is_named_by_the_scripts_content(tmp_path):
    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
    assert _path(SCRIPT, tmp_path) == f"{tmp_path}/rootfs-{digest[:12]}"
    changed = tmp_path / "rootfs.sh"
    shutil.copy(SCRIPT, changed)
    text = changed.read_text().replace("PACKAGES=(\n", "PACKAGES=(\n  vim-tiny\n")
    assert text != SCRIPT.read_text()  # a package more
    changed.write_text(text)
    assert _path(changed, tmp_path) != _path(SCRIPT, tmp_path)


def test_the_lab_looks_for_the_cache_its_script_builds():
    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
    assert container.rootfs() == Path(f"/var/cache/ooa-lab/rootfs-{digest[:12]}")


def test_an_unknown_action_is_refused(tmp_path):
    p = subprocess.run([str(SCRIPT), "frobnicate"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "usage:" in p.stderr
