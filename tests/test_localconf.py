"""DevStack's local.conf: what it says, and that DevStack reads every variable it sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components.contract import contract_for_render
from components.openstack import local_conf_for as local_conf_for_host
from config.settings import Settings
from onhost.localconf import local_conf_variables

ROOT = Path(__file__).resolve().parent.parent
DEVSTACK_VARIABLES = ROOT / "tests" / "data" / "devstack_variables.txt"


def _render_module():
    sys.path.insert(0, str(ROOT / "tools"))
    import render

    return render


def local_conf_for(s: Settings) -> str:
    """local.conf for the settings' host, through the host contract as the program renders it."""
    return local_conf_for_host(contract_for_render(s, "<key>"))


def settings(**kw) -> Settings:
    return Settings(allowed_cidrs=["203.0.113.0/24"], **kw)


def conf(**kw) -> dict[str, str]:
    out = {}
    for line in local_conf_for(settings(**kw)).splitlines():
        head, sep, value = line.partition("=")
        if sep and head in local_conf_variables(line):
            out[head] = value
    return out


def test_every_variable_is_read_by_devstack():
    known = {
        line.strip()
        for line in DEVSTACK_VARIABLES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    header = DEVSTACK_VARIABLES.read_text().splitlines()[1]
    assert Settings.model_fields["openstack_branch"].default in header  # list matches the default branch
    names = local_conf_variables(local_conf_for(settings(floating_ip_count=3)))
    assert names and set(names) <= known, sorted(set(names) - known)


def test_networking_values():
    c = conf(floating_ip_count=3)
    assert c["HOST_IP"] == "10.42.1.10"
    assert c["Q_AGENT"] == "openvswitch"
    assert c["Q_ML2_PLUGIN_MECHANISM_DRIVERS"] == "openvswitch"
    assert c["PUBLIC_BRIDGE"] == c["OVS_PHYSICAL_BRIDGE"] == "br-ex"
    assert c["Q_USE_PROVIDERNET_FOR_PUBLIC"] == "True"
    assert c["Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE"] == "False"
    assert c["FLOATING_RANGE"] == "10.42.2.0/24"
    assert c["PUBLIC_NETWORK_GATEWAY"] == "10.42.2.1"
    # the provider ENI's registered IPs: primary .10 and the three secondaries
    assert c["Q_FLOATING_ALLOCATION_POOL"] == "start=10.42.2.10,end=10.42.2.13"
    assert c["NEUTRON_CREATE_INITIAL_NETWORKS"] == "False"


def test_the_services_use_the_internal_catalog_and_novnc_the_tls_front():
    """noVNC links on https://<public address>/novnc/ (filled on the host), and the
    services that pick the catalog's public interface by default told to use the internal one;
    every post-config file is a DevStack variable, like the localrc variables above."""
    from onhost.localconf import post_config_files

    c = conf()
    assert c["NOVNCPROXY_URL"] == "@PUBLIC_BASE_URL@/novnc/vnc_lite.html"
    text = local_conf_for(settings())
    token = "[keystone_authtoken]\ninterface = admin\n"
    assert text.endswith(
        f"[[post-config|$NEUTRON_CONF]]\n{token}[nova]\nendpoint_type = internal\n"
        "[placement]\nendpoint_type = internal\n"
        f"[[post-config|$NOVA_CONF]]\n{token}[neutron]\nvalid_interfaces = internal,public\n"
        "[placement]\nvalid_interfaces = internal,public\n[cinder]\ncatalog_info = volumev3::internalURL\n"
        "[oslo_limit]\nvalid_interfaces = admin\n"
        f"[[post-config|$CINDER_CONF]]\n{token}[nova]\ninterface = internal\n"
        "[DEFAULT]\nglance_catalog_info = image:glance:internalURL\n"
        f"[[post-config|$GLANCE_API_CONF]]\n{token}[oslo_limit]\nvalid_interfaces = admin\n"
        f"[[post-config|$PLACEMENT_CONF]]\n{token}"
    )
    known = {line.strip() for line in DEVSTACK_VARIABLES.read_text().splitlines() if not line.startswith("#")}
    files = post_config_files(text)
    assert files == ["NEUTRON_CONF", "NOVA_CONF", "CINDER_CONF", "GLANCE_API_CONF", "PLACEMENT_CONF"]
    assert set(files) <= known


def test_the_apis_validate_tokens_on_an_identity_endpoint_that_public_endpoints_never_moves():
    """Found in the lab (tests/lab/test_public_api.py): DevStack's keystonemiddleware
    validates tokens at the catalog's *public* identity endpoint, which public-endpoints moves to the
    https public address (not reachable nor trusted from the host): every API would fail once its
    service token is renewed. DevStack creates an identity *admin* endpoint on its own URL, and
    every API service validates there."""
    c = conf()
    assert c["KEYSTONE_ADMIN_ENDPOINT"] == "True"
    text = local_conf_for(settings())
    for file in ("NEUTRON_CONF", "NOVA_CONF", "CINDER_CONF", "GLANCE_API_CONF", "PLACEMENT_CONF"):
        block = text.split(f"[[post-config|${file}]]\n", 1)[1].split("[[", 1)[0]
        assert block.startswith("[keystone_authtoken]\ninterface = admin\n"), file
    # the localrc part ends before the first meta-section: the variables stay DevStack's
    assert text.index("NOVNCPROXY_URL=") < text.index("[[post-config|")


# Every line of DevStack's list of keystoneauth sections (tests/data/devstack_keystoneauth.txt) ->
# the (file, section, option, value) local.conf sets there so that nothing on the host looks
# Keystone or a service up on the catalog's public interface (https on the public address after
# public-endpoints: neither routed nor trusted from the host), or why nothing is needed (docs/security-and-tls.md).
NOT_READ = "session and auth options only: the option is not read; the token comes from auth_url"
NOT_DEPLOYED = "a service this program does not deploy"
KEYSTONEAUTH_DECISIONS: dict[str, tuple[str, str, str, str] | str] = {
    "lib/cinder:307": ("$CINDER_CONF", "keystone_authtoken", "interface", "admin"),
    "lib/cinder:415": "cinder's [glance]: " + NOT_READ + "; Glance is reached at glance_api_servers",
    "lib/cinder:418": ("$CINDER_CONF", "nova", "interface", "internal"),
    "lib/cinder:744": "cinder's [service_user] (cinder/service_auth.py): " + NOT_READ,
    "lib/glance:334": ("$GLANCE_API_CONF", "oslo_limit", "valid_interfaces", "admin"),
    "lib/glance:359": ("$GLANCE_API_CONF", "keystone_authtoken", "interface", "admin"),
    "lib/keystone:438": "configure_keystoneauth's own body",
    "lib/keystone:459": "configure_keystone_authtoken_middleware's own body",
    "lib/keystone:472": "the deprecated configure_auth_token_middleware's body",
    # $conf is nova.conf, and nova_cell1.conf in superconductor mode (DevStack's default): Nova
    # registers [neutron] and [placement] without keystoneauth's deprecated `interface`
    # (nova/conf/utils.py), so DevStack's `interface = public` is not read there and
    # valid_interfaces keeps Nova's default, internal,public: set here for nova.conf explicitly.
    "lib/neutron:457": ("$NOVA_CONF", "neutron", "valid_interfaces", "internal,public"),
    "lib/neutron:1019": ("$NEUTRON_CONF", "keystone_authtoken", "interface", "admin"),
    "lib/neutron:1025": ("$NEUTRON_CONF", "nova", "endpoint_type", "internal"),
    "lib/neutron:1028": ("$NEUTRON_CONF", "placement", "endpoint_type", "internal"),
    "lib/neutron_plugins/services/placement:9": ("$NEUTRON_CONF", "placement", "endpoint_type", "internal"),
    "lib/nova:512": ("$NOVA_CONF", "keystone_authtoken", "interface", "admin"),
    "lib/nova:635": ("$NOVA_CONF", "placement", "valid_interfaces", "internal,public"),
    "lib/nova:647": ("$NOVA_CONF", "cinder", "catalog_info", "volumev3::internalURL"),
    "lib/nova:657": "Manila: " + NOT_DEPLOYED,
    "lib/nova:811": ("$NOVA_CONF", "oslo_limit", "valid_interfaces", "admin"),
    "lib/nova:823": "nova's [service_user] (nova/conf/service_token.py): " + NOT_READ,
    "lib/nova_plugins/hypervisor-ironic:49": "Ironic: " + NOT_DEPLOYED,
    "lib/placement:80": ("$PLACEMENT_CONF", "keystone_authtoken", "interface", "admin"),
    "lib/swift:438": "Swift: " + NOT_DEPLOYED,
    "lib/swift:465": "Swift: " + NOT_DEPLOYED,
}


def post_config(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """local.conf's post-config options: (file, section) -> {option: value}."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    file = section = None
    for line in text.splitlines():
        if line.startswith("[[post-config|"):
            file, section = line[len("[[post-config|") : -2], None
        elif line.startswith("[["):
            file = None
        elif file and line.startswith("["):
            section = line[1:-1]
        elif file and section and " = " in line:
            option, value = line.split(" = ", 1)
            out.setdefault((file, section), {})[option] = value
    return out


def test_every_keystoneauth_section_devstack_writes_is_decided():
    """Each keystoneauth section DevStack writes for the services this program deploys looks the
    catalog up on an interface the host reaches: the identity admin endpoint (token validation,
    quota checks: Glance's [oslo_limit] answered 500 to every image upload after the move), the
    internal ones (the services' clients), or the section does not use the catalog's interface."""
    listed = [
        line.split(": ", 1)[0]
        for line in (ROOT / "tests" / "data" / "devstack_keystoneauth.txt").read_text().splitlines()
        if line.startswith("lib/")
    ]
    assert sorted(listed) == sorted(KEYSTONEAUTH_DECISIONS)
    options = post_config(local_conf_for(settings()))
    for where, decision in KEYSTONEAUTH_DECISIONS.items():
        if isinstance(decision, tuple):
            file, section, option, value = decision
            assert options.get((file, section), {}).get(option) == value, (where, decision)


def test_placeholders_filled_on_the_host():
    c = conf()
    assert c["ADMIN_PASSWORD"] == "@ADMIN_PASSWORD@"
    assert c["LIBVIRT_TYPE"] == "@LIBVIRT_TYPE@"
    assert c["LIBVIRT_CPU_MODE"] == "@LIBVIRT_CPU_MODE@"
    assert c["PUBLIC_INTERFACE"] == "@PUBLIC_INTERFACE@"
    assert conf(floating_ip_count=0)["Q_FLOATING_ALLOCATION_POOL"] == "start=10.42.2.10,end=10.42.2.10"


def test_ovn_off_ovs_and_l3_on():
    text = local_conf_for(settings())
    assert "enable_service q-svc q-agt q-dhcp q-l3 q-meta" in text
    disabled = " ".join(line for line in text.splitlines() if line.startswith("disable_service"))
    for svc in ("ovn-northd", "ovn-controller", "q-ovn-agent", "q-ovn-metadata-agent"):
        assert svc in disabled.split()


def test_render_tool_writes_every_step(tmp_path):
    out = tmp_path / "render"
    proc = subprocess.run(
        [sys.executable, "tools/render.py", "--stack", "dev", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == [
        "1-scripts",
        "2-prepare-host",
        "3-install-openstack",
        "4-tls-front",
        "5-external-gateway",
        "6-gateway-mac",
        "7-port-forwards",
        "8-public-endpoints",
        "9-smoke",
    ]
    smoke = (out / "9-smoke" / "params.env").read_text()
    assert "TENANT_IP=192.168.100.10\n" in smoke and "EXPECTED_PUBLIC_IP=<provider Elastic IP>\n" in smoke
    from onhost.remote import UPLOAD_COMMAND, command, unload, upload

    assert (out / "3-install-openstack" / "command.sh").read_text() == command("install-openstack", "apply")
    assert (out / "1-scripts" / "command.sh").read_text() == UPLOAD_COMMAND
    assert (out / "1-scripts" / "stdin.sh").read_text() == upload(
        ["prepare-host", "install-openstack", "tls-front", "external-gateway", "gateway-mac", "port-forwards",
         "public-endpoints", "smoke"])
    assert (out / "1-scripts" / "remove.sh").read_text() == unload()
    assert not (out / "1-scripts" / "params.env").exists()
    params = (out / "3-install-openstack" / "params.env").read_text()
    assert "ADMIN_PASSWORD=<secret: masked>\n" in params
    assert "PUBLIC_BASE_URL=https://<management Elastic IP>\n" in params
    assert "ROUTER_ID=<router id from external-gateway>" in (out / "7-port-forwards" / "params.env").read_text()
    # The TLS rows: the server key masked, the certificates and the address as placeholders.
    front = (out / "4-tls-front" / "params.env").read_text()
    assert "SERVER_KEY=<secret: masked>\n" in front and "PUBLIC_ADDRESS=<management Elastic IP>\n" in front
    assert "SERVER_CERT=<server certificate from tls, base64>\n" in front and "HTTPS_PORT=443\n" in front
    assert "BEGIN" not in front
    endpoints = (out / "8-public-endpoints" / "params.env").read_text()
    assert endpoints == "PUBLIC_BASE_URL=https://<management Elastic IP>\nBACKEND_HOST=10.42.1.10\n"
    from config.settings import load_settings

    render = _render_module()
    dev = load_settings(render.stack_config(ROOT / "Pulumi.dev.yaml"))
    assert (out / "local.conf").read_text() == local_conf_for(dev)


def test_render_reports_bad_settings(tmp_path):
    (tmp_path / "Pulumi.bad.yaml").write_text("config:\n  openstack-on-aws:allowedCidrs: ['0.0.0.0/0']\n")
    render = _render_module()
    with pytest.raises(Exception, match="allowedCidrs"):
        render.render("bad", tmp_path / "out", root=tmp_path)
    assert not (tmp_path / "out").exists()


def test_render_takes_encrypted_secrets_without_decrypting_them(tmp_path):
    stack = (ROOT / "Pulumi.dev.yaml").read_text() + (
        "  openstack-on-aws:adminPassword:\n    secure: AAABAMockCiphertext==\n"
    )
    (tmp_path / "Pulumi.sec.yaml").write_text(stack)
    _render_module().render("sec", tmp_path / "out", root=tmp_path)
    params = (tmp_path / "out" / "3-install-openstack" / "params.env").read_text()
    assert "ADMIN_PASSWORD=<secret: masked>\n" in params
    assert "PUBLIC_BASE_URL=https://<management Elastic IP>\n" in params and "AAABAMockCiphertext" not in params


@pytest.mark.parametrize(("libvirt", "mode"), [("kvm", "host-passthrough"), ("qemu", "custom")])
def test_the_guests_cpu_mode_follows_the_libvirt_type_the_host_has(libvirt, mode):
    """nova-compute refused to start on a nested KVM host with DevStack's default for KVM (custom,
    Nehalem: "not compatible with host CPU"): with KVM the guests get the host's CPU as it is. With
    qemu (emulation) DevStack's custom Nehalem stays: libvirt refuses host-passthrough for an
    unaccelerated guest (qemu_capabilities.c), and Nova compares a custom model with the host only
    under KVM (driver.py _compare_cpu). The install steps fill both placeholders with lib.sh's
    fill_libvirt, on the controller's and a compute node's local.conf alike."""
    from ipaddress import IPv4Address

    from onhost.localconf import render_compute_local_conf

    node = render_compute_local_conf(host_ip=IPv4Address("10.42.1.11"), service_host=IPv4Address("10.42.1.10"))
    for text in (local_conf_for(settings()), node):
        assert "# The guests' CPU: host-passthrough with KVM." in text
        held = text.rstrip("\n")  # as the steps hold it (decode_local_conf)
        proc = subprocess.run(
            ["bash", "-c", '. "$1" && fill_libvirt "$2" "$3"', "_", str(ROOT / "onhost/steps/lib.sh"), held, libvirt],
            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True,
        )
        filled = dict(line.split("=", 1) for line in proc.stdout.splitlines() if line.startswith("LIBVIRT_"))
        assert filled == {"LIBVIRT_TYPE": libvirt, "LIBVIRT_CPU_MODE": mode}
        assert proc.stdout == held.replace("@LIBVIRT_TYPE@", libvirt).replace("@LIBVIRT_CPU_MODE@", mode) + "\n"
