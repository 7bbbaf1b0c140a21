"""The real Keystone's pins, in the lab's lock (tests/lab/requirements-lab.txt).

The real Keystone runs in the real-Neutron lab (tests/lab/keystone.py): behind the TLS front on the
lab host's 443, Neutron authenticating with it, the catalog step run against it, openstackclient
from the lab's internet namespace through the Elastic IP (tests/lab/test_public_api.py): the real
Neutron through the front, the Elastic IP path, the host's Apache, the steps over SSH (CI runs the
lab as root). What stays here needs no root: the lock holds Keystone of the same release as the
lab's Neutron.
"""

from __future__ import annotations

from pathlib import Path

LOCK = Path(__file__).resolve().parent / "lab" / "requirements-lab.txt"


def test_the_lab_lock_holds_keystone_of_2026_1_with_its_closure_pinned():
    pins = dict(line.split("==") for line in LOCK.read_text().splitlines() if line and not line.startswith("#"))
    assert pins["keystone"].startswith("29.")  # keystone 29.x is 2026.1 (Gazpacho), like neutron 28.x
    assert pins["neutron"].startswith("28.")
    for name in ("python-openstackclient", "keystonemiddleware", "Werkzeug", "Flask", "pysaml2", "SQLAlchemy",
                 "PyMySQL"):
        assert name in pins, name
