"""onhost/steps/public-endpoints.sh: control flow only, against a FAKE `openstack` CLI.

The fake (below, put first on PATH) keeps a catalog of endpoints in a JSON file, records every
call, and behaves like the CLI on the host in one respect that matters: a call through a catalog
interface whose identity endpoint is not DevStack's plain http://HOST_IP one fails (from the host,
the public https URL is neither routed nor trusted). So these tests prove the step's bookkeeping
(what it changes, in which order, through which interface; idempotence; remove restores exactly)
and nothing about Keystone itself: the real Keystone behind the TLS front is in the lab
(tests/lab/test_public_api.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

STEP = Path(__file__).resolve().parent.parent / "onhost" / "steps" / "public-endpoints.sh"
HOST_IP = "10.42.1.10"
PUBLIC = "https://198.51.100.7"

FAKE_OPENSTACK = r'''#!/usr/bin/env python3
"""A fake openstack CLI: `endpoint list|set|create|delete` and `service list` on a JSON catalog
($FAKE_OS_DB); the services are those its endpoints name."""
import fcntl, json, os, sys, time

args = sys.argv[1:]
started = time.monotonic()
time.sleep(float(os.environ.get("FAKE_OS_STARTUP", "0")))  # the CLI's start-up; calls may run side by side
db_path = os.environ["FAKE_OS_DB"]
lock = open(db_path + ".lock", "w")
fcntl.flock(lock, fcntl.LOCK_EX)  # past its start-up, one call at a time on the catalog file
with open(os.environ["FAKE_OS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
with open(os.environ["FAKE_OS_LOG"] + ".times", "a") as times:
    times.write(json.dumps([started, time.monotonic(), args[4:6]]) + "\n")
db = json.load(open(db_path))

def opt(name, default=None):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default

cloud = opt("--os-cloud")
interface = opt("--os-interface", "public")
fmt = opt("-f")
column = opt("-c")
assert cloud == "devstack-admin", cloud
identity = [e for e in db if e["service_type"] == "identity" and e["interface"] == interface]
if not identity:
    sys.exit(f"{interface} endpoint for identity service not found")
if not identity[0]["url"].startswith(os.environ["FAKE_OS_REACHABLE"]):
    sys.exit(f"SSL: CERTIFICATE_VERIFY_FAILED on {identity[0]['url']}")

def find(eid):
    for e in db:
        if e["id"] == eid:
            return e
    sys.exit(f"No endpoint with an ID of '{eid}' exists.")

kind, action, rest = args[0], args[1], args[2:]
if (kind, action) == ("service", "list"):
    assert fmt == "json"
    services = {e["service_id"]: {"ID": e["service_id"], "Name": e["service_name"], "Type": e["service_type"]}
                for e in db}
    print(json.dumps(list(services.values())))
    sys.exit(0)
assert kind == "endpoint", args
if action == "list":
    assert fmt == "json"
    print(json.dumps([{"ID": e["id"], "Region": e["region"], "Service Name": e["service_name"],
                       "Service Type": e["service_type"], "Enabled": True, "Interface": e["interface"],
                       "URL": e["url"]} for e in db]))
elif action == "set":
    url = rest[rest.index("--url") + 1]
    find(rest[-1])["url"] = url
elif action == "create":
    region = rest[rest.index("--region") + 1]
    service, iface, url = [a for a in rest if a not in ("--region", region)]
    svc = [e for e in db if e["service_id"] == service][0]
    new = dict(svc, id=f"new-{len(db)}", interface=iface, url=url, region=region)
    db.append(new)
    assert (fmt, column) == ("value", "id")
    print(new["id"])
elif action == "delete":  # several ids, as the real CLI takes them
    for eid in rest:
        find(eid)
    db[:] = [e for e in db if e["id"] not in rest]
else:
    sys.exit(f"unsupported: {args}")
json.dump(db, open(db_path, "w"))
'''


def endpoint(eid: str, service: str, stype: str, interface: str, url: str, region: str = "RegionOne") -> dict:
    return {"id": eid, "region": region, "service_id": f"svc-{service}", "service_name": service,
            "service_type": stype, "interface": interface, "url": url}


def devstack_catalog() -> list[dict]:
    """What DevStack (uWSGI mode) registers: Keystone public (+ internal here), the rest public only."""
    return [
        endpoint("e-ks-pub", "keystone", "identity", "public", f"http://{HOST_IP}/identity"),
        endpoint("e-nova", "nova", "compute", "public", f"http://{HOST_IP}/compute/v2.1"),
        endpoint("e-neutron", "neutron", "network", "public", f"http://{HOST_IP}:80/networking"),
        endpoint("e-cinder", "cinder", "block-storage", "public", f"http://{HOST_IP}/volume/v3/$(project_id)s"),
        endpoint("e-other", "swift", "object-store", "public", f"http://{HOST_IP}:8080/v1/AUTH_$(project_id)s"),
    ]


@pytest.fixture
def fake(tmp_path: Path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cli = bindir / "openstack"
    cli.write_text(FAKE_OPENSTACK)
    cli.chmod(0o755)
    db = tmp_path / "catalog.json"
    db.write_text(json.dumps(devstack_catalog()))
    return tmp_path


def run(fake: Path, action: str, stdin: str = "", base: str = PUBLIC,
        backend: str = HOST_IP, startup: str = "0") -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{fake / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(fake / "state"),
           "FAKE_OS_DB": str(fake / "catalog.json"), "FAKE_OS_LOG": str(fake / "calls.log"),
           "FAKE_OS_REACHABLE": f"http://{HOST_IP}/", "FAKE_OS_STARTUP": startup}
    if action == "apply" and not stdin:
        stdin = f"PUBLIC_BASE_URL={base}\nBACKEND_HOST={backend}\n"
    return subprocess.run(["bash", str(STEP), action], input=stdin, env=env, capture_output=True, text=True,
                          check=False, timeout=60)


def catalog(fake: Path) -> dict[tuple[str, str], str]:
    return {(e["service_name"], e["interface"]): e["url"] for e in json.loads((fake / "catalog.json").read_text())}


def calls(fake: Path) -> list[list[str]]:
    path = fake / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fake_cli_apply_moves_public_endpoints_and_keeps_internal_ones(fake):
    proc = run(fake, "apply")
    assert proc.returncode == 0, proc.stderr
    assert catalog(fake) == {
        ("keystone", "public"): f"{PUBLIC}/identity",
        ("keystone", "internal"): f"http://{HOST_IP}/identity",
        ("nova", "public"): f"{PUBLIC}/compute/v2.1",
        ("nova", "internal"): f"http://{HOST_IP}/compute/v2.1",
        ("neutron", "public"): f"{PUBLIC}/networking",
        ("neutron", "internal"): f"http://{HOST_IP}:80/networking",
        ("cinder", "public"): f"{PUBLIC}/volume/v3/$(project_id)s",
        ("cinder", "internal"): f"http://{HOST_IP}/volume/v3/$(project_id)s",
        # not behind DevStack's Apache on port 80: the front does not reach it, so it stays
        ("swift", "public"): f"http://{HOST_IP}:8080/v1/AUTH_$(project_id)s",
    }
    report = json.loads(proc.stdout)
    assert len(report["public"]) == 4 and len(report["internal_created"]) == 4
    assert report["left_alone"] == [f"http://{HOST_IP}:8080/v1/AUTH_$(project_id)s"]
    # every move went through the internal interface; every creation happened before any move
    log = calls(fake)
    sets = [i for i, c in enumerate(log) if c[4:6] == ["endpoint", "set"]]
    creates = [i for i, c in enumerate(log) if c[4:6] == ["endpoint", "create"]]
    assert max(creates) < min(sets)
    assert all(log[i][3] == "internal" for i in sets)


def test_the_catalog_is_read_with_two_listings_whatever_its_size(fake):
    """Each CLI call is a start-up and a token: the catalog is read by one endpoint and one
    service listing, never a show per endpoint; then one create per missing internal endpoint and
    one set per move (DevStack's catalog here: 5 endpoints, 4 of them behind the front)."""
    assert run(fake, "apply").returncode == 0
    verbs = [tuple(c[4:6]) for c in calls(fake)]
    assert sorted(verbs[:2]) == [("endpoint", "list"), ("service", "list")]
    assert sorted(verbs[2:]) == [("endpoint", "create")] * 4 + [("endpoint", "set")] * 4
    n = len(verbs)
    assert run(fake, "apply").returncode == 0
    assert sorted(tuple(c[4:6]) for c in calls(fake)[n:]) == [("endpoint", "list"), ("service", "list")]
    n = len(calls(fake))
    assert run(fake, "remove").returncode == 0  # a listing, a set per move, one delete for all four
    assert sorted(tuple(c[4:6]) for c in calls(fake)[n:]) == [("endpoint", "delete")] + [("endpoint", "list")] + [
        ("endpoint", "set")
    ] * 4


def test_calls_that_do_not_depend_on_each_other_run_side_by_side(fake):
    """The two listings, then the creates, then the moves, each batch started together: apply pays
    three CLI start-ups of wall time (the real CLI's is ~1 s; FAKE_OS_STARTUP stands for it), not
    ten; remove the listing, the restores together, then one delete."""
    times = fake / "calls.log.times"

    def batches() -> list[list[str]]:
        """The calls grouped by overlap in time, each group's verbs sorted."""
        rows = sorted(json.loads(line) for line in times.read_text().splitlines())
        groups: list[list] = []
        for start, end, verb in rows:
            if groups and start < max(e for _, e, _ in groups[-1]):
                groups[-1].append((start, end, verb))
            else:
                groups.append([(start, end, verb)])
        times.write_text("")
        return [sorted(" ".join(v) for _, _, v in g) for g in groups]

    assert run(fake, "apply", startup="0.4").returncode == 0
    assert batches() == [["endpoint list", "service list"], ["endpoint create"] * 4, ["endpoint set"] * 4]
    assert run(fake, "remove", startup="0.4").returncode == 0
    assert batches() == [["endpoint list"], ["endpoint set"] * 4, ["endpoint delete"]]


def test_an_endpoint_whose_service_is_ambiguous_stops_before_any_change(fake):
    db = devstack_catalog()
    db.append(endpoint("e-nova2", "nova", "compute", "public", f"http://{HOST_IP}/compute2"))
    db[-1]["service_id"] = "svc-nova-second"  # another service named nova, of the same type
    (fake / "catalog.json").write_text(json.dumps(db))
    proc = run(fake, "apply")
    assert proc.returncode != 0
    assert "endpoint e-nova: 2 services named nova of type compute" in proc.stderr
    assert not [c for c in calls(fake) if c[5] in ("set", "create", "delete")]
    assert json.loads((fake / "catalog.json").read_text()) == db


def test_fake_cli_apply_twice_changes_nothing_the_second_time(fake):
    assert run(fake, "apply").returncode == 0
    once = catalog(fake)
    n = len(calls(fake))
    again = run(fake, "apply")
    assert again.returncode == 0, again.stderr
    assert catalog(fake) == once
    assert not [c for c in calls(fake)[n:] if c[4] == "endpoint" and c[5] in ("set", "create", "delete")]
    assert json.loads(again.stdout)["internal_created"] == []


def test_fake_cli_a_new_base_url_rewrites_from_the_originals(fake):
    assert run(fake, "apply").returncode == 0
    assert run(fake, "apply", base="https://cloud.example.org:8443").returncode == 0
    now = catalog(fake)
    assert now[("nova", "public")] == "https://cloud.example.org:8443/compute/v2.1"
    assert now[("neutron", "internal")] == f"http://{HOST_IP}:80/networking"
    removed = run(fake, "remove")
    assert removed.returncode == 0, removed.stderr
    assert catalog(fake) == {(e["service_name"], e["interface"]): e["url"] for e in devstack_catalog()}


def test_fake_cli_remove_restores_devstack_and_keeps_an_existing_internal_endpoint(fake):
    existing = devstack_catalog() + [endpoint("e-ks-int", "keystone", "identity", "internal", f"http://{HOST_IP}/identity")]
    (fake / "catalog.json").write_text(json.dumps(existing))
    assert run(fake, "apply").returncode == 0
    assert sum(1 for k in catalog(fake) if k == ("keystone", "internal")) == 1
    assert len([e for e in json.loads((fake / "catalog.json").read_text()) if e["service_name"] == "keystone"]) == 2
    removed = run(fake, "remove")
    assert removed.returncode == 0, removed.stderr
    assert json.loads((fake / "catalog.json").read_text()) == existing  # exactly DevStack's, ids included
    assert json.loads(removed.stdout) == {"removed": True, "restored": 4, "internal_deleted": 3}
    assert not (fake / "state" / "public-endpoints").exists()
    again = run(fake, "remove")
    assert again.returncode == 0 and "nothing to remove" in again.stderr


@pytest.mark.parametrize(
    "base,message",
    [
        ("http://198.51.100.7", "not https://<host>[:port] without a path"),
        ("https://198.51.100.7/identity", "not https://<host>[:port] without a path"),
        ("https://198.51.100.300", "bad IPv4 address"),
        ("https://198.51.100.7:99999", "bad port"),
        ("https://-bad.example", "bad host name"),
    ],
)
def test_bad_parameters_stop_before_any_call(fake, base, message):
    proc = run(fake, "apply", base=base)
    assert proc.returncode != 0 and message in proc.stderr
    assert calls(fake) == [] and not (fake / "state" / "public-endpoints").exists()


@pytest.mark.parametrize("backend", [f"{HOST_IP}:0", "10.42.1", f"{HOST_IP}:80:1"])
def test_bad_backend_host_stops_before_any_call(fake, backend):
    proc = run(fake, "apply", backend=backend)
    assert proc.returncode != 0 and "BACKEND_HOST is not <ipv4>[:<port>]" in proc.stderr
    assert calls(fake) == []


def test_fake_cli_a_backend_port_selects_only_the_endpoints_on_that_port(fake):
    proc = run(fake, "apply", backend=f"{HOST_IP}:8080")
    assert proc.returncode == 0, proc.stderr
    now = catalog(fake)
    assert now[("swift", "public")] == f"{PUBLIC}/v1/AUTH_$(project_id)s"
    assert now[("nova", "public")] == f"http://{HOST_IP}/compute/v2.1"  # port 80: not this backend


def test_unknown_action_is_refused(fake):
    proc = run(fake, "destroy-everything")
    assert proc.returncode != 0 and "usage:" in proc.stderr
