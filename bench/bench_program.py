"""Benchmark (not a test): the cost of evaluating the whole program under Pulumi's mocks.

Prints, in milliseconds (median of --repeat runs, warm process) and as a multiple of the first row:
  - the floor: importing pulumi_aws (cold, in a fresh interpreter) and registering one
    aws.ec2.Instance under mocks;
  - the whole program with 1, 10, 100 and 1,000 port forwards (contiguous public ports from one
    CIDR), with the resources and the security-group ingress rules it registers: the forwards
    merge into one port-range rule, so 1,000 of them fit AWS's default 60 rules per group.
The whole program is `tests/harness.py` `run_program`: the program under mocks, then its stack
outputs serialized as the engine receives them.
Run: .venv/bin/python bench/bench_program.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402
import pulumi_aws as aws  # noqa: E402
from pulumi.runtime.stack import wait_for_rpcs  # noqa: E402
from pulumi.runtime.sync_await import _sync_await  # noqa: E402

from tests.harness import Mocks, RecordingMonitor, run_program  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def cold_import_ms(repeat: int) -> float:
    code = "import time; t=time.perf_counter(); import pulumi_aws; print((time.perf_counter()-t)*1000)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(repeat)]
    return statistics.median(runs)


def one_instance() -> None:
    mocks = Mocks()
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="bench", stack="bench", preview=False, monitor=RecordingMonitor(mocks))
    aws.ec2.Instance("floor", ami="ami-0123456789abcdef0", instance_type="m8i.2xlarge")
    _sync_await(wait_for_rpcs())


def forwards_config(n: int) -> dict:
    return {
        "portForwards": [
            {"protocol": "tcp", "publicPort": 1000 + i, "tenantIp": f"192.168.100.{10 + i % 200}", "tenantPort": 22}
            for i in range(n)
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    run_program({})  # warm: imports and first-run caches

    rows = [("import pulumi_aws (cold, fresh interpreter)", cold_import_ms(repeat)),
            ("one aws.ec2.Instance under mocks", median_ms(one_instance, repeat))]
    for n in (1, 10, 100, 1000):
        config = forwards_config(n)
        result = run_program(config)
        rules = len(result.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"))
        rows.append((f"whole program, {n:>4} port forwards ({len(result.resources)} resources, {rules} rules)",
                     median_ms(lambda c=config: run_program(c), repeat)))
    width = max(len(label) for label, _ in rows)
    floor = rows[0][1]
    print(f"{'what':<{width}}  median ms (of {repeat})  x import")
    for label, ms in rows:
        print(f"{label:<{width}}  {ms:10.1f}  {ms / floor:17.2f}")


if __name__ == "__main__":
    main()
