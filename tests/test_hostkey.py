"""Nobody in the middle. The instance's SSH host key is generated, handed over at
boot (cloud-init), kept secret in state, exported, and pinned on every remote step's connection.

What runs here: the program under mocks (the key's path from pulumi-tls to user data and to each
connection's `hostKey`; with compute nodes, each node's own key to its user data, its output and
its steps); the generated cloud-config against cloud-init's own schema (the Debian
package's `cloud-init schema`); and an SSH client that enforces a pinned key — OpenSSH with a
known_hosts built from the same `hostKey` string — against a throw-away sshd on 127.0.0.1: it refuses
a server presenting another key (and sends it nothing), and accepts the pinned one. pulumi-command
v1.2.1 pins with golang.org/x/crypto/ssh (`ParseAuthorizedKey` + `FixedHostKey`, host key algorithms
= the pinned key's type), not OpenSSH; the provider binary itself is not run
here; so the same refusal is also shown with a small Go client (tests/sshpin, built by `make venv`)
that makes exactly those x/crypto/ssh calls, at the version pulumi-command pins. Only AWS proves that
cloud-init on Ubuntu 24.04 installs the key before sshd answers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.host import host_key_cloud_config, known_hosts_line
from tests.harness import MOCK_HOST_PUBLIC_KEY, SECRET_HOST_PRIVATE_KEY, fake, mock_host_key, reveal, run_program
from tests.test_secrets import plain_leaks, secret_values

CI = os.environ.get("CI") == "true"


def need(tool: str) -> str:
    """The tool's path; skip without it (fail under CI=true, like the lab)."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        if CI:
            pytest.fail(f"{tool} is not installed")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture(scope="module")
def run():
    return run_program()


# ---- the program under mocks ------------------------------------------------------------------


def test_every_step_pins_the_generated_host_key(run):
    (host_key,) = [r for r in run.of_type("tls:index/privateKey:PrivateKey") if r.name == "dev-host-key"]
    assert host_key.inputs["algorithm"] == "ED25519"
    steps = run.of_type("command:remote:Command")
    assert steps
    for step in steps:
        connection = unwrap_rpc_secret(step.inputs["connection"])
        assert connection["hostKey"] == MOCK_HOST_PUBLIC_KEY.strip(), step.name
    assert run.outputs["sshHostKey"] == MOCK_HOST_PUBLIC_KEY.strip()
    ip = run.outputs["managementPublicIp"]
    assert run.outputs["sshKnownHosts"] == f"{ip} {MOCK_HOST_PUBLIC_KEY.strip()}"
    assert not {"sshHostKey", "sshKnownHosts"} & run.secret_outputs


def test_the_instance_gets_the_key_pair_as_secret_user_data(run):
    inst = run.one("dev-instance")
    assert is_rpc_secret(inst.inputs["userData"])
    config = yaml.safe_load(unwrap_rpc_secret(inst.inputs["userData"]))
    assert config["ssh_keys"] == {
        "ed25519_private": SECRET_HOST_PRIVATE_KEY,
        "ed25519_public": MOCK_HOST_PUBLIC_KEY.strip(),
    }
    assert config["ssh_deletekeys"] is True
    assert {"userData", "userDataBase64"} <= set(inst.additional_secret_outputs)
    # A new host key is useless to a booted instance (cloud-init runs once): it replaces it.
    assert inst.inputs["userDataReplaceOnChange"] is True
    assert "dev-host-key" in run.depends_on("dev-instance")


def test_an_aws_host_warns_of_no_unpinned_key(run):
    """One warning path for an unpinned host: the existing machine's settings (host.hostKey unset,
    tests/test_modes.py). An AWS host always has its generated key in the contract: no warning."""
    assert not [w for w in run.warnings if "hostKey" in w or "host key" in w.lower()]
    assert run.warnings == []


# ---- compute nodes: each its own key, pinned by its steps ---------------------------------------

NODES = 3


@pytest.fixture(scope="module")
def with_nodes():
    return run_program({"computeNodes": {"count": NODES}, "elasticIpQuota": 100})


def node_key(i: int) -> tuple[str, str]:
    """The mock pulumi-tls pair of node i (tests/harness.py: each node's own)."""
    return mock_host_key(f"dev-compute-{i}-host-key")


