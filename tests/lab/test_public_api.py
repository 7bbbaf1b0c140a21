"""The cloud's APIs from the internet, over TLS, through the management Elastic IP.

On the lab host: real Keystone (tests/lab/keystone.py) and real Neutron authenticating with it,
behind the host's Apache as DevStack sets it up. The tls-front and public-endpoints steps run over
SSH exactly as Pulumi sends them, with the parameters the program builds from the step table for a
DevStack stack on this machine (`Lab.chain_params(..., tls=...)`), and a CA and server certificate
made as components/tls.py makes them (ECDSA P-256; the server's IP SAN the management Elastic IP).
Then, from the internet namespace, the real openstackclient with the `cloudsYaml` output as the
program renders it (components/clouds.py `clouds_yaml`) and the CA file beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime.sync_await import _sync_await

from components.clouds import CA_FILE, clouds_yaml
from components.openstack import TlsParts, public_base_url
from tests.lab import keystone
from tests.lab.net import MGMT_EIP, MGMT_IP, Lab, sh
from tests.lab.neutron import API, LAB_VENV, wait_for
from tests.test_tls_front import make_ca, make_server

pytestmark = pytest.mark.lab

# DevStack's catalog for the program's local.conf (KEYSTONE_ADMIN_ENDPOINT=True: the identity admin endpoint)
DEVSTACK_CATALOG = {
    ("identity", "public"): f"http://{MGMT_IP}/identity",
    ("identity", "admin"): f"http://{MGMT_IP}/identity",
    ("network", "public"): f"http://{MGMT_IP}/networking",
}


def ok(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, f"step failed ({p.returncode}): {p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pki(lab: Lab) -> Path:
    """The stack's CA and the front's certificate (IP SAN: the management Elastic IP), another CA,
    and an impostor's certificate for the same address signed by that other CA."""
    d = lab.work / "pki"
    d.mkdir()
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_server(d, "ca", "server", MGMT_EIP, None)
    make_server(d, "other-ca", "impostor", MGMT_EIP, None)
    return d


def tls_parts(pki: Path, ca: str, server: str) -> TlsParts:
    """What components/tls.py `Tls` hands the program (PEM text), for the management Elastic IP."""
    return TlsParts(
        public_ip=MGMT_EIP,
        ca_certificate=(pki / f"{ca}.crt").read_text(),
        server_certificate=(pki / f"{server}.crt").read_text(),
        server_private_key=(pki / f"{server}.key").read_text(),
    )


class Outside:
    """A consumer on the internet: the `cloudsYaml` output in clouds.yaml, the CA file beside it."""

    def __init__(self, lab: Lab, d: Path, parts: TlsParts, ca: Path):
        self.lab, self.dir = lab, d
        d.mkdir()
        # keystoneAuthUrl as components/openstack.py builds it, and the program's clouds_yaml()
        auth_url = _sync_await(pulumi.Output.concat(public_base_url(parts), "/identity/v3").future())
        self.yaml = clouds_yaml(str(auth_url), keystone.ADMIN_PASSWORD)
        (d / "clouds.yaml").write_text(self.yaml)
        (d / CA_FILE).write_text(ca.read_text())  # `cacert` is a path relative to the working directory

    def openstack(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(self.dir / "clouds.yaml")}
        return subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.lab.inet,
                f"{LAB_VENV}/bin/openstack",
                "--os-cloud",
                "openstack-on-aws",
                *args,
            ],
            cwd=self.dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def restart_neutron_api(lab: Lab) -> Callable[[], None]:
    """A new neutron-api: keystonemiddleware authenticates its service user again and reads the
    catalog anew (as after a restart or once its service token expires). Returns once the old one
    is gone and the new one started; the function it returns waits until the new one answers (its
    start-up, ~4 s of imports and plugin loading, overlaps what the caller checks meanwhile)."""
    api = lab.neutron
    api.stop("neutron-api", grace=5)
    api.start("neutron-api", "uwsgi", "--ini", f"{api.etc}/neutron-api-uwsgi.ini")

    def answers() -> bool:
        try:
            return api.api("GET", "networks") is not None
        except RuntimeError:  # not listening yet
            return False

    def answering() -> None:
        wait_for("the restarted neutron API", answers, 60)

    return answering


def curl(lab: Lab, ns: str, url: str, *args: str, max_time: int = 3) -> subprocess.CompletedProcess:
    """`max_time` 1 where nothing must answer: a dropped packet is not retried within a second on the lab's links."""
    return sh("curl", "-sS", "--max-time", str(max_time), *args, url, ns=ns, check=False, timeout=20)


def test_neutron_authenticates_with_the_real_keystone_and_the_catalog_is_devstacks(lab):
    anonymous = curl(lab, lab.host, f"{API}/v2.0/networks", "-o", "/dev/null", "-w", "%{http_code}")
    assert anonymous.stdout == "401"  # keystonemiddleware: no token, no answer
    assert {n["name"] for n in lab.neutron.api("GET", "networks")["networks"]} == {"public", "private"}
    assert lab.keystone.endpoints() == DEVSTACK_CATALOG
    # keystonemiddleware as DevStack configures it, with the program's post-config over it
    conf = (lab.neutron.etc / "neutron.conf").read_text()
    assert "auth_strategy = keystone" in conf and "interface = admin\n" in conf.split("[keystone_authtoken]")[1]
    # the lab's files are in its own /etc layer, never in this machine's
    assert (lab.upper / "etc" / "openstack" / "clouds.yaml").is_file()
    assert (
        not Path("/etc/openstack/clouds.yaml").exists()
        or "devstack-admin" not in Path("/etc/openstack/clouds.yaml").read_text()
    )


