"""`make lab`: build the emulated VPC around a host running real Neutron (external-gateway has made
the router through the API), show reachability before and after the two networking steps (run over
SSH exactly as Pulumi sends them), remove them, tear everything down."""

from __future__ import annotations

import sys
import time

from tests.lab.net import (
    FLOATING_EIP,
    INTERNET_IP,
    PROVIDER_EIP,
    VM1_IP,
    VM2_IP,
    Lab,
    prerequisites,
)

FORWARDS = f"tcp:522:{VM1_IP}:22,udp:5353:{VM1_IP}:53"


def reachability(lab: Lab) -> list[tuple[str, str]]:
    return [
        (f"tenant vm1 -> internet {INTERNET_IP}:8000 (source seen)", lab.tcp(lab.vm1, INTERNET_IP, 8000, 1)),
        ("tenant vm2 (floating IP) -> internet (source seen)", lab.tcp(lab.vm2, INTERNET_IP, 8000, 1)),
        (f"internet -> floating IP's elastic IP {FLOATING_EIP}:80", lab.tcp(lab.inet, FLOATING_EIP, 80, 1)),
        (f"internet -> {PROVIDER_EIP}:522/tcp (forward to vm1:22)", lab.tcp(lab.inet, PROVIDER_EIP, 522, 1)),
        (f"internet -> {PROVIDER_EIP}:5353/udp (forward to vm1:53)", lab.udp(lab.inet, PROVIDER_EIP, 5353, 1)),
    ]


def show(title: str, lab: Lab) -> None:
    print(f"\n{title}")
    for what, answer in reachability(lab):
        print(f"  {what:58} {'ok: ' + answer if answer else 'FAILS'}")
    print(f"  VPC drop counters: {lab.drops()}")


def main() -> int:
    problems = prerequisites()
    if problems:
        print("the lab cannot run here: " + "; ".join(problems), file=sys.stderr)
        return 2
    started = time.monotonic()
    lab = Lab()
    try:
        lab.build()
        print(
            f"lab {lab.tag}: vpc, internet, VPC peer, host (a booted Debian container: systemd, sshd, "
            f"Open vSwitch; Neutron 28.0.2: API, RPC server, periodic workers, OVS/L3/DHCP agents), "
            f"{lab.router.ns} made by external-gateway, "
            f"vm1 {VM1_IP}, vm2 {VM2_IP} (floating IP), addresses from Neutron's DHCP agent"
        )
        print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in lab.timings.items()))
        show("before the fix:", lab)
        for step, params in (
            ("gateway-mac", lab.gateway_mac_params()),
            ("port-forwards", lab.port_forwards_params(FORWARDS)),
        ):
            p = lab.step(step, "apply", params)
            print(f"\n{step} apply -> {p.returncode}: {p.stdout.strip()}")
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 1
        show("after gateway-mac and port-forwards:", lab)
        for step in ("port-forwards", "gateway-mac"):
            p = lab.step(step, "remove")
            print(f"\n{step} remove -> {p.returncode}: {p.stdout.strip()}")
        show("after remove:", lab)
    finally:
        lab.teardown()
    print(f"\nbuilt, checked and torn down in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