def test_each_node_gets_its_own_host_key_as_secret_user_data(with_nodes):
    publics = set()
    for i in range(NODES):
        node = f"dev-compute-{i}"
        private, public = node_key(i)
        publics.add(public)
        assert with_nodes.one(f"{node}-host-key").inputs["algorithm"] == "ED25519"
        assert f"{node}-host-key" in with_nodes.depends_on(f"{node}-instance")
        inst = with_nodes.one(f"{node}-instance")
        assert is_rpc_secret(inst.inputs["userData"]), node
        config = yaml.safe_load(unwrap_rpc_secret(inst.inputs["userData"]))
        assert config["ssh_keys"] == {"ed25519_private": private, "ed25519_public": public.strip()}
        assert config["ssh_deletekeys"] is True
        assert {"userData", "userDataBase64"} <= set(inst.additional_secret_outputs)
        assert inst.inputs["userDataReplaceOnChange"] is True
        # the same cloud-config as the controller's, with the node's key (one helper for both)
        assert unwrap_rpc_secret(inst.inputs["userData"]) == host_key_cloud_config(private, public)
    assert len(publics | {MOCK_HOST_PUBLIC_KEY}) == NODES + 1  # no two machines share a key
    controller = yaml.safe_load(unwrap_rpc_secret(with_nodes.one("dev-instance").inputs["userData"]))
    assert controller["ssh_keys"]["ed25519_public"] == MOCK_HOST_PUBLIC_KEY.strip()


def test_every_step_pins_the_key_of_the_machine_it_dials(with_nodes):
    """Node steps pin their node's key, controller steps the controller's: no step accepts any key."""
    expected = {with_nodes.outputs["managementPublicIp"]: MOCK_HOST_PUBLIC_KEY.strip()}
    for i in range(NODES):
        expected[fake("ip", f"dev-compute-{i}-eip")] = node_key(i)[1].strip()
    dialed = set()
    for step in with_nodes.of_type("command:remote:Command"):
        connection = reveal(step.inputs["connection"])
        assert connection["hostKey"] == expected[connection["host"]], step.name
        dialed.add(connection["host"])
    assert dialed == set(expected)  # every node is dialed (and pinned)
    for i in range(NODES):
        for name in ("prepare-compute", "install-compute"):
            connection = reveal(with_nodes.one(f"dev-compute-{i}-{name}").inputs["connection"])
            assert connection["hostKey"] == node_key(i)[1].strip()


def test_each_nodes_public_host_key_is_an_output_and_its_private_key_stays_secret(with_nodes):
    nodes = with_nodes.outputs["computeNodes"]
    assert [n["sshHostKey"] for n in nodes] == [node_key(i)[1].strip() for i in range(NODES)]
    assert "computeNodes" not in with_nodes.secret_outputs
    # every node's private half is a provider-marked secret, so the generic scan covers it
    assert {node_key(i)[0] for i in range(NODES)} <= with_nodes.generated_secrets
    assert plain_leaks(with_nodes, secret_values(with_nodes, set())) == []


# ---- the cloud-config, against cloud-init's schema --------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    keygen = need("ssh-keygen")
    folder = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("pinned", "other", "client"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(folder / name)], check=True)
        out[name] = folder / name
    return out


def test_cloud_config_is_valid_for_cloud_init(keys, tmp_path):
    cloud_init = need("cloud-init")
    text = host_key_cloud_config(keys["pinned"].read_text(), keys["pinned"].with_suffix(".pub").read_text())
    assert text.startswith("#cloud-config\n")
    path = tmp_path / "user-data"
    path.write_text(text)
    proc = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # 22.4 prints "Valid cloud-config", 24.x "Valid schema"
    parsed = yaml.safe_load(text)["ssh_keys"]
    assert parsed["ed25519_private"] == keys["pinned"].read_text()
    assert parsed["ed25519_public"] == keys["pinned"].with_suffix(".pub").read_text().strip()
    # The validator does refuse a wrong key name (it is not a no-op here).
    path.write_text(text.replace("ed25519_private", "ed25519_privat"))
    bad = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "ed25519_privat" in bad.stdout + bad.stderr


def test_cloud_config_refuses_a_non_ed25519_pair():
    with pytest.raises(ValueError, match="ED25519"):
        host_key_cloud_config("-----BEGIN RSA PRIVATE KEY-----\nx\n", "ssh-rsa AAAA")


