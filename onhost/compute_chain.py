"""The compute nodes' step table: the rows `ComputeSteps` (components/compute.py) creates per node
and once on the controller, from which the program, `make render`, the policy pack and the tests
derive, as onhost/chain.py is for the controller's steps.

Per node, in order: `scripts` (lib.sh and the node's scripts installed on the node,
onhost/remote.py), `compute-record` on the controller (its `remove` takes the node's nova-compute
service and agents out of the controller), `prepare-compute` and `install-compute` on the node;
then once, on the controller, `discover-hosts` after every node's install. Deleting runs the other
way round: a removed node first stops its services (install-compute's remove), then the controller
forgets it (compute-record's remove), then its instance goes. The controller's own upload row
(onhost/chain.py) installs the controller's scripts of this table (CONTROLLER_SCRIPTS) with its own.

Standard library only, so that the policy pack's own virtualenv can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from onhost.chain import devstack_params, no_params, scripts_of
from onhost.remote import UPLOAD

NODE = "node"
CONTROLLER = "controller"


@dataclass(frozen=True)
class NodeInputs:
    """What a row's parameter builder reads; `admin_password` may be a `pulumi.Output` or `<masked>`."""

    hostname: str
    node_ip: IPv4Address
    controller_ip: IPv4Address
    branch: str
    local_conf: str
    admin_password: object
    cloud: str
    clouds_yaml: str


@dataclass(frozen=True)
class NodeStep:
    """One compute-node step (docs/compute-nodes.md)."""

    name: str
    params: Callable[[NodeInputs], dict[str, object]]
    runs_on: str
    """`node` (over SSH to the node) or `controller`."""
    after: str | None
    timeout: str = "15m"
    delete_timeout: str = "15m"
    secret: bool = False
    """Its stdin carries a secret: stdin, stdout and stderr are kept secret as a whole."""
    skip_remove_with_node: bool = True
    """Skip `remove` when the node's machine goes anyway (deletedWith); False: always run it."""

    @property
    def script(self) -> str:
        return f"{self.name}.sh"


def _record(i: NodeInputs) -> dict[str, object]:
    return {"NODE_HOSTNAME": i.hostname, "CLOUD": i.cloud, "CLOUDS_YAML": i.clouds_yaml}


def _prepare(i: NodeInputs) -> dict[str, object]:
    return {"NODE_HOSTNAME": i.hostname, "NODE_IP": i.node_ip}


def _install(i: NodeInputs) -> dict[str, object]:
    return {**devstack_params(i.branch, i.local_conf, i.admin_password), "CONTROLLER_IP": i.controller_ip}


NODE_CHAIN: tuple[NodeStep, ...] = (
    # lib.sh and the node's scripts, on the node: the node's steps run them, so its remove comes last.
    NodeStep(UPLOAD, no_params, runs_on=NODE, after=None, timeout="30m"),
    # On the controller; skipped only when the controller itself goes (set by ComputeSteps).
    NodeStep("compute-record", _record, runs_on=CONTROLLER, after=UPLOAD, skip_remove_with_node=False),
    NodeStep("prepare-compute", _prepare, runs_on=NODE, after="compute-record", timeout="30m"),
    # Its remove stops the node's services before compute-record's remove forgets them.
    NodeStep(
        "install-compute",
        _install,
        runs_on=NODE,
        after="prepare-compute",
        timeout="60m",
        delete_timeout="30m",
        secret=True,
        skip_remove_with_node=False,
    ),
)
NODE_BY_NAME = {s.name: s for s in NODE_CHAIN}
# Once, on the controller, after every node's last step.
DISCOVER = NodeStep("discover-hosts", lambda i: {}, runs_on=CONTROLLER, after="install-compute", timeout="20m")
STEPS = (*NODE_BY_NAME, DISCOVER.name)
NODE_SCRIPTS = scripts_of(s.name for s in NODE_CHAIN if s.runs_on == NODE)
"""The scripts a node's upload row installs."""
CONTROLLER_SCRIPTS = [s.name for s in (*NODE_CHAIN, DISCOVER) if s.runs_on == CONTROLLER]
"""This table's scripts that run on the controller: its upload row installs them too."""


def discover_params(hostnames: list[str], cloud: str, clouds_yaml: str) -> dict[str, object]:
    """discover-hosts' parameters: every node's host name."""
    return {"NODES": ",".join(hostnames), "CLOUD": cloud, "CLOUDS_YAML": clouds_yaml}


def _check() -> None:
    seen: set[str] = set()
    for s in NODE_CHAIN:
        bad_after = s.after is not None and s.after not in seen
        if s.name in seen or bad_after or s.runs_on not in (NODE, CONTROLLER):
            raise ValueError(f"compute step table: row {s.name!r} is a duplicate, runs after an unknown step or where?")
        seen.add(s.name)


_check()
