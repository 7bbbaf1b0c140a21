"""The step table (onhost/chain.py): rows per mode, what each row runs after, and that a new row
reaches the program and `make render` with no other change."""

from __future__ import annotations

import sys

import pytest

from onhost import chain, remote
from onhost.chain import CHAIN, Step, chain_for, parse_emitted, placeholders, runs_after
from tests import harness


def test_rows_per_install_mode():
    assert [s.name for s in chain_for("devstack")] == [
        "scripts", "prepare-host", "install-openstack", "tls-front", "external-gateway", "gateway-mac",
        "port-forwards", "public-endpoints"]
    assert [s.name for s in chain_for("existing")] == ["scripts", "external-gateway", "gateway-mac", "port-forwards"]
    with pytest.raises(ValueError):
        chain_for("kolla")


def test_runs_after_skips_rows_the_mode_does_not_run():
    for install in ("devstack", "existing"):
        selected = chain_for(install)
        after = {s.name: (a.name if (a := runs_after(s, selected)) else None) for s in selected}
        first = selected[0].name
        assert first == "scripts" and after[first] is None
        assert [n for n, a in after.items() if a is None] == [first]
    assert runs_after(chain.BY_NAME["external-gateway"], chain_for("existing")).name == "scripts"


def test_every_row_has_its_script_and_valid_timeouts():
    assert CHAIN[0].name == remote.UPLOAD and not CHAIN[0].secret and CHAIN[0].params(None) == {}  # type: ignore[arg-type]
    for s in CHAIN:
        assert s.name == remote.UPLOAD or remote.script_path(s.name).is_file(), s.name
        assert s.timeout.endswith("m") and s.delete_timeout.endswith("m")


def test_emitted_values_and_their_placeholders():
    gateway = chain.BY_NAME["external-gateway"]
    out = parse_emitted(gateway, 'progress\n{"router_id": "r", "gateway_port_id": "p", "x": 1}\n\n')
    assert out == {"router_id": "r", "gateway_port_id": "p"}
    with pytest.raises(ValueError, match="printed nothing"):
        parse_emitted(gateway, "\n")
    assert placeholders(chain_for("existing")) == {
        "router_id": "<router id from external-gateway>",
        "gateway_port_id": "<gateway port id from external-gateway>",
    }


@pytest.mark.parametrize(
    "row",
    [
        Step("probe", lambda i: {}, after="nowhere"),
        Step("probe", lambda i: {}, after="smoke", reruns_after=("later-step",)),
        Step("smoke", lambda i: {}, after="port-forwards"),  # a duplicate name
    ],
)
def test_a_bad_table_is_refused(monkeypatch, row):
    monkeypatch.setattr(chain, "CHAIN", (*CHAIN, row))
    with pytest.raises(ValueError, match=row.name):
        chain._check()


def test_a_switched_row_runs_only_when_its_switch_is_on():
    smoke = chain.BY_NAME["smoke"]
    assert smoke.switch == "smokeTest" and smoke.installs == {"devstack"}
    assert [s.name for s in chain_for("devstack", {"smokeTest"})][-2:] == ["public-endpoints", "smoke"]
    assert "smoke" not in [s.name for s in chain_for("devstack")]
    assert "smoke" not in [s.name for s in chain_for("existing", {"smokeTest"})]  # DevStack only
    assert smoke.reruns_after == ("gateway-mac", "port-forwards")


