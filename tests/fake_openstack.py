#!/usr/bin/env python3
"""A stand-in for the `openstack` CLI: the subset external-gateway.sh calls, on a JSON file.

FAKE_OS_STATE is the cloud (networks, subnets, routers by name; a "name" field lists one under
another name, so that two can share one); FAKE_OS_LOG gets one JSON line
per call: the cloud (`--os-cloud`), OS_CLIENT_CONFIG_FILE and the arguments. Objects are found by
name or id, as the real CLI finds them; exit 1 with a message for anything absent, as the real CLI
does. Listings print what `-f json -c ...` prints (the CLI's column headers); creates print the id
for `-f value -c id`. Anything else (a `show`, say) is unsupported: exit 2, so a step that goes back
to a call per object fails its tests. Tests only (tests/test_external_gateway.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import uuid
from pathlib import Path


def _opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _find(table: dict, ref: str | None) -> tuple[str, dict] | None:
    for name, obj in table.items():
        if ref in (name, obj["id"]):
            return name, obj
    return None


def _columns(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "-c"]


def _listing(args: list[str], rows: list[dict]) -> None:
    assert _opt(args, "-f") == "json", args
    print(json.dumps([{c: row[c] for c in _columns(args)} for row in rows]))


def _gateway_info(router: dict) -> dict | None:
    return {"external_fixed_ips": [{"ip_address": router["gateway"]}]} if router["gateway"] else None


def main(argv: list[str]) -> int:
    # Calls may run side by side (the step's listings): one at a time past the start-up (they share
    # the state file); FAKE_OS_STARTUP seconds stand for the CLI's start-up; FAKE_OS_FAIL ("<kind>
    # <verb>") makes that call fail at once; every call's pid goes to <FAKE_OS_STATE>.pids.
    started = time.monotonic()
    state_file = Path(os.environ["FAKE_OS_STATE"])
    with open(f"{state_file}.pids", "a") as pids:
        pids.write(f"{os.getpid()}\n")
    if " ".join(argv[2:4]) == os.environ.get("FAKE_OS_FAIL"):  # as the real CLI fails on a wrong cloud
        print(f"fake openstack: {os.environ['FAKE_OS_FAIL']} fails", file=sys.stderr)
        return 1
    time.sleep(float(os.environ.get("FAKE_OS_STARTUP", "0")))
    with open(f"{state_file}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _call(state_file, argv, started)


def _call(state_file: Path, argv: list[str], started: float) -> int:
    cloud = json.loads(state_file.read_text())
    assert argv[0] == "--os-cloud", argv
    with open(os.environ["FAKE_OS_LOG"], "a") as log:
        log.write(json.dumps({"cloud": argv[1], "config": os.environ.get("OS_CLIENT_CONFIG_FILE"),
                              "args": argv[2:], "started": started, "ended": time.monotonic()}) + "\n")
    kind, verb, *rest = argv[2:]
    table = cloud[kind + "s"] if kind in ("network", "subnet", "router") else None
    networks = cloud["networks"]

    def net_id(ref: str | None) -> str | None:  # subnets may name their network by name or id
        found = _find(networks, ref)
        return found[1]["id"] if found else ref

    if verb == "list" and kind == "network":  # also the step's "does the cloud answer" probe
        _listing(rest, [{"ID": o["id"], "Name": o.get("name", n)} for n, o in networks.items()])
    elif verb == "list" and kind == "subnet":
        rows = [{"ID": o["id"], "Name": n, "Network": net_id(o["network"]), "Subnet": o["cidr"]}
                for n, o in cloud["subnets"].items()]
        _listing(rest, rows)
    elif verb == "list" and kind == "router":
        assert "--long" in rest, rest  # the gateway info is a --long column
        rows = [{"ID": o["id"], "Name": n, "External gateway info": _gateway_info(o)} for n, o in table.items()]
        _listing(rest, rows)
    elif verb == "list" and kind == "port":
        assert "--long" in rest, rest  # Device Owner is a --long column
        found = _find(cloud["routers"], _opt(rest, "--router"))
        if not found:
            print(f"No router found for {_opt(rest, '--router')}", file=sys.stderr)
            return 1
        router = found[1]
        rows = [{"ID": router["gateway_port"], "Device Owner": "network:router_gateway",
                 "Fixed IP Addresses": []}] if router["gateway_port"] else []
        rows += [{"ID": f"if-{s}", "Device Owner": "network:router_interface",
                  "Fixed IP Addresses": [{"subnet_id": s}]} for s in router["interfaces"]]
        _listing(rest, rows)
    elif verb == "create":
        assert (_opt(rest, "-f"), _opt(rest, "-c")) == ("value", "id"), rest
        obj: dict = {"id": str(uuid.uuid4())}
        if kind == "subnet":
            found = _find(networks, _opt(rest, "--network"))
            if not found:
                print(f"No network found for {_opt(rest, '--network')}", file=sys.stderr)
                return 1
            obj |= {"network": found[0], "cidr": _opt(rest, "--subnet-range"), "pool": _opt(rest, "--allocation-pool")}
        if kind == "router":
            obj |= {"gateway": None, "gateway_port": None, "interfaces": []}
            if "--external-gateway" in rest:
                fixed = dict(kv.split("=") for kv in _opt(rest, "--fixed-ip").split(","))  # type: ignore[union-attr]
                obj["gateway"], obj["gateway_port"] = fixed["ip-address"], str(uuid.uuid4())
        table[rest[0]] = obj  # type: ignore[index]
        print(obj["id"])
    elif verb == "delete":  # several names, as the real CLI takes them
        for wanted in rest:
            name, _ = _find(table, wanted) or (None, None)  # type: ignore[arg-type]
            if name is None:
                return 1
            del table[name]  # type: ignore[arg-type]
            if kind == "network":  # Neutron deletes the network's subnets with it
                for subnet in [k for k, v in cloud["subnets"].items() if v["network"] == name]:
                    del cloud["subnets"][subnet]
    elif kind == "router" and verb == "set":
        _, router = _find(table, rest[0])  # type: ignore[arg-type,misc]
        fixed = dict(kv.split("=") for kv in _opt(rest, "--fixed-ip").split(","))  # type: ignore[union-attr]
        router["gateway"], router["gateway_port"] = fixed["ip-address"], str(uuid.uuid4())
    elif kind == "router" and verb == "unset":
        _, router = _find(table, rest[-1])  # type: ignore[arg-type,misc]
        router["gateway"] = router["gateway_port"] = None
    elif kind == "router" and verb in ("add", "remove"):
        _, router = _find(table, rest[1])  # type: ignore[arg-type,misc]
        subnet_id = _find(cloud["subnets"], rest[2])[1]["id"]  # type: ignore[index]
        if verb == "add":
            router["interfaces"].append(subnet_id)
        else:
            router["interfaces"].remove(subnet_id)
    else:
        print(f"fake openstack: unsupported {argv[2:]}", file=sys.stderr)
        return 2
    state_file.write_text(json.dumps(cloud))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