# ---- a client that enforces the pinned key, against a throw-away sshd -------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(keys, tmp_path) -> Iterator[Callable[[Path], int]]:
    """Start sshd on 127.0.0.1:<free port> presenting the given host key; yields start(host_key)."""
    binary = need("sshd")
    need("ssh")
    procs: list[subprocess.Popen] = []

    def start(host_key: Path) -> int:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        port = _free_port()
        authorized = tmp_path / "authorized_keys"
        authorized.write_text(keys["client"].with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        config = tmp_path / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile {tmp_path}/sshd.pid\n"
            f"AuthorizedKeysFile {authorized}\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            f"AllowUsers {os.environ.get('USER') or subprocess.check_output(['id', '-un'], text=True).strip()}\n"
        )
        proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {proc.stderr.read() if proc.stderr else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return port
            time.sleep(0.05)
        pytest.fail("sshd did not listen")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def ssh_with_pinned_key(port: int, pinned: str, client_key: Path, tmp: Path, command: str, stdin: str):
    """OpenSSH as strict as pulumi-command with `hostKey`: only the pinned key, of its type, is accepted."""
    known = tmp / "known_hosts"
    known.write_text(known_hosts_line("127.0.0.1", pinned, port) + "\n")
    user = subprocess.check_output(["id", "-un"], text=True).strip()
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(client_key), "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
         "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlgorithms={pinned.split()[0]}",
         "-o", "ConnectTimeout=10", f"{user}@127.0.0.1", command],
        input=stdin, capture_output=True, text=True, timeout=30,
    )


def test_a_step_connection_refuses_a_host_with_another_key(keys, sshd, tmp_path):
    pinned = keys["pinned"].with_suffix(".pub").read_text()  # what the program puts in hostKey
    port = sshd(keys["other"])  # someone else answers on the address
    received = tmp_path / "received"
    proc = ssh_with_pinned_key(port, pinned, keys["client"], tmp_path, f"cat > {received}",
                               "ADMIN_PASSWORD=never-sent-to-an-impostor\n")
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr or "IDENTIFICATION HAS CHANGED" in proc.stderr
    assert not received.exists()  # no command ran, no stdin was delivered


def test_a_step_connection_accepts_the_pinned_host(keys, sshd, tmp_path):
    pinned = keys["pinned"].with_suffix(".pub").read_text()
    port = sshd(keys["pinned"])
    received = tmp_path / "received"
    proc = ssh_with_pinned_key(port, pinned, keys["client"], tmp_path, f"cat > {received}", "PARAM=1\n")
    assert proc.returncode == 0, proc.stderr
    assert received.read_text() == "PARAM=1\n"


# ---- the same, with pulumi-command's own pinning calls (golang.org/x/crypto/ssh) -----------------


def sshpin() -> str:
    """tests/sshpin built by `make venv`: ParseAuthorizedKey + FixedHostKey, as pulumi-command v1.2.1."""
    path = Path(sys.executable).parent / "sshpin"
    if not path.exists():
        if CI:
            pytest.fail(f"{path} is not built (make venv, with Go)")
        pytest.skip(f"{path} is not built (make venv, with Go)")
    return str(path)


def dial_like_pulumi_command(port: int, host_key: str, client_key: Path, tmp: Path, command: str, stdin: str):
    pinned = tmp / "pinned"
    pinned.write_text(host_key)  # the connection's hostKey string, byte for byte
    user = subprocess.check_output(["id", "-un"], text=True).strip()
    return subprocess.run([sshpin(), "-addr", f"127.0.0.1:{port}", "-user", user, "-key", str(client_key),
                           "-host-key-file", str(pinned), "--", command],
                          input=stdin, capture_output=True, text=True, timeout=30)


def test_pulumi_commands_pinning_refuses_a_host_with_another_key(keys, sshd, tmp_path):
    host_key = keys["pinned"].with_suffix(".pub").read_text().strip()  # as components/host.py exports it
    port = sshd(keys["other"])
    received = tmp_path / "received"
    proc = dial_like_pulumi_command(port, host_key, keys["client"], tmp_path, f"cat > {received}",
                                    "ADMIN_PASSWORD=never-sent-to-an-impostor\n")
    assert proc.returncode == 255 and "host key mismatch" in proc.stderr, proc.stderr
    assert not received.exists()


def test_pulumi_commands_pinning_accepts_the_pinned_host_with_pulumi_tls_formatting(keys, sshd, tmp_path):
    # pulumi-tls ends public_key_openssh with a newline; the program strips it; both parse.
    port = sshd(keys["pinned"])
    for host_key in (keys["pinned"].with_suffix(".pub").read_text().strip(),
                     keys["pinned"].with_suffix(".pub").read_text().strip() + "\n"):
        received = tmp_path / "received"
        proc = dial_like_pulumi_command(port, host_key, keys["client"], tmp_path, f"cat > {received}", "PARAM=1\n")
        assert proc.returncode == 0, proc.stderr
        assert received.read_text() == "PARAM=1\n"
