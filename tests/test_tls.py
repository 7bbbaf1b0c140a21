"""components/tls.py under Pulumi's mocks: the CA, the server certificate, its SANs, secret keys.

What is proven here: which pulumi-tls resources the component registers, with which inputs
(algorithm, CA flag, key usages, validity, SANs from an Input IP and an optional DNS name), under
which parent, and that private keys are secret (the provider SDK's `additionalSecretOutputs` and
the component's own output). What pulumi-tls makes of those inputs (real certificates) is its own
business; a CA and server certificate with the same parameters are made with openssl and served by
the real TLS front in tests/test_tls_front.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime.rpc import is_rpc_secret
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from components.clouds import CA_FILE, clouds_yaml
from components.tls import (
    EARLY_RENEWAL_HOURS,
    Tls,
    TlsArgs,
    public_base_url,
    public_endpoints_params,
    tls_front_params,
)
from onhost import remote
from tests import harness

CA_PEM = "-----BEGIN CERTIFICATE-----\nmock-ca\n-----END CERTIFICATE-----\n"
SERVER_PEM = "-----BEGIN CERTIFICATE-----\nmock-server\n-----END CERTIFICATE-----\n"
KEY_PEM = "-----BEGIN EC PRIVATE KEY-----\nmock-ec-key\n-----END EC PRIVATE KEY-----\n"


class TlsMocks(harness.Mocks):
    def new_resource(self, args):
        rid, outputs = super().new_resource(args)
        if args.typ == "tls:index/privateKey:PrivateKey":
            outputs["privateKeyPem"] = KEY_PEM + args.name
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            outputs["certPem"] = CA_PEM
        elif args.typ == "tls:index/certRequest:CertRequest":
            outputs["certRequestPem"] = "csr-of-" + args.name
        elif args.typ == "tls:index/locallySignedCert:LocallySignedCert":
            outputs["certPem"] = SERVER_PEM
        return rid, outputs


def build(args_factory) -> tuple[harness.RecordingMonitor, dict[str, Any], dict[str, bool]]:
    mocks = TlsMocks()
    monitor = harness.RecordingMonitor(mocks)
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=harness.PROJECT, stack="dev", preview=False, monitor=monitor)
    component = Tls("tls", args_factory())
    outputs = {
        "ca": component.ca_certificate,
        "cert": component.server_certificate,
        "key": component.server_private_key,
    }
    values = {k: _sync_await(v.future()) for k, v in outputs.items()}
    secret = {k: _sync_await(v.is_secret()) for k, v in outputs.items()}
    _sync_await(wait_for_rpcs())
    return monitor, values, secret


def secret_value(v: Any) -> str:
    """The value of a secret input; fails if the input is not a Pulumi secret."""
    assert is_rpc_secret(v), f"not a secret: {v!r}"
    return v["value"]


def by_name(monitor: harness.RecordingMonitor) -> dict[str, harness.Registered]:
    return {r.name: r for r in monitor.registered}


def test_resources_parents_and_keys():
    monitor, values, secret = build(lambda: TlsArgs(public_ip=pulumi.Output.from_input("198.51.100.7")))
    res = by_name(monitor)
    assert res["tls"].type == "openstack-on-aws:tls:Tls"
    component_urn = next(u for u, n in monitor.urns.items() if n == "tls")
    children = {n for n, r in res.items() if r.type.startswith("tls:")}
    assert children == {"tls-ca-key", "tls-ca", "tls-server-key", "tls-server-request", "tls-server"}
    assert all(res[n].parent == component_urn for n in children)
    for key in ("tls-ca-key", "tls-server-key"):
        assert res[key].type == "tls:index/privateKey:PrivateKey"
        assert res[key].inputs["algorithm"] == "ECDSA" and res[key].inputs["ecdsaCurve"] == "P256"
        # the provider SDK marks the key material secret: the engine keeps it encrypted in state
        assert "privateKeyPem" in res[key].additional_secret_outputs
    assert values == {"ca": CA_PEM, "cert": SERVER_PEM, "key": KEY_PEM + "tls-server-key"}
    assert secret == {"ca": False, "cert": False, "key": True}


def test_ca_is_a_ca_and_signs_the_server_certificate():
    monitor, _, _ = build(lambda: TlsArgs(public_ip="198.51.100.7"))
    res = by_name(monitor)
    ca = res["tls-ca"]
    assert ca.type == "tls:index/selfSignedCert:SelfSignedCert"
    assert ca.inputs["isCaCertificate"] is True
    assert sorted(ca.inputs["allowedUses"]) == ["cert_signing", "crl_signing"]
    assert ca.inputs["validityPeriodHours"] == 10 * 365 * 24
    assert secret_value(ca.inputs["privateKeyPem"]) == KEY_PEM + "tls-ca-key"  # its own key, not the server's

    server = res["tls-server"]
    assert server.type == "tls:index/locallySignedCert:LocallySignedCert"
    assert server.inputs["caCertPem"] == CA_PEM
    assert secret_value(server.inputs["caPrivateKeyPem"]) == KEY_PEM + "tls-ca-key"
    assert server.inputs["certRequestPem"] == "csr-of-tls-server-request"
    assert "server_auth" in server.inputs["allowedUses"] and "cert_signing" not in server.inputs["allowedUses"]
    assert server.inputs["validityPeriodHours"] == 365 * 24
    assert server.inputs["earlyRenewalHours"] == EARLY_RENEWAL_HOURS
    assert secret_value(res["tls-server-request"].inputs["privateKeyPem"]) == KEY_PEM + "tls-server-key"


def test_sans_from_an_input_ip_without_dns_name():
    # The Elastic IP is known only after deploy: an Output, resolved later.
    monitor, _, _ = build(lambda: TlsArgs(public_ip=pulumi.Output.from_input("198.51.100.7")))
    req = by_name(monitor)["tls-server-request"].inputs
    assert req["ipAddresses"] == ["198.51.100.7"]
    assert not req.get("dnsNames")
    assert req["subject"]["commonName"] == "198.51.100.7"


def test_sans_with_dns_name_and_extra_ip():
    monitor, _, _ = build(
        lambda: TlsArgs(public_ip="198.51.100.7", dns_name="cloud.example.org", extra_ips=["10.42.1.10"])
    )
    req = by_name(monitor)["tls-server-request"].inputs
    assert req["ipAddresses"] == ["198.51.100.7", "10.42.1.10"]
    assert req["dnsNames"] == ["cloud.example.org"]
    assert req["subject"]["commonName"] == "cloud.example.org"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"dns_name": "not a name"}, "is not a DNS name"),
        ({"dns_name": "-bad.example.org"}, "is not a DNS name"),
        ({"dns_name": "198.51.100.7"}, "is not a DNS name"),
        ({"server_validity_hours": EARLY_RENEWAL_HOURS}, "early renewal"),
        ({"ca_validity_hours": 100, "server_validity_hours": 1000}, "ca_validity_hours"),
    ],
)
def test_bad_args_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TlsArgs(public_ip="198.51.100.7", **kwargs)


# ---- the wiring helpers ----


def resolve(values: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Each Input's value, and which were secret."""
    pulumi.runtime.set_mocks(TlsMocks(), project=harness.PROJECT, stack="dev", preview=False)
    out, secret = {}, set()
    for k, v in values.items():
        o = pulumi.Output.from_input(v)
        out[k] = _sync_await(o.future())
        if _sync_await(o.is_secret()):
            secret.add(k)
    return out, secret