def test_a_new_row_reaches_the_program_and_render(monkeypatch, tmp_path):
    """Adding a step is adding a row (and its script): OpenStack and render pick it up."""
    script = tmp_path / "probe.sh"
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\necho probe \"$1\"\n")
    probe = Step(
        "probe", lambda i: {"ROUTER_ID": i.emitted["router_id"]}, after="smoke", timeout="20m"
    )
    monkeypatch.setattr(chain, "CHAIN", (*CHAIN, probe))
    monkeypatch.setattr(chain, "BY_NAME", {**chain.BY_NAME, "probe": probe})
    original = remote.script_path
    monkeypatch.setattr(remote, "script_path", lambda step: script if step == "probe" else original(step))

    run = harness.run_program()
    cmd = run.one("dev-probe")
    assert [r.name for r in run.of_type("command:remote:Command")][-1] == "dev-probe"
    assert "dev-smoke" in run.depends_on("dev-probe")
    assert cmd.inputs["stdin"] == f"ROUTER_ID={harness.MOCK_ROUTER_ID}\n"
    assert cmd.custom_timeouts["create"] == "20m" and cmd.inputs["create"] == remote.command("probe", "apply")
    assert "echo probe" in run.one("dev-scripts").inputs["stdin"]  # the upload row installs it

    sys.path.insert(0, str(harness.ROOT / "tools"))
    import render

    render.render("dev", tmp_path / "out")
    assert (tmp_path / "out" / "10-probe" / "params.env").read_text() == "ROUTER_ID=<router id from external-gateway>\n"


def test_the_tls_rows_sit_around_the_steps_that_run_the_hosts_cli():
    """tls-front right after DevStack (its stdin holds the server key: a secret row);
    public-endpoints after the networking steps (external-gateway's objects exist) and before
    smoke, which stays last and proves a VM boot with the catalog moved (the host's CLI on the
    internal interface then: lib.sh, tests/test_catalog_interface.py)."""
    front, endpoints = chain.BY_NAME["tls-front"], chain.BY_NAME["public-endpoints"]
    assert front.secret and not endpoints.secret
    assert front.installs == endpoints.installs == {"devstack"}
    for switches in (set(), {"smokeTest"}):
        names = [s.name for s in chain_for("devstack", switches)]
        assert names.index("tls-front") == names.index("install-openstack") + 1
        assert names[-1] == ("smoke" if switches else "public-endpoints")
        selected = chain_for("devstack", switches)
        assert runs_after(endpoints, selected).name == "port-forwards"
        if switches:
            assert runs_after(chain.BY_NAME["smoke"], selected).name == "public-endpoints"
    assert "tls-front" not in [s.name for s in chain_for("existing", {"smokeTest"})]
    assert "public-endpoints" not in [s.name for s in chain_for("existing", {"smokeTest"})]


def test_the_tls_rows_parameters_are_what_the_scripts_take():
    """The rows' stdin keys are the scripts' parameters (components.tls builds the same ones)."""
    import re
    from ipaddress import IPv4Address, IPv4Network

    inputs = chain.StepInputs(
        provider_mac="m", provider_cidr=IPv4Network("10.0.2.0/24"), provider_gateway=IPv4Address("10.0.2.1"),
        pool=[IPv4Address("10.0.2.10")], tenant_cidr=IPv4Network("10.1.0.0/24"), tenant_dns=IPv4Address("10.0.0.2"),
        forwards=[], cloud="c", clouds_yaml="/c.yaml", external_network="public", router="r",
        physical_network="public", external_bridge="br-ex", management_ip=IPv4Address("10.0.1.10"),
        public_address="203.0.113.7", public_dns_name="", public_base_url="https://203.0.113.7",
        ca_certificate="Q0E=", server_certificate="U0VSVkVS", server_private_key="S0VZ",
    )
    front = chain.BY_NAME["tls-front"].params(inputs)
    script = remote.script_path("tls-front").read_text()
    (listed,) = re.findall(r"^PARAMS=\((.*)\)$", script, re.M)
    assert list(front) == listed.split()
    assert front["SERVER_KEY"] == "S0VZ" and front["HTTPS_PORT"] == "443"
    endpoints = chain.BY_NAME["public-endpoints"].params(inputs)
    assert endpoints == {"PUBLIC_BASE_URL": "https://203.0.113.7", "BACKEND_HOST": IPv4Address("10.0.1.10")}
    assert "load_params - PUBLIC_BASE_URL BACKEND_HOST" in remote.script_path("public-endpoints").read_text()
