"""The TLS front's config key and per-mode wiring: `publicDnsName` validated by key, DevStack only; the
existing-machine mode's TLS names; an existing OpenStack gets no TLS part at all."""

from __future__ import annotations

import json

import pytest

from config.settings import SettingsError, load_settings
from tests import harness
from tests.test_modes import HOST, OPENSTACK, PRIVATE_KEY, existing

NS = "openstack-on-aws"
BASE = {"aws:region": "eu-west-1", f"{NS}:allowedCidrs": '["203.0.113.0/24"]'}


def problems(config: dict) -> list[str]:
    with pytest.raises(SettingsError) as err:
        load_settings({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    return err.value.problems


def test_a_dns_name_is_accepted():
    s = load_settings({**BASE, f"{NS}:publicDnsName": "cloud.example.org"})
    assert s.public_dns_name == "cloud.example.org"
    assert load_settings(BASE).public_dns_name is None


@pytest.mark.parametrize("bad", ["203.0.113.7", "localhost", "-bad.example.org", "a_b.example.org", "x" * 64 + ".org"])
def test_a_bad_dns_name_is_refused_by_key(bad):
    found = problems({**BASE, f"{NS}:publicDnsName": bad})
    assert any(p.startswith(f"{NS}:publicDnsName: {bad!r} is not a DNS name") for p in found), found


def test_an_existing_openstack_takes_no_dns_name():
    config = {f"{NS}:host": HOST, f"{NS}:sshPrivateKey": "k", f"{NS}:openstack": OPENSTACK,
              f"{NS}:publicDnsName": "cloud.example.org"}
    assert any(p.startswith(f"{NS}:publicDnsName: DevStack only") for p in problems(config))


def test_an_existing_machine_needs_an_address_a_certificate_can_name():
    config = {f"{NS}:host": {**HOST, "publicAddress": "cloudhost"}, f"{NS}:sshPrivateKey": "k"}
    found = problems(config)
    assert any(p.startswith(f"{NS}:host.publicAddress: 'cloudhost' is neither an IPv4 nor a DNS name") for p in found)


def test_an_existing_openstack_gets_no_tls():
    run = existing(OPENSTACK)
    assert not [r for r in run.resources if r.type.startswith("tls:") or r.type == "openstack-on-aws:tls:Tls"]
    assert "caCertificate" not in run.outputs
    names = [r.name for r in run.of_type("command:remote:Command")]
    assert "dev-tls-front" not in names and "dev-public-endpoints" not in names


def test_an_existing_machine_with_an_ip_public_address_and_a_dns_name():
    run = harness.run_program(
        {"host": {**HOST, "publicAddress": "203.0.113.50"}, "sshPrivateKey": PRIVATE_KEY,
         "publicDnsName": "cloud.example.net"},
        secret_keys=["sshPrivateKey"], base={},
    )
    request = run.one("dev-server-request").inputs
    assert request["ipAddresses"] == ["203.0.113.50"] and request["dnsNames"] == ["cloud.example.net"]
    assert run.outputs["keystoneAuthUrl"] == "https://cloud.example.net/identity/v3"
    assert run.outputs["caCertificate"] == harness.MOCK_CA_PEM
