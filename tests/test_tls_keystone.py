"""A real Keystone behind the real TLS front, and the real catalog step run against it (optional).

Runs only when OOA_KEYSTONE_VENV names a virtualenv holding `keystone` and `python-openstackclient`
(not in requirements-dev.txt: ~100 packages for one test file), e.g.

    python3 -m venv /tmp/ks && /tmp/ks/bin/pip install keystone==30.0.0 python-openstackclient==10.5.0
    OOA_KEYSTONE_VENV=/tmp/ks .venv/bin/python -m pytest tests/test_tls_keystone.py

What it proves, on 127.0.0.1 high ports: Keystone (SQLite, fernet tokens, mounted at /identity as
DevStack mounts it) behind Apache with the vhost `tls-front.sh config` writes; `public-endpoints.sh
apply` with the real openstack CLI as the host's `devstack-admin` moves the public identity endpoint
to https and keeps an internal one; then, "from outside", the real openstackclient with the
clouds.yaml of components/tls.py (cacert, interface public) gets a token and reads the catalog
through the front — and fails when it trusts another CA; plain HTTP on the TLS port gets nothing;
`remove` restores Keystone's catalog. Not proven here: DevStack's other services behind the front,
the Elastic IP path (issue 13's lab).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from components.tls import clouds_yaml
from tests.test_tls_front import APACHE, APACHE_CONF, MODULES, b64, make_ca, make_server, run

VENV = os.environ.get("OOA_KEYSTONE_VENV")
STEP = Path(__file__).resolve().parent.parent / "onhost" / "steps" / "public-endpoints.sh"
PASSWORD = "Lab-Admin-Passw0rd"

pytestmark = pytest.mark.skipif(
    not VENV or not (Path(VENV) / "bin" / "keystone-manage").exists() or not Path(APACHE).exists(),
    reason="OOA_KEYSTONE_VENV (keystone + python-openstackclient) and apache2 needed",
)

SERVE = """import sys
port = int(sys.argv[1]); sys.argv = sys.argv[:1]   # oslo.config reads sys.argv
from keystone.wsgi.api import application
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import run_simple
from werkzeug.wrappers import Response
run_simple("127.0.0.1", port, DispatcherMiddleware(Response("", status=404), {"/identity": application}),
           threaded=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, what: str, log: Path) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not listen: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    d = tmp_path_factory.mktemp("keystone")
    d.chmod(0o755)
    bindir = Path(VENV or "") / "bin"
    ks_port, tls_port = free_port(), free_port()
    conf = d / "keystone.conf"
    conf.write_text(
        f"[database]\nconnection = sqlite:///{d}/keystone.db\n"
        f"[fernet_tokens]\nkey_repository = {d}/fernet\n[fernet_receipts]\nkey_repository = {d}/fernet\n"
        f"[credential]\nkey_repository = {d}/credential\n[token]\nprovider = fernet\n"
    )
    manage = [str(bindir / "keystone-manage"), "--config-file", str(conf)]
    for args in (["db_sync"], ["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"],
                 ["credential_setup", "--keystone-user", "root", "--keystone-group", "root"],
                 ["bootstrap", "--bootstrap-password", PASSWORD, "--bootstrap-region-id", "RegionOne",
                  "--bootstrap-public-url", f"http://127.0.0.1:{ks_port}/identity"]):
        subprocess.run([*manage, *args], check=True, capture_output=True, timeout=300)
    (d / "serve.py").write_text(SERVE)
    ks_log = d / "keystone.log"
    keystone = subprocess.Popen([str(bindir / "python"), str(d / "serve.py"), str(ks_port)],
                                env={**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf)},
                                stdout=ks_log.open("w"), stderr=subprocess.STDOUT)
    apache = None
    try:
        wait_for(ks_port, "keystone", ks_log)
        make_ca(d, "ca")
        make_ca(d, "other-ca")
        make_server(d, "ca", "server", "127.0.0.1", None)
        root = d / "root"
        root.mkdir()
        values = {
            "PUBLIC_ADDRESS": "127.0.0.1", "DNS_NAME": "", "SERVER_CERT": b64(d / "server.crt"),
            "SERVER_KEY": b64(d / "server.key"), "CA_CERT": b64(d / "ca.crt"), "HTTPS_PORT": str(tls_port),
            "BACKEND_URL": f"http://127.0.0.1:{ks_port}", "NOVNC_URL": "http://127.0.0.1:6080",
        }
        front = run("config", values, d, root)
        assert front.returncode == 0, front.stderr
        (d / "apache.conf").write_text(APACHE_CONF.format(tmp=d, mods=MODULES, port=tls_port, root=root))
        apache = subprocess.Popen([APACHE, "-f", str(d / "apache.conf"), "-DFOREGROUND"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(tls_port, "apache", d / "error.log")
        (d / "host.yaml").write_text(
            "clouds:\n  devstack-admin:\n    auth:\n"
            f"      auth_url: http://127.0.0.1:{ks_port}/identity\n      username: admin\n"
            f"      password: {PASSWORD}\n      project_name: admin\n      user_domain_id: default\n"
            "      project_domain_id: default\n    region_name: RegionOne\n    identity_api_version: 3\n"
        )
        auth_url = f"https://127.0.0.1:{tls_port}/identity/v3"
        (d / "outside.yaml").write_text(clouds_yaml(auth_url, PASSWORD, str(d / "ca.crt")))
        (d / "untrusting.yaml").write_text(clouds_yaml(auth_url, PASSWORD, str(d / "other-ca.crt")))
        yield {"dir": d, "bin": bindir, "ks_port": ks_port, "tls_port": tls_port}
    finally:
        if apache:
            apache.terminate()
            apache.wait(timeout=20)
        keystone.terminate()
        keystone.wait(timeout=20)


def openstack(cloud, config: str, *args: str, name: str = "openstack-on-aws") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud["dir"] / config)}
    return subprocess.run([str(cloud["bin"] / "openstack"), "--os-cloud", name, *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def step(cloud, action: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{cloud['bin']}:/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(cloud["dir"] / "state"),
           "OS_CLIENT_CONFIG_FILE": str(cloud["dir"] / "host.yaml")}
    return subprocess.run(["bash", str(STEP), action], input=stdin, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def identity_endpoints(cloud) -> dict[str, str]:
    listed = openstack(cloud, "host.yaml", "--os-interface", "internal", "endpoint", "list", "-f", "json",
                       name="devstack-admin")
    if listed.returncode != 0:  # before apply there is no internal endpoint yet
        listed = openstack(cloud, "host.yaml", "endpoint", "list", "-f", "json", name="devstack-admin")
    assert listed.returncode == 0, listed.stderr
    return {e["Interface"]: e["URL"] for e in json.loads(listed.stdout)}


def test_real_keystone_through_the_front_with_the_catalog_step(cloud):
    ks, tls = cloud["ks_port"], cloud["tls_port"]
    assert identity_endpoints(cloud) == {"public": f"http://127.0.0.1:{ks}/identity"}

    applied = step(cloud, "apply", f"PUBLIC_BASE_URL=https://127.0.0.1:{tls}\nBACKEND_HOST=127.0.0.1:{ks}\n")
    assert applied.returncode == 0, applied.stderr
    assert identity_endpoints(cloud) == {
        "public": f"https://127.0.0.1:{tls}/identity",
        "internal": f"http://127.0.0.1:{ks}/identity",
    }

    # from outside: a token and the catalog, through the front, verified with the stack's CA
    token = openstack(cloud, "outside.yaml", "token", "issue", "-f", "value", "-c", "id")
    assert token.returncode == 0, token.stderr
    listed = openstack(cloud, "outside.yaml", "endpoint", "list", "-f", "json")
    assert listed.returncode == 0, listed.stderr
    assert {e["URL"] for e in json.loads(listed.stdout)} >= {f"https://127.0.0.1:{tls}/identity"}
    refused = openstack(cloud, "untrusting.yaml", "token", "issue")
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    plain = subprocess.run(["curl", "-s", f"http://127.0.0.1:{tls}/identity/v3"], capture_output=True, text=True,
                           timeout=30, check=False)
    assert "v3.14" not in plain.stdout and '"version"' not in plain.stdout

    again = step(cloud, "apply", f"PUBLIC_BASE_URL=https://127.0.0.1:{tls}\nBACKEND_HOST=127.0.0.1:{ks}\n")
    assert again.returncode == 0 and json.loads(again.stdout)["internal_created"] == []

    removed = step(cloud, "remove")
    assert removed.returncode == 0, removed.stderr
    assert identity_endpoints(cloud) == {"public": f"http://127.0.0.1:{ks}/identity"}
