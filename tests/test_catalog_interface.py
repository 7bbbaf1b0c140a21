"""After public-endpoints, the host's own `openstack` calls use the internal endpoints:
lib.sh exports OS_INTERFACE=internal from public-endpoints' state, for every step that sources it
(a re-run of external-gateway or smoke, discover-hosts and compute-record on the controller)."""

from __future__ import annotations

import subprocess

import pytest

from onhost import remote

LIB = remote.script_path("external-gateway").parent / "lib.sh"


def _interface(state) -> str:
    proc = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; . "$1"; printf "%s|%s" "${OS_INTERFACE-unset}" "$(catalog_interface)"',
         "x", str(LIB)],
        env={"PATH": "/usr/bin:/bin", "OOA_STATE": str(state)}, capture_output=True, text=True, check=True,
    )
    return proc.stdout


@pytest.mark.parametrize(("recorded", "expected"), [
    (None, "unset|public"),            # public-endpoints never ran (or its remove restored DevStack's)
    ("public", "unset|public"),
    ("internal", "internal|internal"),  # the public endpoints point at https://<public address>/
])
def test_the_steps_follow_the_interface_public_endpoints_recorded(tmp_path, recorded, expected):
    if recorded is not None:
        (tmp_path / "public-endpoints").mkdir()
        (tmp_path / "public-endpoints" / "interface").write_text(recorded + "\n")
    assert _interface(tmp_path) == expected


def test_public_endpoints_records_the_file_lib_reads():
    text = remote.script_path("public-endpoints").read_text()
    assert "STATE=$OOA_STATE/public-endpoints" in text and "INTERFACE=$STATE/interface" in text
    for step in ("external-gateway", "smoke", "discover-hosts", "compute-record"):
        assert "lib.sh" in remote.script_path(step).read_text(), step
