"""The lab's guest image without root (tests/lab/guest.sh): its cache is named by the content of the
script and of the guest's files, so a changed boot script is a new image; and the guest's `wget`
keeps busybox wget's -T, which Debian 12's busybox crashes on (tests/lab/test_guest.py boots the image)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent / "lab"
SCRIPT = LAB / "guest.sh"
FILES = LAB / "guest"


def _path(script: Path, cache: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "OOA_ROOTFS_CACHE": str(cache)}
    out = subprocess.run([str(script), "path"], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def test_the_image_is_named_by_the_content_of_the_script_and_the_guests_files(tmp_path):
    content = SCRIPT.read_bytes() + b"".join(f.read_bytes() for f in sorted(FILES.iterdir()))
    digest = hashlib.sha256(content).hexdigest()
    assert _path(SCRIPT, tmp_path) == f"{tmp_path}/guest-{digest[:12]}/lab-guest.img"
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(SCRIPT, copy / "guest.sh")
    shutil.copytree(FILES, copy / "guest")
    assert _path(copy / "guest.sh", tmp_path) == _path(SCRIPT, tmp_path)
    boot = copy / "guest" / "boot"
    boot.write_text(boot.read_text().replace("MD_TRIES=20", "MD_TRIES=21"))
    assert _path(copy / "guest.sh", tmp_path) != _path(SCRIPT, tmp_path)


def test_an_unknown_action_is_refused():
    p = subprocess.run([str(SCRIPT), "frobnicate"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "usage:" in p.stderr


@pytest.mark.parametrize(
    ("args", "runs"),
    [
        # the smoke step's call
        ("-q -T 10 -O - http://probe/", "timeout 10 busybox wget -q -O - http://probe/"),
        ("-T5 -O /run/x http://169.254.169.254/latest/user-data",
         "timeout 5 busybox wget -O /run/x http://169.254.169.254/latest/user-data"),
        ("--timeout=7 -O - http://probe/", "timeout 7 busybox wget -O - http://probe/"),
        ("--timeout 7 -q http://probe/", "timeout 7 busybox wget -q http://probe/"),
        ("-q -O - http://probe/", "busybox wget -q -O - http://probe/"),
    ],
)  # fmt: skip
def test_the_guests_wget_turns_its_timeout_into_a_timeout_of_the_whole_download(tmp_path, args, runs):
    sh = shutil.which("sh")
    assert sh is not None
    for tool in ("busybox", "timeout"):  # stand-ins that say how they were called
        (tmp_path / tool).write_text(f'#!{sh}\necho {tool} "$@"\n')
        (tmp_path / tool).chmod(0o755)
    p = subprocess.run(
        [sh, str(FILES / "wget"), *args.split()], env={"PATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == runs
