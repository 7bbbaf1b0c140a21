#!/usr/bin/env python3
"""A stand-in for the `openstack` CLI: the subset external-gateway.sh calls, on a JSON file.

FAKE_OS_STATE is the cloud (networks, subnets, routers by name); FAKE_OS_LOG gets one JSON line
per call: the cloud (`--os-cloud`), OS_CLIENT_CONFIG_FILE and the arguments. Exit 1 with a
message for anything absent, as the real CLI does. Tests only (tests/test_external_gateway.py).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path


def _opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _find(table: dict, ref: str) -> tuple[str, dict] | None:
    for name, obj in table.items():
        if ref in (name, obj["id"]):
            return name, obj
    return None


def _print_value(args: list[str], obj: dict) -> None:
    column = _opt(args, "-c")
    if _opt(args, "-f") == "json":
        print(json.dumps({column: obj.get(column)}))
    else:
        print(obj[column])


def main(argv: list[str]) -> int:
    state_file = Path(os.environ["FAKE_OS_STATE"])
    cloud = json.loads(state_file.read_text())
    assert argv[0] == "--os-cloud", argv
    with open(os.environ["FAKE_OS_LOG"], "a") as log:
        log.write(json.dumps({"cloud": argv[1], "config": os.environ.get("OS_CLIENT_CONFIG_FILE"),
                              "args": argv[2:]}) + "\n")
    kind, verb, *rest = argv[2:]
    table = cloud[kind + "s"] if kind in ("network", "subnet", "router") else None
    if verb == "show":
        found = _find(table, rest[0])
        if not found:
            print(f"No {kind} found for {rest[0]}", file=sys.stderr)
            return 1
        obj = found[1]
        if kind == "router":
            gw = obj["gateway"]
            obj = {**obj, "external_gateway_info": {"external_fixed_ips": [{"ip_address": gw}]} if gw else None}
        _print_value(rest, obj)
    elif verb == "create":
        obj = {"id": str(uuid.uuid4())}
        if kind == "subnet":
            obj |= {"network": _opt(rest, "--network"), "cidr": _opt(rest, "--subnet-range"),
                    "pool": _opt(rest, "--allocation-pool")}
        if kind == "router":
            obj |= {"gateway": None, "gateway_port": None, "interfaces": []}
        table[rest[0]] = obj  # type: ignore[index]
    elif verb == "delete":
        name, _ = _find(table, rest[0]) or (None, None)
        if name is None:
            return 1
        del table[name]  # type: ignore[arg-type]
    elif kind == "network" and verb == "list":  # the step's "does the cloud answer" probe
        for obj in cloud["networks"].values():
            print(obj["id"])
    elif kind == "subnet" and verb == "list":
        for obj in cloud["subnets"].values():
            if obj["network"] == _opt(rest, "--network") and obj["cidr"] == _opt(rest, "--subnet-range"):
                print(obj["id"])
    elif kind == "router" and verb == "set":
        _, router = _find(table, rest[0])  # type: ignore[misc]
        fixed = dict(kv.split("=") for kv in _opt(rest, "--fixed-ip").split(","))  # type: ignore[union-attr]
        router["gateway"], router["gateway_port"] = fixed["ip-address"], str(uuid.uuid4())
    elif kind == "router" and verb == "unset":
        _, router = _find(table, rest[-1])  # type: ignore[misc]
        router["gateway"] = router["gateway_port"] = None
    elif kind == "router" and verb in ("add", "remove"):
        _, router = _find(table, rest[1])  # type: ignore[misc]
        subnet_id = _find(cloud["subnets"], rest[2])[1]["id"]  # type: ignore[index]
        if verb == "add":
            router["interfaces"].append(subnet_id)
        else:
            router["interfaces"].remove(subnet_id)
    elif kind == "port" and verb == "list":
        _, router = _find(cloud["routers"], _opt(rest, "--router"))  # type: ignore[misc]
        if _opt(rest, "--device-owner") == "network:router_gateway":
            if router["gateway_port"]:
                print(router["gateway_port"])
        else:
            print(json.dumps([{"Fixed IP Addresses": [{"subnet_id": s}]} for s in router["interfaces"]]))
    else:
        print(f"fake openstack: unsupported {argv[2:]}", file=sys.stderr)
        return 2
    state_file.write_text(json.dumps(cloud))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
