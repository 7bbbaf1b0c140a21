"""The remote step scripts of prepare-host, install-openstack and external-gateway, run here.

What runs here: parameter validation (every bad parameter stops the script before it changes
anything), and prepare-host's boot-time files (netplan, cloud-init) written under a temp root:
twice = once, config/unconfig round trip. Waiting for cloud-init, the NIC found by MAC on a
Nitro instance, DevStack's install and the Neutron objects need the EC2 instance (AWS only).
Shellcheck, for every script, is tests/test_static.py's; gateway-mac and port-forwards run in
tests/test_netsteps.py (and the lab).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from components.contract import contract_for_render
from components.openstack import local_conf_for
from config.settings import Settings

STEPS = Path(__file__).resolve().parent.parent / "onhost" / "steps"
MINE = ["prepare-host.sh", "install-openstack.sh", "external-gateway.sh"]
MAC = "0e:00:00:00:00:02"
CLOUD_INIT_NETPLAN = """network:
  version: 2
  ethernets:
    ens5:
      match:
        macaddress: "0e:00:00:00:00:01"
      dhcp4: true
      set-name: ens5
    ens6:
      match:
        macaddress: "0E:00:00:00:00:02"
      dhcp4: true
      set-name: ens6
"""


def run(script: str, action: str, stdin: str, tmp: Path, root: Path | None = None):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OOA_STATE": str(tmp / "state")}
    if root is not None:
        env["OOA_ROOT"] = str(root)
    return subprocess.run(
        ["bash", str(STEPS / script), action],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "etc" / "netplan").mkdir(parents=True)
    (root / "etc" / "cloud" / "cloud.cfg.d").mkdir(parents=True)
    (root / "etc" / "netplan" / "50-cloud-init.yaml").write_text(CLOUD_INIT_NETPLAN)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_host_config_twice_equals_once_and_unconfig_restores(tmp_path):
    yaml = pytest.importorskip("yaml")
    root = _root(tmp_path)
    before = _snapshot(root)
    first = run("prepare-host.sh", "config", f"PROVIDER_MAC={MAC.upper()}\n", tmp_path, root)
    assert first.returncode == 0, first.stderr
    once = _snapshot(root)
    second = run("prepare-host.sh", "config", f"PROVIDER_MAC={MAC}\n", tmp_path, root)
    assert second.returncode == 0, second.stderr
    assert _snapshot(root) == once

    ours = yaml.safe_load(once["etc/netplan/90-openstack-on-aws-provider.yaml"])
    nic = ours["network"]["ethernets"]["openstack-provider"]
    assert nic["match"] == {"macaddress": MAC}
    assert nic["dhcp4"] is False and nic["dhcp6"] is False and nic["accept-ra"] is False
    assert nic["link-local"] == []
    cloud = yaml.safe_load(once["etc/netplan/50-cloud-init.yaml"])
    assert list(cloud["network"]["ethernets"]) == ["ens5"]  # the management NIC stays
    assert yaml.safe_load(once["etc/cloud/cloud.cfg.d/99-openstack-on-aws-network.cfg"]) == {
        "network": {"config": "disabled"}
    }

    removed = run("prepare-host.sh", "unconfig", "", tmp_path, root)
    assert removed.returncode == 0, removed.stderr
    assert _snapshot(root) == before


@pytest.mark.parametrize(
    "stdin,message",
    [
        ("PROVIDER_MAC=0e:00:00:00:00\n", "PROVIDER_MAC is not a valid mac"),
        ("PROVIDER_MAC=zz:00:00:00:00:02\n", "PROVIDER_MAC is not a valid mac"),
        ("", "missing parameter PROVIDER_MAC"),
        (f"PROVIDER_MAC={MAC}\nEXTRA=1\n", "unknown parameter EXTRA"),
    ],
)
@pytest.mark.parametrize("action", ["config", "apply"])
def test_prepare_host_rejects_bad_parameters_before_any_change(tmp_path, stdin, message, action):
    root = _root(tmp_path)
    before = _snapshot(root)
    proc = run("prepare-host.sh", action, stdin, tmp_path, root if action == "config" else None)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert _snapshot(root) == before
    assert not (tmp_path / "state").exists()


def _local_conf() -> str:
    return local_conf_for(contract_for_render(Settings(allowed_cidrs=["203.0.113.0/24"]), "<key>"))


def _install_params(**over) -> str:
    conf = _local_conf()
    values = {
        "BRANCH": "stable/2026.1",
        "LOCAL_CONF": base64.b64encode(conf.encode()).decode(),
        "ADMIN_PASSWORD": "Abcdefgh1234-_xyz",
        "PROVIDER_MAC": MAC,
        "PUBLIC_BASE_URL": "https://203.0.113.7",
        **over,
    }
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.mark.parametrize(
    "over,message",
    [
        ({"BRANCH": "stable/zed;rm -rf /"}, "BRANCH is not a DevStack branch"),
        ({"ADMIN_PASSWORD": "short"}, "ADMIN_PASSWORD must be"),
        ({"ADMIN_PASSWORD": "has$dollar@and/slash"}, "ADMIN_PASSWORD must be"),
        ({"PROVIDER_MAC": "0e-00-00-00-00-02"}, "PROVIDER_MAC is not a valid mac"),
        ({"LOCAL_CONF": "!!!not base64!!!"}, "LOCAL_CONF is not base64"),
        ({"LOCAL_CONF": base64.b64encode(b"HOST_IP=1.2.3.4\n").decode()}, "not a DevStack local.conf"),
        ({"LOCAL_CONF": base64.b64encode(b"[[local|localrc]]\nLIBVIRT_TYPE=kvm\n").decode()}, "lacks the placeholder"),
        (  # a half-filled local.conf: the CPU mode must follow the libvirt type filled on this host
            {"LOCAL_CONF": base64.b64encode(_local_conf().replace("@LIBVIRT_CPU_MODE@", "custom").encode()).decode()},
            "lacks the placeholder @LIBVIRT_CPU_MODE@",
        ),
        ({"PUBLIC_BASE_URL": "http://203.0.113.7"}, "PUBLIC_BASE_URL is not https://"),
        ({"PUBLIC_BASE_URL": "https://203.0.113.7/x;reboot"}, "PUBLIC_BASE_URL is not https://"),
    ],
)
def test_install_openstack_rejects_bad_parameters_before_any_change(tmp_path, over, message):
    proc = run("install-openstack.sh", "apply", _install_params(**over), tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "state").exists()
    password = dict(line.split("=", 1) for line in _install_params(**over).splitlines())["ADMIN_PASSWORD"]
    assert password not in proc.stderr + proc.stdout  # never echoed


def test_install_openstack_valid_parameters_pass_validation(tmp_path):
    # Valid parameters get past validation and stop at the first host check (this machine has no
    # `stack` user and no NIC with that MAC): proof that the validation above is what failed.
    proc = run("install-openstack.sh", "apply", _install_params(), tmp_path)
    assert proc.returncode != 0
    assert "no user 'stack'" in proc.stderr or "provider ENI's MAC" in proc.stderr


GATEWAY = {
    "CLOUD": "devstack-admin",
    "CLOUDS_YAML": "/etc/openstack/clouds.yaml",
    "EXTERNAL_NETWORK": "public",
    "ROUTER": "router1",
    "PHYSICAL_NETWORK": "public",
    "PROVIDER_CIDR": "10.42.2.0/24",
    "VPC_GATEWAY_IP": "10.42.2.1",
    "POOL_START": "10.42.2.10",
    "POOL_END": "10.42.2.11",
    "GATEWAY_IP": "10.42.2.10",
    "TENANT_CIDR": "192.168.100.0/24",
    "TENANT_DNS": "10.42.0.2",
}


@pytest.mark.parametrize(
    "over,message",
    [
        ({"GATEWAY_IP": "10.42.3.10"}, "GATEWAY_IP 10.42.3.10 is outside PROVIDER_CIDR"),
        ({"GATEWAY_IP": "10.42.2.50"}, "not one of the ENI's registered IPs"),
        ({"VPC_GATEWAY_IP": "10.42.2.256"}, "VPC_GATEWAY_IP is not a valid ipv4"),
        ({"VPC_GATEWAY_IP": "10.42.2.10"}, "must not be in the allocation pool"),
        ({"POOL_START": "10.42.2.12"}, "is after POOL_END"),
        ({"PROVIDER_CIDR": "10.42.2.0/33"}, "PROVIDER_CIDR is not a valid cidr"),
        ({"TENANT_CIDR": "10.42.2.0/24"}, "overlaps PROVIDER_CIDR"),
        ({"PHYSICAL_NETWORK": "pub lic"}, "parameter PHYSICAL_NETWORK is not a name"),
        ({"CLOUD": "devstack admin"}, "parameter CLOUD is not a name"),
        ({"CLOUD": "$(reboot)"}, "parameter CLOUD is not a name"),
        ({"EXTERNAL_NETWORK": "ext;net"}, "parameter EXTERNAL_NETWORK is not a name"),
        ({"ROUTER": ""}, "parameter ROUTER is not a name"),
        ({"CLOUDS_YAML": "etc/clouds.yaml"}, "CLOUDS_YAML is not an absolute path"),
        ({"CLOUDS_YAML": "/etc/../root/clouds.yaml"}, "CLOUDS_YAML is not an absolute path"),
        ({"CLOUDS_YAML": "/etc/openstack/$(reboot).yaml"}, "CLOUDS_YAML is not an absolute path"),
    ],
)
def test_external_gateway_rejects_bad_parameters_before_any_change(tmp_path, over, message):
    stdin = "".join(f"{k}={v}\n" for k, v in {**GATEWAY, **over}.items())
    proc = run("external-gateway.sh", "apply", stdin, tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "state").exists()


def test_external_gateway_remove_without_state_is_a_no_op(tmp_path):
    proc = run("external-gateway.sh", "remove", "", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to remove" in proc.stderr


@pytest.mark.parametrize("script", MINE)
def test_unknown_action_is_refused(tmp_path, script):
    proc = run(script, "destroy-everything", "", tmp_path)
    assert proc.returncode != 0 and "usage:" in proc.stderr
