"""onhost/steps/tls-front.sh on a real Apache: its generated virtual host, served for real.

What runs here, without the network lab: the step's `config` action (the file part of `apply`)
writes its files under a temp root; a real Apache (Debian's apache2-bin: `apache2 -t`, then
`apache2 -DFOREGROUND` on 127.0.0.1 high ports) loads exactly the generated virtual host, with a
CA and server certificate made by openssl with the parameters of components/tls.py (ECDSA P-256,
IP SAN). A Python HTTP server stands in for DevStack's Apache (the backend) and a raw socket server
for nova-novncproxy (WebSocket upgrade). Checked: TLS verified with the stack's CA and refused with
another CA; requests proxied with X-Forwarded-Proto; the noVNC WebSocket tunnelled over TLS; the
key file 0600 and never in the state; twice = once; unconfig removes every file; bad parameters
stop the script before any change; `apply`/`remove` with fake a2enmod/a2dismod/apache2ctl around
the real configuration test (modules recorded and undone, reload only on change, restore when
Apache refuses). Not run here: the host's packaged Apache (a2enmod, systemctl reload), DevStack's
real services behind the front (the lab: tests/lab/test_public_api.py).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests import netns

STEPS = Path(__file__).resolve().parent.parent / "onhost" / "steps"
SCRIPT = STEPS / "tls-front.sh"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
PUBLIC = "127.0.0.1"
DNS = "cloud.example.test"


def _need_apache() -> None:
    if not Path(APACHE).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("apache2 is missing (.ci/run installs apache2-bin)")
        pytest.skip("apache2 is not installed (apt-get install apache2-bin)")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3650", "-subj", f"/O=openstack-on-aws/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_server(d: Path, ca: str, name: str, ip: str, dns: str | None) -> None:
    san = f"IP:{ip}" + (f",DNS:{dns}" if dns else "")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O=openstack-on-aws/CN={ip}", cwd=d)
    (d / f"{name}.ext").write_text(
        f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "365", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_server(d, "ca", "server", PUBLIC, DNS)
    make_server(d, "ca", "elsewhere", "198.51.100.99", None)  # right CA, wrong address
    make_server(d, "other-ca", "foreign", PUBLIC, DNS)  # right address, another CA
    return d


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def params(pki: Path, **over: str) -> dict[str, str]:
    values = {
        "PUBLIC_ADDRESS": PUBLIC,
        "DNS_NAME": DNS,
        "SERVER_CERT": b64(pki / "server.crt"),
        "SERVER_KEY": b64(pki / "server.key"),
        "CA_CERT": b64(pki / "ca.crt"),
        "HTTPS_PORT": "443",
        "BACKEND_URL": "http://127.0.0.1:80",
        "NOVNC_URL": "http://127.0.0.1:6080",
        "PLAIN_SOURCES": "",
    }
    values.update(over)
    return values


def run(action: str, values: dict[str, str] | None, tmp: Path, root: Path) -> subprocess.CompletedProcess[str]:
    stdin = "".join(f"{k}={v}\n" for k, v in (values or {}).items())
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp / "state"), "OOA_ROOT": str(root)}
    return subprocess.run(["bash", str(SCRIPT), action], input=stdin, env=env, capture_output=True, text=True,
                          check=False, timeout=60)


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(root))] = (oct(p.stat().st_mode & 0o777), p.read_text())
    return out


def horizon_root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "opt/stack/horizon/openstack_dashboard/local").mkdir(parents=True)
    return root


# ---- files: idempotence, removal, modes, Horizon settings ----


def test_config_twice_equals_once_and_unconfig_removes_everything(tmp_path, pki):
    root = horizon_root(tmp_path)
    before = snapshot(root)
    first = run("config", params(pki), tmp_path, root)
    assert first.returncode == 0, first.stderr
    assert '"changed":true' in first.stdout
    once = snapshot(root)
    second = run("config", params(pki), tmp_path, root)
    assert second.returncode == 0, second.stderr
    assert '"changed":false' in second.stdout
    assert snapshot(root) == once

    assert once["etc/openstack-on-aws/tls/server.key"][0] == "0o600"
    assert once["etc/openstack-on-aws/tls/server.crt"][0] == "0o644"
    assert once["etc/apache2/sites-enabled/openstack-on-aws-tls.conf"] == (
        "link", "../sites-available/openstack-on-aws-tls.conf")
    site = once["etc/apache2/sites-available/openstack-on-aws-tls.conf"][1]
    assert "<VirtualHost *:443>" in site and "ServerAlias cloud.example.test" in site
    key_text = (pki / "server.key").read_text()
    assert key_text not in site  # the key is only in its own file
    assert not (tmp_path / "state").exists() or key_text not in "".join(
        p.read_text() for p in (tmp_path / "state").rglob("*") if p.is_file())

    snippet = once["opt/stack/horizon/openstack_dashboard/local/local_settings.d/_9000_openstack_on_aws_tls.py"][1]
    settings: dict[str, object] = {}
    exec(compile(snippet, "snippet", "exec"), settings)  # noqa: S102 - the snippet is Python for Django
    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings["CSRF_TRUSTED_ORIGINS"] == ["https://127.0.0.1", "https://cloud.example.test"]
    assert settings["OPENSTACK_ENDPOINT_TYPE"] == "internalURL"
    assert settings["SECONDARY_ENDPOINT_TYPE"] == "publicURL"

    gone = run("unconfig", None, tmp_path, root)
    assert gone.returncode == 0, gone.stderr
    assert snapshot(root) == before


def test_a_new_certificate_replaces_the_old_one(tmp_path, pki):
    root = horizon_root(tmp_path)
    assert run("config", params(pki), tmp_path, root).returncode == 0
    changed = run("config", params(pki, HTTPS_PORT="8443", DNS_NAME=""), tmp_path, root)
    assert changed.returncode == 0, changed.stderr
    assert '"changed":true' in changed.stdout and '"url":"https://127.0.0.1:8443/"' in changed.stdout
    site = (root / "etc/apache2/sites-available/openstack-on-aws-tls.conf").read_text()
    assert "<VirtualHost *:8443>" in site and "ServerAlias" not in site


def test_no_horizon_no_snippet(tmp_path, pki):
    root = tmp_path / "root"
    root.mkdir()
    proc = run("config", params(pki), tmp_path, root)
    assert proc.returncode == 0, proc.stderr
    assert "no Horizon" in proc.stderr
    assert not (root / "opt").exists()


@pytest.mark.parametrize(
    "over,message",
    [
        ({"PUBLIC_ADDRESS": "198.51.100.7"}, "does not name PUBLIC_ADDRESS 198.51.100.7"),
        ({"PUBLIC_ADDRESS": "127.0.0.10"}, "does not name PUBLIC_ADDRESS 127.0.0.10"),  # not a prefix match
        ({"DNS_NAME": "other.example.test"}, "does not name DNS_NAME"),
        ({"DNS_NAME": "bad name"}, "DNS_NAME is not a DNS name"),
        ({"SERVER_CERT": "elsewhere.crt", "SERVER_KEY": "elsewhere.key"}, "does not name PUBLIC_ADDRESS"),
        ({"SERVER_CERT": "foreign.crt", "SERVER_KEY": "foreign.key"}, "not a server certificate signed by CA_CERT"),
        ({"SERVER_KEY": "foreign.key"}, "SERVER_KEY is not the key of SERVER_CERT"),
        ({"SERVER_KEY": "!!not base64!!"}, "SERVER_KEY is not base64"),
        ({"SERVER_CERT": "ca.key"}, "SERVER_CERT is not a PEM CERTIFICATE"),
        ({"BACKEND_URL": "http://127.0.0.1:80/;x"}, "BACKEND_URL is not http://<ipv4>:<port>"),
        ({"NOVNC_URL": "https://127.0.0.1:6080"}, "NOVNC_URL is not http://<ipv4>:<port>"),
        ({"HTTPS_PORT": "70000"}, "HTTPS_PORT is not a valid port"),
        ({"PLAIN_SOURCES": "10.0.1.0/24,10.0.1.11"}, "PLAIN_SOURCES is not a list of IPv4 CIDRs"),
        ({"PLAIN_SOURCES": "0.0.0.0/0;reboot"}, "PLAIN_SOURCES is not a list of IPv4 CIDRs"),
    ],
)
@pytest.mark.parametrize("action", ["config", "apply"])
def test_bad_parameters_stop_before_any_change(tmp_path, pki, over, message, action):
    values = params(pki)
    for key, value in over.items():
        values[key] = b64(pki / value) if (pki / value).is_file() else value
    root = horizon_root(tmp_path)
    before = snapshot(root)
    proc = run(action, values, tmp_path, root)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert snapshot(root) == before
    assert not (tmp_path / "state").exists()
    assert (pki / "server.key").read_text().splitlines()[1] not in proc.stderr + proc.stdout


def test_missing_and_unknown_parameters(tmp_path, pki):
    values = params(pki)
    del values["CA_CERT"]
    assert "missing parameter CA_CERT" in run("config", values, tmp_path, tmp_path).stderr
    assert "unknown parameter EXTRA" in run("config", {**params(pki), "EXTRA": "1"}, tmp_path, tmp_path).stderr


def test_remove_without_state_is_a_no_op_and_unknown_action_refused(tmp_path):
    proc = run("remove", None, tmp_path, tmp_path)
    assert proc.returncode == 0 and "nothing to remove" in proc.stderr
    proc = run("destroy-everything", None, tmp_path, tmp_path)
    assert proc.returncode != 0 and "usage:" in proc.stderr


# ---- the real Apache ----


class Backend(http.server.BaseHTTPRequestHandler):
    """Stands in for DevStack's Apache: answers with what it was asked, records the headers."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Backend.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        body = f"backend saw {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class ServerWide(Backend):
    """Stands in for a DevStack API whose server-wide ProxyPass line the TLS vhost inherits."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        proto = self.headers.get("X-Forwarded-Proto", "")
        Backend.seen.append({"path": self.path, "via": "server-wide", "https": proto})
        body = b"server-wide " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class NoVnc(socketserver.BaseRequestHandler):
    """Stands in for nova-novncproxy: accepts a WebSocket upgrade, then echoes raw bytes."""

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head.splitlines()[1:]}
        if headers.get("upgrade", "").lower() != "websocket":
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        self.request.sendall(
            f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        while chunk := self.request.recv(4096):
            self.request.sendall(b"echo:" + chunk)


def serve(server: socketserver.BaseServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


APACHE_CONF = """ServerRoot "{tmp}"
ServerName localhost
PidFile {tmp}/apache.pid
DefaultRuntimeDir {tmp}
ErrorLog {tmp}/error.log
LogLevel warn
Mutex file:{tmp} default
User nobody
Group nogroup
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule socache_shmcb_module {mods}/mod_socache_shmcb.so
LoadModule ssl_module {mods}/mod_ssl.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_http_module {mods}/mod_proxy_http.so
LoadModule proxy_wstunnel_module {mods}/mod_proxy_wstunnel.so
LoadModule rewrite_module {mods}/mod_rewrite.so
LoadModule headers_module {mods}/mod_headers.so
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
Listen 127.0.0.1:{port} https
IncludeOptional {root}/etc/apache2/sites-enabled/*.conf
"""


@pytest.fixture
def front(tmp_path, pki):
    """The generated virtual host served by a real Apache, proxying to local stand-ins."""
    _need_apache()
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    uwsgi = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ServerWide)
    serve(uwsgi)
    novnc = socketserver.ThreadingTCPServer(("127.0.0.1", 0), NoVnc)
    novnc.daemon_threads = True
    serve(backend)
    serve(novnc)
    port = free_port()
    root = tmp_path / "root"
    root.mkdir()
    tmp_path.chmod(0o755)  # Apache's children run as nobody
    proc = run("config", params(pki, HTTPS_PORT=str(port), BACKEND_URL=f"http://127.0.0.1:{backend.server_port}",
                                NOVNC_URL=f"http://127.0.0.1:{novnc.server_address[1]}"), tmp_path, root)
    assert proc.returncode == 0, proc.stderr
    conf = tmp_path / "apache.conf"
    # As DevStack writes its uWSGI APIs: a server-wide ProxyPass (here to a second stand-in).
    server_wide = f'ProxyPass "/uwsgi-api" "http://127.0.0.1:{uwsgi.server_port}/uwsgi-api" retry=0\n'
    conf.write_text(server_wide + APACHE_CONF.format(tmp=tmp_path, mods=MODULES, port=port, root=root))
    test = subprocess.run([APACHE, "-f", str(conf), "-t"], capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stderr  # Apache's own configuration test accepts the generated vhost
    server = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("Apache did not listen: " + (tmp_path / "error.log").read_text())
        Backend.seen.clear()
        yield port
    finally:
        server.terminate()
        server.wait(timeout=20)
        backend.shutdown()
        uwsgi.shutdown()
        novnc.shutdown()


def context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def test_the_front_serves_the_apis_over_tls_verified_with_the_stack_ca(front, pki):
    conn = http.client.HTTPSConnection(PUBLIC, front, context=context(pki / "ca.crt"), timeout=10)
    conn.request("GET", "/identity/v3")
    response = conn.getresponse()
    assert response.status == 200
    assert response.read() == b"backend saw /identity/v3"
    (seen,) = Backend.seen
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == str(front)
    assert seen["host"] == f"{PUBLIC}:{front}"  # the public name reaches the services
    cert = conn.sock.getpeercert()  # type: ignore[union-attr]
    assert ("IP Address", PUBLIC) in cert["subjectAltName"] and ("DNS", DNS) in cert["subjectAltName"]


def test_server_wide_proxypass_lines_are_inherited_and_win(front, pki):
    # DevStack's `ProxyPass "/identity" "unix:…|uwsgi://…"` lines sit outside any vhost: the TLS
    # vhost inherits them, and they match before its own `ProxyPass /`.
    conn = http.client.HTTPSConnection(PUBLIC, front, context=context(pki / "ca.crt"), timeout=10)
    conn.request("GET", "/uwsgi-api/v3")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"server-wide /uwsgi-api/v3"
    assert Backend.seen == [{"path": "/uwsgi-api/v3", "via": "server-wide", "https": "https"}]


def test_the_front_is_refused_by_a_client_trusting_another_ca(front, pki):
    conn = http.client.HTTPSConnection(PUBLIC, front, context=context(pki / "other-ca.crt"), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/identity/v3")
    assert Backend.seen == []  # nothing reached the services


def test_curl_with_the_stack_ca(front, pki):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    ok = subprocess.run([curl, "-sS", "--cacert", str(pki / "ca.crt"), f"https://{PUBLIC}:{front}/compute/v2.1"],
                        capture_output=True, text=True, check=False, timeout=20)
    assert ok.returncode == 0 and ok.stdout == "backend saw /compute/v2.1", ok.stderr
    bad = subprocess.run([curl, "-sS", "--cacert", str(pki / "other-ca.crt"), f"https://{PUBLIC}:{front}/"],
                         capture_output=True, text=True, check=False, timeout=20)
    assert bad.returncode == 60, bad.stderr  # curl: peer certificate cannot be authenticated
    plain = subprocess.run([curl, "-sS", f"http://{PUBLIC}:{front}/"], capture_output=True, text=True,
                           check=False, timeout=20)
    assert "backend saw" not in plain.stdout  # plain HTTP on the TLS port gets nothing from the services


def websocket(port: int, ca: Path, path: str) -> bytes:
    """Open a WebSocket through the front at `path`, send VNC's greeting, return what comes back."""
    raw = socket.create_connection((PUBLIC, port), timeout=10)
    with context(ca).wrap_socket(raw, server_hostname=PUBLIC) as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {PUBLIC}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            return head
        tls.sendall(b"RFB 003.008\n")
        return tls.recv(4096)


# noVNC's own path, and the one nova's console URL makes noVNC open (path=?token=...)
@pytest.mark.parametrize("path", ["/novnc/websockify?token=abc", "/?token=abc", "/websockify?token=abc"])
def test_novnc_websocket_over_tls(front, pki, path):
    assert websocket(front, pki / "ca.crt", path) == b"echo:RFB 003.008\n"
    assert Backend.seen == []


def test_the_root_without_a_websocket_goes_to_the_backend(front, pki):
    conn = http.client.HTTPSConnection(PUBLIC, front, context=context(pki / "ca.crt"), timeout=10)
    conn.request("GET", "/?token=abc")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"backend saw /?token=abc"


def test_the_programs_parameters_are_what_the_script_takes(tmp_path, pki):
    """components/tls.py's tls_front_params, serialised by onhost/remote.py, accepted by the step."""
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    from components.tls import tls_front_params
    from onhost.remote import params as stdin_of
    from tests import harness

    pulumi.runtime.set_mocks(harness.Mocks(), project=harness.PROJECT, stack="dev", preview=False)
    values = tls_front_params(PUBLIC, DNS, (pki / "ca.crt").read_text(), (pki / "server.crt").read_text(),
                              (pki / "server.key").read_text())
    resolved = {k: _sync_await(pulumi.Output.from_input(v).future()) for k, v in values.items()}
    root = horizon_root(tmp_path)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp_path / "state"), "OOA_ROOT": str(root)}
    proc = subprocess.run(["bash", str(SCRIPT), "config"], input=stdin_of(resolved), env=env, capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/openstack-on-aws/tls/server.key").read_text() == (pki / "server.key").read_text()
    assert '"url":"https://cloud.example.test/"' in proc.stdout


# ---- apply / remove: control flow, with FAKE a2enmod/a2dismod/apache2ctl (the config test is real) ----
# They run in a private user + network namespace (tests/netns.py): apply and remove set the real
# iptables there (the host firewall), never this machine's; its /run has no systemd (no unit).

FAKE_A2 = """#!/bin/bash
# fake $0: records the call; a2enmod/a2dismod make/remove the mods-enabled link under $OOA_ROOT
echo "$(basename "$0") $*" >>"$FAKE_LOG"
mod=${@: -1}
case $(basename "$0") in
  a2enmod) ln -sf "../mods-available/$mod.load" "$OOA_ROOT/etc/apache2/mods-enabled/$mod.load"
    # as Debian's a2enmod enables ssl's dependency (mods-available/ssl.load: "# Depends: ... socache_shmcb")
    [ "$mod" != ssl ] || ln -sf ../mods-available/socache_shmcb.load "$OOA_ROOT/etc/apache2/mods-enabled/" ;;
  a2dismod) rm -f "$OOA_ROOT/etc/apache2/mods-enabled/$mod.load" ;;
esac
"""
FAKE_APACHE2CTL = """#!/bin/bash
# fake apache2ctl: -t is the real Apache's configuration test on the test configuration
echo "apache2ctl $*" >>"$FAKE_LOG"
if [ "$1" = -t ]; then
  [ -z "${FAKE_CONFIGTEST_FAIL:-}" ] || { echo "AH00526: Syntax error (fake)" >&2; exit 1; }
  exec "$APACHE" -t -f "$FAKE_APACHE_CONF"
fi
[ "$1" != graceful ] || [ -z "${FAKE_RELOAD_FAIL:-}" ] || { echo "httpd (no pid file) not running" >&2; exit 1; }
"""


@pytest.fixture
def host(tmp_path):
    """A temp root with Apache's module links (proxy already enabled, as DevStack does) and fakes,
    and the private namespace the step runs in."""
    _need_apache()
    why = netns.available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI=true: a failure, not a skip)")
        pytest.skip(why)
    root = horizon_root(tmp_path)
    enabled = root / "etc/apache2/mods-enabled"
    enabled.mkdir(parents=True)
    (enabled / "proxy.load").symlink_to("../mods-available/proxy.load")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("a2enmod", FAKE_A2), ("a2dismod", FAKE_A2), ("apache2ctl", FAKE_APACHE2CTL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    conf = tmp_path / "apache.conf"
    conf.write_text(APACHE_CONF.format(tmp=tmp_path, mods=MODULES, port=free_port(), root=root))
    net = netns.PrivateNet(tmp_path / "ns").start()
    try:
        yield tmp_path, root, net
    finally:
        net.stop()


def run_host(host, action: str, values: dict[str, str] | None, **env: str) -> subprocess.CompletedProcess[str]:
    tmp, root, net = host
    stdin = "".join(f"{k}={v}\n" for k, v in (values or {}).items())
    full = {"PATH": f"{tmp / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp / "state"),
            "OOA_ROOT": str(root), "FAKE_LOG": str(tmp / "calls.log"), "APACHE": APACHE,
            "FAKE_APACHE_CONF": str(tmp / "apache.conf"), **env}
    return net.run("bash", str(SCRIPT), action, stdin=stdin, env=full)


def filter_table(host) -> dict[str, list[str]]:
    """The private namespace's filter table, IPv4 and IPv6, as `-S` prints it."""
    return {ipt: host[2].sh(f"{ipt} -w -S").splitlines() for ipt in ("iptables", "ip6tables")}


def fake_calls(host) -> list[str]:
    log = host[0] / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_fake_apache_apply_enables_what_is_missing_tests_reloads_and_remove_undoes(host, pki):
    tmp, root, _ = host
    values = params(pki, HTTPS_PORT=str(free_port()))
    before = snapshot(root)
    first = run_host(host, "apply", values)
    assert first.returncode == 0, first.stderr
    assert fake_calls(host) == [
        "a2enmod -q ssl", "a2enmod -q proxy_http", "a2enmod -q proxy_wstunnel", "a2enmod -q rewrite",
        "a2enmod -q headers", "apache2ctl -t", "apache2ctl graceful",
    ]  # proxy was enabled already: not touched
    n = len(fake_calls(host))
    again = run_host(host, "apply", values)
    assert again.returncode == 0 and '"changed":false' in again.stdout
    assert fake_calls(host)[n:] == ["apache2ctl -t"]  # nothing changed: no reload
    n = len(fake_calls(host))
    removed = run_host(host, "remove", None)
    assert removed.returncode == 0, removed.stderr
    # the last enabled first, and ssl's dependency that a2enmod enabled with it too
    assert fake_calls(host)[n:] == [
        "a2dismod -q -f headers", "a2dismod -q -f rewrite", "a2dismod -q -f proxy_wstunnel",
        "a2dismod -q -f proxy_http", "a2dismod -q -f ssl", "a2dismod -q -f socache_shmcb",
        "apache2ctl -t", "apache2ctl graceful",
    ]
    assert snapshot(root) == before  # proxy.load still there; every file and module link of ours gone
    assert not (tmp / "state" / "tls-front").exists()


def test_fake_apache_a_reload_that_fails_fails_the_step(host, pki):
    """Apache not reloaded (not running, a unit that cannot reload): the new front is not served,
    so apply must not report success."""
    before = snapshot(host[1])
    failed = run_host(host, "apply", params(pki), FAKE_RELOAD_FAIL="1")
    assert failed.returncode != 0
    assert "Apache did not reload" in failed.stderr and "Apache reloaded" not in failed.stderr
    assert fake_calls(host)[-1] == "apache2ctl graceful"
    n = len(fake_calls(host))
    again = run_host(host, "apply", params(pki))  # the files were put back: this apply reloads
    assert again.returncode == 0 and '"changed":true' in again.stdout, again.stderr
    assert fake_calls(host)[n:][-1] == "apache2ctl graceful"
    assert run_host(host, "remove", None).returncode == 0
    assert snapshot(host[1]) == before


def test_fake_apache_a_refused_configuration_restores_the_previous_files(host, pki):
    tmp, root, _ = host
    assert run_host(host, "apply", params(pki)).returncode == 0
    applied = snapshot(root)
    n = len(fake_calls(host))
    refused = run_host(host, "apply", params(pki, HTTPS_PORT="8443", DNS_NAME=""), FAKE_CONFIGTEST_FAIL="1")
    assert refused.returncode != 0
    assert "Apache refuses the configuration (previous files restored)" in refused.stderr
    assert "AH00526" in refused.stderr
    assert snapshot(root) == applied
    assert "apache2ctl graceful" not in fake_calls(host)[n:]


# ---- the host firewall (tls-front.sh's header: DevStack's plain-text ports) ----

PORTS = "80,3306,5672,6080,8775,5900:5999"


def ours(lines: list[str]) -> list[str]:
    return [line for line in lines if "OOA-PLAIN" in line]


def test_fake_apache_the_firewall_closes_the_plain_ports_to_all_but_the_host_and_the_cluster(host, pki):
    """apply sets the chain (IPv4: the host and PLAIN_SOURCES; IPv6: the host) above what INPUT
    had; twice = once; new sources change the rules only (Apache is not reloaded for them); a lost
    chain (a reboot, a flush) comes back with `reapply`, what the boot unit and the timer run;
    remove leaves the filter table as it was."""
    tmp, root, net = host
    net.sh("for t in iptables ip6tables; do $t -w -N neutron-filter-top && $t -w -A INPUT -j neutron-filter-top; done")
    before = filter_table(host)
    values = params(pki, HTTPS_PORT=str(free_port()), PLAIN_SOURCES="10.42.1.0/24")
    first = run_host(host, "apply", values)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert (out["plain_ports"], out["plain_sources"], out["changed"]) == (PORTS, "10.42.1.0/24", True)
    closing = f"-A OOA-PLAIN -p tcp -m multiport --dports {PORTS} -j REJECT --reject-with tcp-reset"
    table = filter_table(host)
    assert ours(table["iptables"]) == [
        "-N OOA-PLAIN", "-A INPUT -j OOA-PLAIN", "-A OOA-PLAIN -i lo -j RETURN",
        "-A OOA-PLAIN -s 10.42.1.0/24 -j RETURN", closing,
    ]
    assert ours(table["ip6tables"]) == [
        "-N OOA-PLAIN", "-A INPUT -j OOA-PLAIN", "-A OOA-PLAIN -i lo -j RETURN", closing,
    ]
    for lines in table.values():  # ours first, what was there kept
        inputs = [x for x in lines if x.startswith("-A INPUT")]
        assert inputs == ["-A INPUT -j OOA-PLAIN", "-A INPUT -j neutron-filter-top"]

    again = run_host(host, "apply", values)
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False, again.stderr
    assert filter_table(host) == table

    n = len(fake_calls(host))
    wider = run_host(host, "apply", {**values, "PLAIN_SOURCES": "10.42.1.0/24,10.42.9.0/24"})
    assert wider.returncode == 0 and json.loads(wider.stdout)["changed"] is True, wider.stderr
    assert "apache2ctl graceful" not in fake_calls(host)[n:]
    moved = filter_table(host)
    assert ours(moved["iptables"])[3:5] == [
        "-A OOA-PLAIN -s 10.42.1.0/24 -j RETURN", "-A OOA-PLAIN -s 10.42.9.0/24 -j RETURN",
    ]

    lose = "$t -w -D INPUT -j OOA-PLAIN && $t -w -F OOA-PLAIN && $t -w -X OOA-PLAIN"
    net.sh(f"for t in iptables ip6tables; do {lose}; done")  # as a reboot loses them
    back = run_host(host, "reapply", None)
    assert back.returncode == 0 and "closes tcp" in back.stderr, back.stderr
    assert sorted(filter_table(host)["iptables"]) == sorted(moved["iptables"])
    assert ours(filter_table(host)["ip6tables"]) == ours(moved["ip6tables"])
    quiet = run_host(host, "reapply", None)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # nothing lost: nothing done

    assert run_host(host, "remove", None).returncode == 0
    assert filter_table(host) == before
    assert not (tmp / "state" / "tls-front").exists() and not (tmp / "state" / "tls-front.lock").exists()
    nothing = run_host(host, "reapply", None)
    assert nothing.returncode == 0 and "nothing applied" in nothing.stderr
