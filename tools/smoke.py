"""Check a deployed stack from the outside: Horizon, Keystone and each TCP port forward.

    python tools/smoke.py --stack dev            (make smoke STACK=dev)
    python tools/smoke.py --outputs-file out.json

Reads the stack's outputs (`pulumi stack output --json`, no secrets needed) and, from this machine:
GETs `horizonUrl` (must answer below 400 after redirects) and `keystoneAuthUrl` (must answer
Keystone's v3 version document), over https verified against the stack's `caCertificate` output
(the TLS front: a certificate the CA did not sign, or that does not name the address, fails),
and opens a TCP connection to `providerPublicIp:publicPort` for
each TCP entry of `portForwards`. A forward is `open` (something accepted), `refused` or
`unreachable` (the path answered, but nothing listens: the router namespace or a VM without a
listener at the tenant port — a warning, a failure with --strict), or `timeout` (dropped on the way:
a security group, allowedCidrs/sourceCidrs not including this machine, or a broken path — a
failure). UDP forwards have no handshake to check and are listed as skipped. Per mode (README
"Outputs"): an existing OpenStack has no `horizonUrl`/`keystoneAuthUrl` (listed as skipped), an
existing machine without `host.providerPublicIp` no `providerPublicIp` (its forwards skipped); a
stack with nothing to check at all exits 2 naming the missing outputs. Exit status 0 when every
check passed, 1 otherwise; one line per check, then one JSON line with every result.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str


def stack_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output --json` of the stack (secrets stay hidden: none is needed)."""
    try:
        proc = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack],
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SystemExit("smoke: the pulumi CLI is not on PATH (or pass --outputs-file)") from None
    if proc.returncode != 0:
        raise SystemExit(f"smoke: pulumi stack output failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def tls_context(ca_pem: str | None) -> ssl.SSLContext | None:
    """Verification against the stack's CA only (not the system's): `caCertificate`; None: no CA output."""
    return ssl.create_default_context(cadata=ca_pem) if ca_pem else None


def http_get(url: str, timeout: float, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, redirects followed; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 - the stack's own URLs
            return response.status, response.read(65536)
    except urllib.error.HTTPError as err:
        return err.code, err.read(65536)


def check_horizon(url: str, timeout: float, context: ssl.SSLContext | None = None) -> Check:
    try:
        status, _ = http_get(url, timeout, context)
    except (OSError, urllib.error.URLError) as err:
        return Check("horizon", "fail", f"{url}: {getattr(err, 'reason', err)}")
    return Check("horizon", "ok" if status < 400 else "fail", f"{url}: HTTP {status}")


def check_keystone(url: str, timeout: float, context: ssl.SSLContext | None = None) -> Check:
    try:
        status, body = http_get(url, timeout, context)
    except (OSError, urllib.error.URLError) as err:
        return Check("keystone", "fail", f"{url}: {getattr(err, 'reason', err)}")
    try:
        version = json.loads(body)["version"]["id"]
    except (ValueError, KeyError, TypeError):
        return Check("keystone", "fail", f"{url}: HTTP {status}, not Keystone's version document")
    ok = status == 200 and str(version).startswith("v3")
    return Check("keystone", "ok" if ok else "fail", f"{url}: HTTP {status}, identity {version}")


def probe_tcp(host: str, port: int, timeout: float) -> str:
    """open | refused | unreachable | timeout: what a TCP handshake to host:port meets."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as err:
        if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        raise


def check_forward(host: str, fwd: dict[str, Any], timeout: float) -> Check:
    port = int(fwd["publicPort"])
    target = f"{fwd.get('tenantIp')}:{fwd.get('tenantPort')}"
    name = f"forward {fwd.get('protocol', 'tcp')}/{port}"
    if fwd.get("protocol", "tcp") != "tcp":
        return Check(name, "skip", f"{host}:{port} -> {target}: udp has no handshake to check")
    result = probe_tcp(host, port, timeout)
    status = {"open": "ok", "refused": "warn", "unreachable": "warn", "timeout": "fail"}[result]
    why = {
        "open": "accepted",
        "refused": "refused: the path answers, nothing listens (no VM listening at the tenant port?)",
        "unreachable": "host unreachable: the router answers, no VM at the tenant IP?",
        "timeout": f"no answer in {timeout:g} s: dropped (security group, sourceCidrs, or the path)",
    }[result]
    return Check(name, status, f"{host}:{port} -> {target}: {why}")


WEB = ("horizonUrl", "keystoneAuthUrl")


def run_checks(outputs: dict[str, Any], timeout: float) -> list[Check]:
    """Each check the stack's outputs allow; what its mode does not export is listed as skipped."""
    if all(k in outputs for k in WEB):
        context = tls_context(outputs.get("caCertificate"))
        checks = [
            check_horizon(outputs["horizonUrl"], timeout, context),
            check_keystone(outputs["keystoneAuthUrl"], timeout, context),
        ]
    else:
        why = "no horizonUrl/keystoneAuthUrl output: OpenStack was not installed by this stack"
        checks = [Check("horizon", "skip", why), Check("keystone", "skip", why)]
    host = outputs.get("providerPublicIp")
    for fwd in outputs.get("portForwards") or []:
        if host is None:
            name = f"forward {fwd.get('protocol', 'tcp')}/{fwd.get('publicPort')}"
            checks.append(Check(name, "skip", "no providerPublicIp output (host.providerPublicIp unset)"))
        else:
            checks.append(check_forward(host, fwd, timeout))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read the outputs of this stack with the pulumi CLI")
    source.add_argument("--outputs-file", type=Path, help="read the outputs from this JSON file instead")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per check (default 10)")
    parser.add_argument("--strict", action="store_true", help="a forward that nothing answers on fails too")
    ns = parser.parse_args(argv)
    outputs = json.loads(ns.outputs_file.read_text()) if ns.outputs_file else stack_outputs(ns.stack)
    missing = [k for k in (*WEB, "providerPublicIp") if k not in outputs]
    if "routerId" not in outputs or ("providerPublicIp" in missing and any(k in missing for k in WEB)):
        missing += [] if "routerId" in outputs else ["routerId"]
        print(f"smoke: the stack has no output {', '.join(missing)} (not deployed yet?)", file=sys.stderr)
        return 2
    checks = run_checks(outputs, ns.timeout)
    failed = {"fail", "warn"} if ns.strict else {"fail"}
    for c in checks:
        print(f"{c.status:<4}  {c.name:<20} {c.detail}")
    ok = not any(c.status in failed for c in checks)
    print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
