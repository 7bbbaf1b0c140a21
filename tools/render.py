"""Write, without deploying, what each remote step will run on the host.

    python tools/render.py --stack dev --out render      (make render STACK=dev OUT=render)

Reads Pulumi.<stack>.yaml, validates the settings (no AWS: instance limits are not checked), and
writes OUT/<n>-<step>/command.sh (the exact command text Pulumi sends), OUT/<n>-<step>/params.env
(its stdin parameters: secrets masked, values known only after deploy as <placeholders>), and
OUT/local.conf (DevStack's, with its on-host placeholders). Needs neither the Pulumi CLI nor AWS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.localconf import local_conf_for  # noqa: E402
from components.openstack import active_steps, args_from_settings, step_params  # noqa: E402
from components.remote import command, params  # noqa: E402
from config.settings import SettingsError, load_settings  # noqa: E402

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
    return out


def render(stack: str, out: Path, root: Path = ROOT) -> list[Path]:
    settings = load_settings(stack_config(root / f"Pulumi.{stack}.yaml"))
    args = args_from_settings(
        settings,
        instance=None,
        instance_id="<instance id>",
        provider_attachment=None,
        management_eip=None,
        host="<management Elastic IP>",
        ssh_user="ubuntu",
        private_key=MASK,
        provider_mac="<provider ENI MAC>",
        provider_public_ip="<provider Elastic IP>",
        admin_password=MASK,
    )
    values = step_params(args, "<router id from external-gateway>", "<gateway port id from external-gateway>")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, step in enumerate(active_steps(args), 1):
        folder = out / f"{i}-{step}"
        folder.mkdir(exist_ok=True)
        (folder / "command.sh").write_text(command(step, "apply"))
        (folder / "remove.sh").write_text(command(step, "remove"))
        (folder / "params.env").write_text(params(values[step]))
        written += [folder / "command.sh", folder / "remove.sh", folder / "params.env"]
    (out / "local.conf").write_text(local_conf_for(settings))
    written.append(out / "local.conf")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    ns = parser.parse_args(argv)
    try:
        written = render(ns.stack, ns.out)
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