def test_the_cloud_from_the_internet_over_tls_through_the_elastic_ip(lab, pki):
    stack = tls_parts(pki, "ca", "server")
    outside = Outside(lab, lab.work / "outside", stack, pki / "ca.crt")
    upper = lab.upper / "etc"
    enabled_before = sorted(p.name for p in (upper / "apache2" / "mods-enabled").iterdir())
    machine_etc = sorted(os.listdir("/etc"))
    try:
        front = ok(lab.step("tls-front", "apply", lab.chain_params("tls-front", tls=stack)))
        assert front["url"] == f"https://{MGMT_EIP}/" and front["changed"] is True
        assert (upper / "openstack-on-aws" / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
        assert not Path("/etc/openstack-on-aws").exists()  # the step wrote the lab host's /etc only

        moved = ok(lab.step("public-endpoints", "apply", lab.chain_params("public-endpoints", tls=stack)))
        assert sorted(moved["public"]) == [f"https://{MGMT_EIP}/identity", f"https://{MGMT_EIP}/networking"]
        assert lab.keystone.endpoints() == {
            ("identity", "public"): f"https://{MGMT_EIP}/identity",
            ("identity", "internal"): f"http://{MGMT_IP}/identity",
            ("identity", "admin"): f"http://{MGMT_IP}/identity",
            ("network", "public"): f"https://{MGMT_EIP}/networking",
            ("network", "internal"): f"http://{MGMT_IP}/networking",
        }

        # Neutron's token validation reads the moved catalog afresh (DevStack's `interface = public`
        # would now send it to the https public address, which the host neither reaches nor trusts).
        # The new API starts while the checks below that do not involve Neutron run.
        neutron_answers = restart_neutron_api(lab)

        # Plain HTTP from the internet gets nothing: port 80 is not open (the host's Apache answers it
        # inside), and http on 443 reaches no service.
        inside = curl(lab, lab.host, f"http://{MGMT_IP}/identity/v3")
        assert '"id": "v3' in inside.stdout.replace('"id":"', '"id": "')
        port80 = curl(lab, lab.inet, f"http://{MGMT_EIP}/identity/v3", max_time=1)
        assert port80.returncode != 0 and port80.stdout == ""
        plain443 = curl(lab, lab.inet, f"http://{MGMT_EIP}:443/identity/v3")
        assert "v3" not in plain443.stdout and "networks" not in plain443.stdout

        # An impostor's front (a certificate for the same address from another CA) is refused by the
        # stack's clouds.yaml; the right certificate again, and it works again.
        impostor = tls_parts(pki, "other-ca", "impostor")
        ok(lab.step("tls-front", "apply", lab.chain_params("tls-front", tls=impostor)))
        fooled = outside.openstack("token", "issue")
        assert fooled.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in fooled.stderr, fooled.stderr
        again = ok(lab.step("tls-front", "apply", lab.chain_params("tls-front", tls=stack)))
        assert again["changed"] is True

        # From the internet, through the Elastic IP over https: a token from Keystone (the listing
        # needs one), and the real Neutron's networks (its restarted API).
        neutron_answers()
        listed = outside.openstack("network", "list", "-f", "json")
        assert listed.returncode == 0, listed.stderr
        assert {n["Name"] for n in json.loads(listed.stdout)} == {"public", "private"}

        # remove: DevStack's catalog again, then the front and every file and module it added go.
        restored = ok(lab.step("public-endpoints", "remove"))
        assert (restored["restored"], restored["internal_deleted"]) == (2, 2)
        assert lab.keystone.endpoints() == DEVSTACK_CATALOG
        ok(lab.step("tls-front", "remove"))
        assert not (upper / "openstack-on-aws").exists()
        assert not (upper / "apache2" / "sites-available" / "openstack-on-aws-tls.conf").exists()
        assert not (upper / "apache2" / "sites-enabled" / "openstack-on-aws-tls.conf").is_symlink()
        enabled = sorted(p.name for p in (upper / "apache2" / "mods-enabled").iterdir())
        assert enabled == enabled_before
        gone = curl(lab, lab.inet, f"https://{MGMT_EIP}/identity/v3", "--cacert", str(pki / "ca.crt"), max_time=1)
        assert gone.returncode != 0 and gone.stdout == ""
        assert sorted(os.listdir("/etc")) == machine_etc
    finally:
        for step in ("public-endpoints", "tls-front"):
            lab.step(step, "remove")


def test_the_internet_reaches_only_the_elastic_ips(lab):
    """The emulated internet routes only the Elastic IPs to the VPC (never a private address)."""
    assert curl(lab, lab.inet, f"http://{MGMT_IP}/identity/v3", max_time=1).stdout == ""
    assert lab.tcp(lab.inet, MGMT_IP, 22, timeout=1) == ""
    assert banner(lab, lab.inet, MGMT_EIP, 22).startswith("SSH-2.0")


def banner(lab: Lab, ns: str, ip: str, port: int) -> str:
    """The first line a TCP server sends ('' when nothing answers within 2 s): read as soon as it
    comes (lab.tcp waits for the connection to go idle, and an SSH server waits for our banner)."""
    read = (
        "import socket, sys\n"
        "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:\n"
        "    print(s.makefile('rb').readline().decode(errors='replace').strip())\n"
    )
    return sh("python3", "-c", read, ip, str(port), ns=ns, check=False, timeout=10).stdout.strip()
