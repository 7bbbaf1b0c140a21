"""external-gateway remove, against the real API: the last lab test (the files of this package
run in name order, and this one takes the router away from the session's lab)."""

from __future__ import annotations

import json

import pytest

from tests.lab.neutron import wait_for

pytestmark = pytest.mark.lab


def test_external_gateway_remove_deletes_what_it_created(lab):
    api = lab.neutron
    for fip in api.api("GET", "floatingips")["floatingips"]:  # the tenant's own objects go first,
        api.api("DELETE", f"floatingips/{fip['id']}")  # as a user's would before a destroy
    for vm in lab.vms:
        api.api("DELETE", f"ports/{vm.port_id}")
    p = lab.step("external-gateway", "remove")
    assert p.returncode == 0, p.stderr
    for kind in ("routers", "networks", "subnets"):
        assert api.api("GET", kind)[kind] == [], f"{kind} left behind"
    assert not (lab.state / "external-gateway").exists()
    wait_for("the L3 agent to delete the router namespace", lambda: not lab.router_exists(), 60)
    again = lab.step("external-gateway", "remove")
    assert again.returncode == 0 and "nothing to remove" in again.stderr
    assert json.dumps(api.api("GET", "ports")["ports"]) == "[]"
