"""`make smoke` (tools/smoke.py) against local stand-ins on 127.0.0.1 and a fake outputs JSON.

A small HTTP server plays Horizon and Keystone, a listening socket plays a forwarded VM, a closed
port plays a forward with nothing behind it, and a listener whose accept queue is full plays a
forward whose packets are dropped. This proves the tool's checks and verdicts, not a cloud.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import smoke  # noqa: E402

KEYSTONE_V3 = {"version": {"id": "v3.14", "status": "stable", "links": []}}


class FakeCloud(BaseHTTPRequestHandler):
    keystone_ok = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/dashboard":
            self.send_response(302)
            self.send_header("Location", "/dashboard/auth/login/")
            self.end_headers()
        elif self.path == "/dashboard/auth/login/":
            self._send(200, b"<html><title>Login - OpenStack Dashboard</title></html>", "text/html")
        elif self.path == "/identity/v3" and self.keystone_ok:
            self._send(200, json.dumps(KEYSTONE_V3).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cloud() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dropping_port() -> Iterator[int]:
    """A listener that never accepts, with its queue filled: further SYNs are dropped (Linux)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    yield port
    for c in fillers:
        c.close()
    sock.close()


def outputs(http_port: int, forwards: list[dict]) -> dict:
    return {
        "horizonUrl": f"http://127.0.0.1:{http_port}/dashboard",
        "keystoneAuthUrl": f"http://127.0.0.1:{http_port}/identity/v3",
        "providerPublicIp": "127.0.0.1",
        "portForwards": forwards,
        "routerId": "ignored",
    }


def fwd(port: int, protocol: str = "tcp") -> dict:
    return {"protocol": protocol, "publicPort": port, "tenantIp": "192.168.100.10", "tenantPort": 22}


def run_tool(tmp_path: Path, outs: dict, *args: str) -> tuple[int, list[str], dict]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outs))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "smoke.py"), "--outputs-file", str(path),
                           "--timeout", "1", *args], capture_output=True, text=True, timeout=60, check=False)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, lines[:-1], json.loads(lines[-1]) if lines else {}


def by_name(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_a_working_stack_passes(tmp_path, cloud, listener):
    rc, lines, report = run_tool(tmp_path, outputs(cloud, [fwd(listener), fwd(5353, "udp")]))
    assert rc == 0 and report["ok"] is True
    assert by_name(report) == {"horizon": "ok", "keystone": "ok", f"forward tcp/{listener}": "ok",
                               "forward udp/5353": "skip"}
    assert any("identity v3.14" in line for line in lines)


def test_nothing_listening_behind_a_forward_warns_and_fails_only_when_strict(tmp_path, cloud, closed_port):
    outs = outputs(cloud, [fwd(closed_port)])
    rc, _, report = run_tool(tmp_path, outs)
    assert rc == 0 and by_name(report)[f"forward tcp/{closed_port}"] == "warn"
    rc, _, report = run_tool(tmp_path, outs, "--strict")
    assert rc == 1 and report["ok"] is False


def test_a_dropped_forward_fails(tmp_path, cloud, dropping_port):
    rc, lines, report = run_tool(tmp_path, outputs(cloud, [fwd(dropping_port)]))
    assert rc == 1 and by_name(report)[f"forward tcp/{dropping_port}"] == "fail"
    assert any("dropped" in line for line in lines)


def test_keystone_and_horizon_failures_fail(tmp_path, closed_port, cloud, monkeypatch):
    rc, _, report = run_tool(tmp_path, outputs(closed_port, []))
    assert rc == 1 and by_name(report) == {"horizon": "fail", "keystone": "fail"}
    broken = outputs(cloud, []) | {"keystoneAuthUrl": f"http://127.0.0.1:{cloud}/dashboard"}  # HTML, not Keystone
    rc, _, report = run_tool(tmp_path, broken)
    assert rc == 1 and by_name(report) == {"horizon": "ok", "keystone": "fail"}


def test_missing_outputs_are_named(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"routerId": "x"}))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "smoke.py"), "--outputs-file", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "horizonUrl" in proc.stderr and "providerPublicIp" in proc.stderr


def test_an_existing_openstack_checks_its_forwards_only(tmp_path, listener):
    outs = {k: v for k, v in outputs(1, [fwd(listener)]).items() if k not in ("horizonUrl", "keystoneAuthUrl")}
    rc, _, report = run_tool(tmp_path, outs)
    assert rc == 0 and by_name(report) == {"horizon": "skip", "keystone": "skip", f"forward tcp/{listener}": "ok"}


def test_without_a_provider_public_ip_forwards_are_skipped(tmp_path, cloud):
    outs = {k: v for k, v in outputs(cloud, [fwd(522)]).items() if k != "providerPublicIp"}
    rc, _, report = run_tool(tmp_path, outs)
    assert rc == 0 and by_name(report) == {"horizon": "ok", "keystone": "ok", "forward tcp/522": "skip"}


def test_a_stack_without_router_is_not_deployed(tmp_path, cloud):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({k: v for k, v in outputs(cloud, []).items() if k != "routerId"}))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "smoke.py"), "--outputs-file", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "routerId" in proc.stderr


def test_stack_outputs_come_from_the_pulumi_cli(monkeypatch):
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout='{"horizonUrl": "h"}', stderr="")

    monkeypatch.setattr(smoke.subprocess, "run", fake_run)
    assert smoke.stack_outputs("dev") == {"horizonUrl": "h"}
    assert calls == [["pulumi", "stack", "output", "--json", "--stack", "dev"]]  # no --show-secrets


# ---- over TLS: Horizon and Keystone verified against the stack's caCertificate -------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory) -> Path:
    """Two CAs (the stack's and another) and a server certificate for 127.0.0.1 signed by the first."""
    d = tmp_path_factory.mktemp("smoke-pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                 f"{ca}.key", "-out", f"{ca}.crt", "-days", "30", "-subj", f"/CN={ca}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "30", "-extfile", "server.ext", "-out", "server.crt", cwd=d)
    return d


@pytest.fixture
def tls_cloud(tls_pki) -> Iterator[int]:
    import ssl

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_pki / "server.crt", tls_pki / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def tls_outputs(port: int, ca_pem: str) -> dict:
    return {
        "horizonUrl": f"https://127.0.0.1:{port}/dashboard",
        "keystoneAuthUrl": f"https://127.0.0.1:{port}/identity/v3",
        "caCertificate": ca_pem,
        "providerPublicIp": "127.0.0.1",
        "portForwards": [],
        "routerId": "ignored",
    }


def test_https_with_the_stacks_ca_passes(tmp_path, tls_cloud, tls_pki):
    rc, lines, report = run_tool(tmp_path, tls_outputs(tls_cloud, (tls_pki / "ca.crt").read_text()))
    assert rc == 0 and by_name(report) == {"horizon": "ok", "keystone": "ok"}, lines


def test_https_signed_by_another_ca_fails(tmp_path, tls_cloud, tls_pki):
    rc, lines, report = run_tool(tmp_path, tls_outputs(tls_cloud, (tls_pki / "other-ca.crt").read_text()))
    assert rc == 1 and by_name(report) == {"horizon": "fail", "keystone": "fail"}
    assert all("CERTIFICATE_VERIFY_FAILED" in c["detail"] for c in report["checks"]), lines