def test_public_base_url_prefers_the_dns_name():
    values, _ = resolve({
        "ip": public_base_url(pulumi.Output.from_input("198.51.100.7"), None),
        "dns": public_base_url("198.51.100.7", "cloud.example.org"),
    })
    assert values == {"ip": "https://198.51.100.7", "dns": "https://cloud.example.org"}


def test_tls_front_params_are_one_line_base64_and_the_key_is_secret():
    values, secret = resolve(tls_front_params("198.51.100.7", None, CA_PEM, SERVER_PEM, KEY_PEM))
    assert secret == {"SERVER_KEY"}
    assert base64.b64decode(values["SERVER_KEY"]).decode() == KEY_PEM
    assert base64.b64decode(values["SERVER_CERT"]).decode() == SERVER_PEM
    assert base64.b64decode(values["CA_CERT"]).decode() == CA_PEM
    assert values["DNS_NAME"] == "" and values["HTTPS_PORT"] == "443"
    remote.params(values)  # the step contract: KEY=value, one line each (raises otherwise)
    endpoints, _ = resolve(public_endpoints_params("https://198.51.100.7", "10.42.1.10"))
    assert endpoints == {"PUBLIC_BASE_URL": "https://198.51.100.7", "BACKEND_HOST": "10.42.1.10"}


def test_clouds_yaml_trusts_the_ca_and_uses_the_public_interface():
    doc = yaml.safe_load(clouds_yaml("https://198.51.100.7/identity/v3", "pw-Secret-123"))
    cloud = doc["clouds"]["openstack-on-aws"]
    assert cloud["auth"]["auth_url"] == "https://198.51.100.7/identity/v3"
    assert cloud["auth"]["password"] == "pw-Secret-123"
    assert cloud["interface"] == "public"
    assert cloud["cacert"] == CA_FILE and cloud["verify"] is True
