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
from tests.lab.neutron import API, API_PORT, LAB_VENV, wait_for
from tests.test_tls_front import make_ca, make_server

pytestmark = pytest.mark.lab

# DevStack's catalog for the program's local.conf (KEYSTONE_ADMIN_ENDPOINT=True: the identity admin
# endpoint), with Nova, Placement and Glance (tests/lab/nova.py)
DEVSTACK_CATALOG = {
    ("identity", "public"): f"http://{MGMT_IP}/identity",
    ("identity", "admin"): f"http://{MGMT_IP}/identity",
    ("network", "public"): f"http://{MGMT_IP}/networking",
    ("compute", "public"): f"http://{MGMT_IP}/compute/v2.1",
    ("placement", "public"): f"http://{MGMT_IP}/placement",
    ("image", "public"): f"http://{MGMT_IP}/image",
}
PUBLIC = {kind: url for (kind, interface), url in DEVSTACK_CATALOG.items() if interface == "public"}


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
    # the old one's listening socket closes with its last process: the new one could not bind it
    try:
        wait_for(f"nothing listening on the neutron API's port {API_PORT}", lambda: not listening(lab), 10)
    except TimeoutError as e:
        raise TimeoutError(f"{e}; held by: {listening(lab)}") from None
    api.start("neutron-api", "uwsgi", "--ini", f"{api.etc}/neutron-api-uwsgi.ini")

    def answers() -> bool:
        if not api.running("neutron-api"):  # uWSGI exits at once when it cannot start: say why, now
            raise RuntimeError(f"the restarted neutron API exited: {api.log_tail('neutron-api')}")
        try:
            return api.api("GET", "networks") is not None
        except RuntimeError:  # not listening yet
            return False

    def answering() -> None:
        wait_for("the restarted neutron API", answers, 60)

    return answering


def listening(lab: Lab) -> str:
    """The listener on the neutron API's port in the host's namespace, with its process ('' when none)."""
    return sh("ss", "-Hltnp", f"sport = :{API_PORT}", ns=lab.neutron.netns).stdout.strip()


def curl(lab: Lab, ns: str, url: str, *args: str, max_time: int = 3) -> subprocess.CompletedProcess:
    """`max_time` 1 where nothing must answer: a dropped packet is not retried within a second on the lab's links."""
    return sh("curl", "-sS", "--max-time", str(max_time), *args, url, ns=ns, check=False, timeout=20)


# The lab's management subnet, as the program hands an AWS controller its own (the contract's
# cluster_cidr): the lab's second host (a compute node's address) keeps RabbitMQ and the APIs.
CLUSTER = "10.0.1.0/24"


def front_params(lab: Lab, parts: TlsParts) -> dict:
    return {**lab.chain_params("tls-front", tls=parts), "PLAIN_SOURCES": CLUSTER}


def plain_identity(lab: Lab, ns: str, ip: str) -> str:
    """The HTTP status of plain http://<ip>/identity/v3 from namespace `ns` ("000": nothing answered)."""
    return curl(lab, ns, f"http://{ip}/identity/v3", "-o", "/dev/null", "-w", "%{http_code}", max_time=2).stdout


def open_security_group(lab: Lab, port: int) -> Callable[[], None]:
    """The emulated security group opens `port` of the management ENI to the internet, as nothing in
    front of an existing machine closes it; the function it returns closes it again."""
    added = sh("nft", "--echo", "--handle", "insert", "rule", "ip", "ooa_sg", "management", "iifname", "inet0",
               "ip", "daddr", MGMT_IP, "tcp", "dport", str(port), "accept", ns=lab.vpc).stdout
    handle = added.rsplit("# handle ", 1)[1].split()[0]

    def close() -> None:
        sh("nft", "delete", "rule", "ip", "ooa_sg", "management", "handle", handle, ns=lab.vpc)

    return close


def filter_tables(lab: Lab) -> dict[str, list[str]]:
    return {t: sh(t, "-w", "-S", ns=lab.host).stdout.splitlines() for t in ("iptables", "ip6tables")}


