"""A real Keystone behind the real TLS front, and the real catalog step run against it.

Runs on the lab's virtualenv: `make test` passes OOA_KEYSTONE_VENV=.lab-venv, whose lock
(tests/lab/requirements-lab.txt) holds keystone 29.1.0 (2026.1) and python-openstackclient next to
the lab's Neutron; needs Debian's apache2-bin, openssl and curl (.ci/run installs them) and nothing
else: Keystone's database is SQLite (Python's own sqlite3). By hand:

    make lab-venv && OOA_KEYSTONE_VENV=$PWD/.lab-venv .venv/bin/python -m pytest tests/test_tls_keystone.py

Without them it skips with the reason; with CI=true it fails instead. ~35 s on 2 shared cores. It
leaves nothing behind, also on failure: Keystone and Apache run in their own process groups, killed
at the end, and everything lives in one temporary directory, removed at the end.

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

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from components.tls import clouds_yaml
from tests.test_tls_front import APACHE, APACHE_CONF, MODULES, b64, make_ca, make_server, run

VENV = os.environ.get("OOA_KEYSTONE_VENV")
STEP = Path(__file__).resolve().parent.parent / "onhost" / "steps" / "public-endpoints.sh"
PASSWORD = "Lab-Admin-Passw0rd"

CI = os.environ.get("CI") == "true"


def missing(venv: str | None) -> list[str]:
    """What the real-Keystone test needs and this machine lacks (empty: it runs)."""
    why = []
    if not venv:
        why.append("OOA_KEYSTONE_VENV is not set (`make test` sets it to .lab-venv)")
    else:
        why += [f"{venv}/bin/{b} is missing (make lab-venv)" for b in ("keystone-manage", "openstack")
                if not (Path(venv) / "bin" / b).exists()]
    if not Path(APACHE).exists():
        why.append("apache2 is missing (apt-get install apache2-bin)")
    why += [f"{t} is missing (apt-get install {t})" for t in ("openssl", "curl") if not shutil.which(t)]
    return why


def need(why: list[str], ci: bool) -> None:
    """Skip with the reasons, or fail when CI=true: CI must run the test, not skip it."""
    if why and ci:
        pytest.fail("; ".join(why) + " (CI=true: a failure, not a skip)")
    if why:
        pytest.skip("; ".join(why))


SERVE = """import sys
port = int(sys.argv[1]); sys.argv = sys.argv[:1]   # oslo.config reads sys.argv
from keystone.wsgi.api import application
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import run_simple
from werkzeug.wrappers import Response
run_simple("127.0.0.1", port, DispatcherMiddleware(Response("", status=404), {"/identity": application}),
           threaded=False)  # one request at a time: one SQLite writer
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


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill a process started with start_new_session=True and everything it forked (Apache's children)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def cloud():
    need(missing(VENV), CI)
    d = Path(tempfile.mkdtemp(prefix="ooa-keystone-"))
    d.chmod(0o755)  # Apache's workers (User nobody) read the vhost's files below it
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield start(d, processes)
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(d, ignore_errors=True)


def start(d: Path, processes: list[subprocess.Popen[bytes]]) -> dict[str, object]:
    """Keystone on SQLite behind the TLS front in d; each started process is appended to processes."""
    bindir = Path(VENV or "") / "bin"
    ks_port, tls_port = free_port(), free_port()
    conf = d / "keystone.conf"
    conf.write_text(
        f"[database]\nconnection = sqlite:///{d}/keystone.db\n"
        f"[fernet_tokens]\nkey_repository = {d}/fernet\n[fernet_receipts]\nkey_repository = {d}/fernet\n"
        f"[credential]\nkey_repository = {d}/credential\n[token]\nprovider = fernet\n"
    )
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    manage = [str(bindir / "keystone-manage"), "--config-file", str(conf)]
    for args in (["db_sync"], ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
                 ["credential_setup", "--keystone-user", user, "--keystone-group", group],
                 ["bootstrap", "--bootstrap-password", PASSWORD, "--bootstrap-region-id", "RegionOne",
                  "--bootstrap-public-url", f"http://127.0.0.1:{ks_port}/identity"]):
        done = subprocess.run([*manage, *args], capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"keystone-manage {args[0]}: {done.stderr[-2000:]}"
    # WAL: a reader's open transaction (oslo.db's sessions) does not lock out the writer's commit
    with sqlite3.connect(d / "keystone.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
    (d / "serve.py").write_text(SERVE)
    ks_log = d / "keystone.log"
    with ks_log.open("w") as log:
        processes.append(subprocess.Popen([str(bindir / "python"), str(d / "serve.py"), str(ks_port)],
                                          env={**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(conf)},
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
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
    processes.append(subprocess.Popen([APACHE, "-f", str(d / "apache.conf"), "-DFOREGROUND"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
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
    return {"dir": d, "bin": bindir, "ks_port": ks_port, "tls_port": tls_port}


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


def test_missing_pieces_skip_on_a_workstation_and_fail_under_ci(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "keystone-manage").touch()
    why = missing(str(tmp_path))
    assert f"{tmp_path}/bin/openstack is missing (make lab-venv)" in why
    assert not any("keystone-manage" in w for w in why)
    assert "OOA_KEYSTONE_VENV is not set (`make test` sets it to .lab-venv)" in missing(None)
    with pytest.raises(pytest.fail.Exception, match="CI=true: a failure, not a skip"):
        need(why, ci=True)
    with pytest.raises(pytest.skip.Exception, match="openstack is missing"):
        need(why, ci=False)
    need([], ci=True)


def test_make_test_hands_the_lab_venv_to_this_test():
    root = STEP.parent.parent.parent
    dry = subprocess.run(["make", "-n", "-W", "tests/lab/requirements-lab.txt", "test"], cwd=root,
                         capture_output=True, text=True, timeout=60, check=False)
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if "-m pytest" in x)
    assert f"OOA_KEYSTONE_VENV={root / '.lab-venv'} " in line
    assert "pip install -q --disable-pip-version-check -r tests/lab/requirements-lab.txt" in dry.stdout


def test_the_lab_lock_holds_keystone_of_2026_1_with_its_closure_pinned():
    lock = STEP.parent.parent.parent / "tests" / "lab" / "requirements-lab.txt"
    pins = dict(line.split("==") for line in lock.read_text().splitlines() if line and not line.startswith("#"))
    assert pins["keystone"].startswith("29.")  # keystone 29.x is 2026.1 (Gazpacho), like neutron 28.x
    assert pins["neutron"].startswith("28.")
    for name in ("python-openstackclient", "Werkzeug", "Flask", "pysaml2", "SQLAlchemy", "PyMySQL"):
        assert name in pins, name
