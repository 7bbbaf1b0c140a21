"""Write, without deploying, what each remote step will run on the host.

    python tools/render.py --stack dev --out render      (make render STACK=dev OUT=render)
    python tools/render.py --config examples/stacks/existing-openstack.yaml --out render
                                                         (make render CONFIG=<file> OUT=render)

Reads Pulumi.<stack>.yaml, validates the settings (no AWS: instance limits are not checked), and
writes, for each step its mode runs (onhost/chain.py): OUT/<n>-<step>/command.sh (the exact
command text Pulumi sends) and remove.sh, OUT/1-scripts/stdin.sh (the upload row's stdin: the
script that installs the scripts the others run), OUT/<n>-<step>/params.env (any other step's
stdin parameters: secrets masked, values known only after deploy as <placeholders>), and
OUT/local.conf (DevStack's, with its on-host placeholders; DevStack mode only). With compute
nodes: OUT/compute-<i>/<n>-<step>/ (and runs-on.txt: the node or the controller) and
OUT/compute-<i>/local.conf per node, and OUT/<n>-discover-hosts/ on the controller. Needs
neither the Pulumi CLI nor AWS; builds the host contract as the program does (components/contract.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.compute import (  # noqa: E402
    compute_local_conf_for,
    node_inputs,
    placeholder_nodes,
    steps_args_from_settings,
)
from components.contract import HostContract, contract_for_render  # noqa: E402
from components.openstack import (  # noqa: E402
    TlsParts,
    args_from_settings,
    host_scripts,
    local_conf_for,
    selected_steps,
    step_inputs,
    tls_names,
)
from config.settings import NAMESPACE, Settings, SettingsError, load_settings  # noqa: E402
from onhost.chain import placeholders  # noqa: E402
from onhost.compute_chain import CONTROLLER, DISCOVER, NODE_CHAIN, NODE_SCRIPTS, discover_params  # noqa: E402
from onhost.remote import UPLOAD, stdin, texts  # noqa: E402

MASK = "<secret: masked>"
ENCRYPTED = "ENCRYPTED_IN_STACK_FILE"


def stack_config(path: Path) -> dict[str, str]:
    """The stack file's config as Pulumi hands it to the program (structured values as JSON)."""
    import json

    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    out = {}
    for key, value in raw.items():
        if isinstance(value, dict) and "secure" in value:
            # Encrypted in the stack file and never rendered (the output shows MASK): a stand-in
            # that passes validation, which `pulumi preview` repeats on the decrypted value.
            value = ENCRYPTED
        out[key] = value if isinstance(value, str) else json.dumps(value)
    # Render never logs in: an existing machine's login key (required by the program, and absent from
    # the example files, which hold no secret) gets the same stand-in, so any stack file renders.
    host = raw.get(f"{NAMESPACE}:host")
    if isinstance(host, dict) and host.get("kind") == "existing":
        out.setdefault(f"{NAMESPACE}:sshPrivateKey", ENCRYPTED)
    return out


def render(stack: str | None, out: Path, root: Path = ROOT, config_file: Path | None = None) -> list[Path]:
    """Write the selected steps' commands and parameters for Pulumi.<stack>.yaml (or `config_file`)."""
    settings = load_settings(stack_config(config_file or root / f"Pulumi.{stack}.yaml"))
    # The same host contract and step rows as the program, with placeholders for deploy-time values.
    contract = contract_for_render(settings, MASK)
    # The certificates exist only after deploy; the server key is a secret: masked.
    tls_ip, tls_dns = tls_names(contract, settings.public_dns_name)
    tls = TlsParts(
        public_ip=tls_ip,
        ca_certificate="<CA certificate from tls, base64>",
        server_certificate="<server certificate from tls, base64>",
        server_private_key=MASK,
        dns_name=tls_dns,
        encode=False,
    )
    args = args_from_settings(settings, contract, MASK, tls)
    selected = selected_steps(args)
    inputs = step_inputs(args, placeholders(selected))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    scripts = host_scripts(args)
    for i, step in enumerate(selected, 1):
        text = stdin(step.name, scripts, step.params(inputs))
        written += _write_step(out / f"{i}-{step.name}", texts(step.name, scripts), text)
    if args.install == "devstack":
        (out / "local.conf").write_text(local_conf_for(contract))
        written.append(out / "local.conf")
    if settings.host is None and settings.compute_nodes.count:
        written += render_compute(settings, contract, out, len(selected))
    return written


def _write_step(folder: Path, commands: tuple[str, str], text: str, runs_on: str | None = None) -> list[Path]:
    """A step's command, remove command and stdin `text` (params.env; the upload row's: stdin.sh)
    (and, where the chain spans machines, where it runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    given = "stdin.sh" if folder.name.endswith(f"-{UPLOAD}") else "params.env"
    files = {"command.sh": commands[0], "remove.sh": commands[1], given: text}
    if runs_on is not None:
        files["runs-on.txt"] = runs_on + "\n"
    for file, text in files.items():
        (folder / file).write_text(text)
    return [folder / f for f in files]


def render_compute(settings: Settings, controller: HostContract, out: Path, controller_steps: int) -> list[Path]:
    """Each compute node's steps and local.conf (OUT/compute-<i>/), and the controller's discovery
    after its own steps (OUT/<n+1>-discover-hosts/); runs-on.txt says where each step runs."""
    nodes = placeholder_nodes(settings, MASK)
    args = steps_args_from_settings(settings, controller, nodes, MASK)
    written: list[Path] = []
    for node in nodes:
        inputs = node_inputs(args, node)
        base = out / node.hostname
        for i, step in enumerate(NODE_CHAIN, 1):
            where = "controller" if step.runs_on == CONTROLLER else f"{node.hostname} ({node.ssh.host})"
            commands = texts(step.name, NODE_SCRIPTS)
            text = stdin(step.name, NODE_SCRIPTS, step.params(inputs))
            written += _write_step(base / f"{i}-{step.name}", commands, text, where)
        (base / "local.conf").write_text(compute_local_conf_for(controller, node))
        written.append(base / "local.conf")
    hostnames = [n.hostname for n in nodes]
    written += _write_step(
        out / f"{controller_steps + 1}-{DISCOVER.name}",
        texts(DISCOVER.name, []),
        stdin(DISCOVER.name, [], discover_params(hostnames, args.cloud, args.clouds_yaml)),
        "controller",
    )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: reads Pulumi.<stack>.yaml")
    source.add_argument("--config", type=Path, help="a stack config file (e.g. examples/stacks/*.yaml)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    ns = parser.parse_args(argv)
    try:
        written = render(ns.stack, ns.out, config_file=ns.config)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"render: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