UNIT = "openstack-on-aws-tls-front-reapply"


def quota_check(lab: Lab, post_config: bool) -> subprocess.Popen:
    """Glance's quota check as glance-api runs it on the host (oslo.limit's Enforcer: Keystone from
    the catalog, then the limit model and the registered limits), with [oslo_limit] as DevStack's
    lib/glance writes it and, with `post_config`, the program's local.conf over it. Started, not waited for."""
    conf = lab.work / f"glance-oslo-limit-{post_config}.conf"
    conf.write_text(lab.keystone.oslo_limit(post_config))
    check = (
        "import sys\n"
        "from oslo_config import cfg\n"
        "from oslo_limit import limit, opts\n"
        "cfg.CONF(['--config-file', sys.argv[1]], project='glance')\n"
        "opts.register_opts(cfg.CONF)\n"
        "enforcer = limit.Enforcer(lambda project_id, resources: {r: 0 for r in resources})\n"
        "print(enforcer.get_registered_limits(['image_count_total']))\n"
    )
    return subprocess.Popen(["ip", "netns", "exec", lab.host, f"{LAB_VENV}/bin/python", "-c", check, str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    tables_before = filter_tables(lab)
    # An existing machine: nothing in front of it closes port 80, and its Apache answers the internet.
    close_port80 = open_security_group(lab, 80)
    try:
        assert plain_identity(lab, lab.inet, MGMT_EIP) == "200"
        front = ok(lab.step("tls-front", "apply", front_params(lab, stack)))
        assert front["url"] == f"https://{MGMT_EIP}/" and front["changed"] is True
        assert (upper / "openstack-on-aws" / "tls" / "server.key").stat().st_mode & 0o777 == 0o600
        assert not Path("/etc/openstack-on-aws").exists()  # the step wrote the lab host's /etc only

        moved = ok(lab.step("public-endpoints", "apply", lab.chain_params("public-endpoints", tls=stack)))
        https = {kind: url.replace(f"http://{MGMT_IP}", f"https://{MGMT_EIP}") for kind, url in PUBLIC.items()}
        assert sorted(moved["public"]) == sorted(https.values())
        assert lab.keystone.endpoints() == {
            ("identity", "admin"): f"http://{MGMT_IP}/identity",
            **{(kind, "public"): url for kind, url in https.items()},
            **{(kind, "internal"): url for kind, url in PUBLIC.items()},
        }

        # Neutron's token validation reads the moved catalog afresh (DevStack's `interface = public`
        # would now send it to the https public address, which the host neither reaches nor trusts).
        # The new API starts while the checks below that do not involve Neutron run.
        neutron_answers = restart_neutron_api(lab)

        # Glance's quota check, as glance-api runs it on the host after the move: with DevStack's
        # [oslo_limit] alone it looks Keystone up on the public interface (https on the Elastic IP:
        # not routed from the host here, as on AWS); with the program's post-config, on the admin one.
        quota = {post: quota_check(lab, post) for post in (True, False)}

        # Plain HTTP from the internet gets nothing: the host's firewall refuses port 80 (tls-front:
        # the security group is open here, as nothing closes it in front of an existing machine),
        # while the host itself and the cluster's subnet (a compute node) still reach Apache on it;
        # a neighbour outside that subnet does not. http on 443 reaches no service.
        inside = curl(lab, lab.host, f"http://{MGMT_IP}/identity/v3")
        assert '"id": "v3' in inside.stdout.replace('"id":"', '"id": "')
        port80 = curl(lab, lab.inet, f"http://{MGMT_EIP}/identity/v3", max_time=1)
        assert port80.returncode != 0 and port80.stdout == ""
        assert plain_identity(lab, lab.compute.ns, MGMT_IP) == "200"
        assert plain_identity(lab, lab.peer, MGMT_IP) == "000"
        plain443 = curl(lab, lab.inet, f"http://{MGMT_EIP}:443/identity/v3")
        assert "v3" not in plain443.stdout and "networks" not in plain443.stdout

        # A reboot loses the chain: the re-apply unit (enabled, before Apache at boot) restores it.
        shown = lab.ssh(f"systemctl show -p Before -p WantedBy -p UnitFileState {UNIT}.service").stdout
        assert "apache2.service" in shown and "WantedBy=multi-user.target" in shown, shown
        assert "UnitFileState=enabled" in shown, shown
        lab.ssh(f"systemctl stop {UNIT}.timer")  # (it would restore the chain within 10 s)
        for ipt in ("iptables", "ip6tables"):
            lab.ssh(f"{ipt} -w -D INPUT -j OOA-PLAIN && {ipt} -w -F OOA-PLAIN && {ipt} -w -X OOA-PLAIN")
        assert plain_identity(lab, lab.inet, MGMT_EIP) == "200"  # lost: open again
        lab.ssh(f"systemctl start {UNIT}.service")  # what boot runs
        assert plain_identity(lab, lab.inet, MGMT_EIP) == "000"
        lab.ssh(f"systemctl start {UNIT}.timer")
        assert all("-A INPUT -j OOA-PLAIN" in lines for lines in filter_tables(lab).values())

        # Real Glance after the move: an upload passes its token validation and its quota check
        # (oslo.limit), both on the admin interface the program's post-config sets; the host's own
        # calls go through the internal endpoints, as the steps' (OS_INTERFACE=internal).
        upload = (
            "head -c 65536 /dev/zero >/tmp/moved.raw && OS_INTERFACE=internal openstack --os-cloud devstack-admin "
            "image create --disk-format raw --container-format bare --file /tmp/moved.raw moved -f value -c status"
        )
        uploaded = lab.ssh(upload, check=False)
        lab.ssh("OS_INTERFACE=internal openstack --os-cloud devstack-admin image delete moved", check=False)
        assert uploaded.returncode == 0 and uploaded.stdout.strip() == "active", uploaded.stderr

        with_post_config, devstack_alone = (p.communicate(timeout=120) + (p.returncode,) for p in quota.values())
        assert with_post_config[2] == 0, with_post_config
        assert with_post_config[0].strip() == "[('image_count_total', 0)]", with_post_config
        assert devstack_alone[2] != 0 and "exists but does not have any supported versions" in devstack_alone[1], (
            devstack_alone
        )

        # An impostor's front (a certificate for the same address from another CA) is refused by the
        # stack's clouds.yaml; the right certificate again, and it works again.
        impostor = tls_parts(pki, "other-ca", "impostor")
        ok(lab.step("tls-front", "apply", front_params(lab, impostor)))
        fooled = outside.openstack("token", "issue")
        assert fooled.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in fooled.stderr, fooled.stderr
        again = ok(lab.step("tls-front", "apply", front_params(lab, stack)))
        assert again["changed"] is True

        # From the internet, through the Elastic IP over https: a token from Keystone (the listing
        # needs one), and the real Neutron's networks (its restarted API).
        neutron_answers()
        listed = outside.openstack("network", "list", "-f", "json")
        assert listed.returncode == 0, listed.stderr
        assert {n["Name"] for n in json.loads(listed.stdout)} == {"public", "private"}

        # remove: DevStack's catalog again, then the front and every file and module it added go.
        restored = ok(lab.step("public-endpoints", "remove"))
        assert (restored["restored"], restored["internal_deleted"]) == (len(PUBLIC), len(PUBLIC))
        assert lab.keystone.endpoints() == DEVSTACK_CATALOG
        ok(lab.step("tls-front", "remove"))
        assert plain_identity(lab, lab.inet, MGMT_EIP) == "200"  # the machine as it was: port 80 open again
        assert filter_tables(lab) == tables_before
        assert lab.ssh(f"systemctl show -p LoadState {UNIT}.service {UNIT}.timer").stdout.count("=not-found") == 2
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
        close_port80()


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
