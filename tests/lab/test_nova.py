"""Nova's control plane, Placement and Glance in the lab (tests/lab/nova.py): the real services,
reached as the steps reach them (the openstack CLI on the host, through Keystone's catalog and the
host's Apache), their databases migrated by their own tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from components.openstack import TlsParts
from onhost.chain import PROBE_URL
from tests.lab.kvm import accelerator, guest_image
from tests.lab.net import CLOUD, INTERNET_IP, LATER_EIP, LATER_IP, MGMT_EIP, MGMT_IP, PROVIDER_EIP, Lab, sh
from tests.lab.neutron import wait_for
from tests.lab.nova import GUEST_FLAVOR, GUEST_IMAGE, LIBVIRT
from tests.lab.test_steps import FORWARDS, apply_both

pytestmark = pytest.mark.lab


def cli(lab: Lab, command: str, input: str = "") -> list | dict:
    """`openstack --os-cloud devstack-admin <command> -f json` on the host, over SSH as the steps run it."""
    p = lab.ssh(f"openstack --os-cloud {CLOUD} {command} -f json", input=input, check=False)
    assert p.returncode == 0, f"openstack {command}: {p.stderr}"
    return json.loads(p.stdout)


def test_the_catalog_has_nova_placement_and_glance_as_devstack_registers_them(lab):
    endpoints = lab.keystone.endpoints()
    assert endpoints[("compute", "public")] == f"http://{MGMT_IP}/compute/v2.1"
    assert endpoints[("placement", "public")] == f"http://{MGMT_IP}/placement"
    assert endpoints[("image", "public")] == f"http://{MGMT_IP}/image"
    # the program's local.conf post-config is in the files the services read
    nova_conf = (lab.nova.etc / "nova.conf").read_text()
    assert "interface = admin\n" in nova_conf.split("[keystone_authtoken]")[1].split("\n[")[0]
    assert "valid_interfaces = internal,public\n" in nova_conf.split("[placement]")[1].split("\n[")[0]
    glance_conf = (lab.nova.etc / "glance-api.conf").read_text()
    assert "valid_interfaces = admin\n" in glance_conf.split("[oslo_limit]")[1].split("\n[")[0]


def test_glance_accepts_an_upload_and_lists_it(lab):
    data = "a raw disk image of the lab\n" * 4096
    lab.ssh("cat > /tmp/lab-image.raw", input=data)
    made = cli(
        lab,
        "image create --disk-format raw --container-format bare --file /tmp/lab-image.raw lab-image",
    )
    try:
        assert made["status"] == "active" and made["size"] == len(data)
        # listed by Glance's API (REST here: each CLI call costs a second of start-up)
        listed = {i["name"]: i for i in lab.nova.api("glance", "GET", "/v2/images")["images"]}
        assert listed["lab-image"]["status"] == "active" and listed["lab-image"]["id"] == made["id"]
        # the bytes are in Glance's file store (the image's own file, named by its ID)
        assert (lab.nova.work / "images" / made["id"]).read_text() == data
    finally:
        lab.nova.api("glance", "DELETE", f"/v2/images/{made['id']}")
        lab.ssh("rm -f /tmp/lab-image.raw")


def test_nova_lists_a_flavor_after_creating_one(lab):
    # DevStack's lib/nova create_flavors: m1.nano (cirros256 alike) for a test image
    made = cli(lab, "flavor create --id 42 --ram 128 --disk 1 --vcpus 1 m1.nano")
    try:
        assert (made["name"], made["ram"], made["vcpus"]) == ("m1.nano", 128, 1)
        assert "m1.nano" in {f["name"] for f in lab.nova.api("nova", "GET", "/flavors")["flavors"]}
    finally:
        lab.nova.api("nova", "DELETE", "/flavors/42")


def test_placement_answers_its_resource_providers(lab):
    # no nova-compute yet: no provider; the call passes Keystone's token validation (the CLI's
    # placement commands are osc-placement's, not installed: the REST API through the catalog's URL)
    assert lab.nova.api("placement", "GET", "/resource_providers")["resource_providers"] == []


def test_the_cells_are_cell0_and_cell1_and_the_control_services_are_up(lab):
    cells = lab.nova.manage("cell_v2", "list_cells", "--verbose").stdout
    names = {row.split("|")[1].strip() for row in cells.splitlines() if row.startswith("|") and "Name" not in row}
    assert names == {"cell0", "cell1"}, cells
    # the mappings' templates, filled from this lab's nova.conf: its own MariaDB socket
    assert str(lab.neutron.work / "mysql" / "mysqld.sock") in cells
    services = {(s["Binary"], s["Host"]): s for s in cli(lab, "compute service list")}
    for binary in ("nova-conductor", "nova-scheduler"):
        assert services[(binary, "lab-host")]["State"] == "up", services
        assert services[(binary, "lab-host")]["Status"] == "enabled"


@pytest.fixture(scope="package")
def nova_guests(lab):
    """nova-compute started in the host, the guest image in Glance and DevStack's flavor for it:
    once, for the lab's tests that boot VMs through Nova."""
    accel, why = accelerator()
    lab.facts["guests (Nova's virt_type)"] = f"{LIBVIRT[accel]['virt_type']}: {why}"
    took = lab.nova.start_compute(lab.container, accel)
    lab.timings["nova-compute up and discovered"] = took
    print(f"nova-compute up and discovered: {took:.1f} s; guests under {accel.upper()} ({why})")
    image = lab.work / "lab-guest.img"
    shutil.copy(guest_image(), image)
    made = cli(lab, f"image create --disk-format raw --container-format bare --public --file {image} {GUEST_IMAGE}")
    assert made["status"] == "active"
    flavor_id, ram, disk, vcpus, flavor = GUEST_FLAVOR
    cli(lab, f"flavor create --id {flavor_id} --ram {ram} --disk {disk} --vcpus {vcpus} {flavor}")
    return lab


def smoke_apply(lab: Lab, label: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`smoke apply` with the exact command text and stdin the program builds for the lab's DevStack
    stack (its router ids as external-gateway printed them), timed as `label`; the run and its
    evidence, once it is checked that the run left no server, port or security group."""
    tls = TlsParts(MGMT_EIP, "<CA>", "<certificate>", "<key>", encode=False)  # smoke has no TLS parameter
    t = time.monotonic()
    p = lab.step("smoke", "apply", lab.chain_params("smoke", tls=tls), timeout=900)  # the row's is 25 min
    lab.timings[label] = time.monotonic() - t
    print(f"{label}: {lab.timings[label]:.1f} s (exit {p.returncode})\n{p.stderr[-3000:]}")
    evidence = json.loads(p.stdout.strip().splitlines()[-1])
    assert evidence["servers_left"] == 0, evidence
    assert [pt for pt in lab.neutron.find("ports") if pt["name"] == "openstack-on-aws-smoke"] == []
    assert [g for g in lab.neutron.find("security-groups") if g["name"] == "openstack-on-aws-smoke"] == []
    return p, evidence


# A VM a user boots through Nova, behind a port forward and then a floating IP of its own
VM, VM_IP, VM_PORT = "lab-nova-vm", "192.168.100.40", 8040  # name (its hostname), tenant IP, forwarded port
SEEN = "lab-vm seen="  # its console's lines: the address the internet saw it as


def seen_as(lab: Lab, server: str) -> list[str]:
    """Each address the VM's user data was seen as, in order, from its console log (through Nova)."""
    lines = lab.nova.console(server).splitlines()
    return [line.split("=", 1)[1].strip() for line in lines if line.startswith(SEEN)]


def http_get(lab: Lab, ip: str, port: int) -> str:
    """GET / from the internet namespace (the guest's listener is HTTP: it waits for a request)."""
    return sh("curl", "-sS", "-m", "5", f"http://{ip}:{port}/", ns=lab.inet, check=False).stdout.strip()


def boot_vm(lab: Lab, undo: list[Callable[[], object]]) -> tuple[str, str]:
    """The user's VM: a security group open to HTTP and ping, its port at VM_IP, the server through
    Nova's API with user data that asks the internet's echo every 2 s who it is (on the console);
    each thing made adds its delete to `undo`."""
    net = lab.neutron.find("networks", name="private")[0]
    sg = lab.neutron.api("POST", "security-groups", {"security_group": {"name": VM}})["security_group"]
    undo.append(lambda: lab.neutron.api("DELETE", f"security-groups/{sg['id']}"))
    for rule in ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 80}, {"protocol": "icmp"}):
        made_rule = {"security_group_id": sg["id"], "direction": "ingress", **rule}
        lab.neutron.api("POST", "security-group-rules", {"security_group_rule": made_rule})
    fixed = [{"ip_address": VM_IP}]
    body: dict = {"network_id": net["id"], "name": VM, "fixed_ips": fixed, "security_groups": [sg["id"]]}
    port = lab.neutron.api("POST", "ports", {"port": body})["port"]
    undo.append(lambda: lab.neutron.api("DELETE", f"ports/{port['id']}"))
    user_data = (
        "#!/bin/sh\nexec >/dev/console 2>&1\n"
        f'while :; do echo "{SEEN}$(wget -q -T 3 -O - {PROBE_URL} 2>/dev/null | tr -cd 0-9.)"; sleep 2; done &\n'
    )
    server = lab.nova.boot(VM, port["id"], user_data)
    undo.append(lambda: lab.nova.delete(server))
    return server, port["id"]


def test_smoke_fails_before_the_fix_and_passes_through_it_while_a_users_vm_is_reached(nova_guests, clean):
    """`smoke apply` as Pulumi sends it, against real Nova, Neutron and Glance, with a user's VM
    booted through Nova's API beside it (its own security group open to HTTP and ping).

    Before gateway-mac and port-forwards the step's VM runs its user data (from Nova's metadata API,
    through the router's metadata proxy and Neutron's metadata agent) but reaches neither the VPC's
    router nor its resolver nor the internet: the step fails with that reason and leaves no server,
    port or security group. After them (with a forward to the user's VM), the step passes: its VM
    pings the VPC router, resolves the probe's name through the VPC resolver (the lab's answers
    checkip.amazonaws.com with the internet namespace) and is seen by the internet as the provider
    Elastic IP; it leaves nothing either. Meanwhile the user's VM answers from the internet through
    the forward on the provider Elastic IP and leaves as it; then a floating IP from the provider
    ENI's secondary IPs, associated through the API, answers on its own Elastic IP and the VM leaves
    as that one."""
    lab = clean
    undo: list[Callable[[], object]] = []
    try:
        server, port_id = boot_vm(lab, undo)
        p, evidence = smoke_apply(lab, "smoke apply before the fix")
        assert p.returncode == 1, p.stderr
        reason = f"the VM did not reach the internet ({PROBE_URL}); VPC router ping: fail, VPC DNS: fail"
        assert f"[smoke] error: smoke test failed: {reason}" in p.stderr.splitlines(), p.stderr
        assert evidence["ok"] is False and evidence["failure"] == reason, evidence
        assert evidence["user_data_ran"] is True and evidence["answers_from_router"] is True, evidence
        assert lab.nova.status(server) == "ACTIVE"
        assert set(seen_as(lab, server)) <= {""}  # it has not reached the internet either

        apply_both(lab, f"{FORWARDS},tcp:{VM_PORT}:{VM_IP}:80")
        with ThreadPoolExecutor(1) as pool:  # the step's VM boots while the user's is checked
            passing = pool.submit(smoke_apply, lab, "smoke apply (real Nova)")
            t = time.monotonic()
            wait_for("the VM seen as the provider EIP", lambda: seen_as(lab, server)[-1:] == [PROVIDER_EIP], 60, 1)
            assert http_get(lab, PROVIDER_EIP, VM_PORT) == f"{VM}/tcp/80/{INTERNET_IP}"
            fip = lab.floating_ip(LATER_IP, port_id)
            undo.append(lambda: lab.delete_floating_ip(fip))
            assert http_get(lab, LATER_EIP, 80) == f"{VM}/tcp/80/{INTERNET_IP}"
            wait_for("the VM seen as its floating IP's EIP", lambda: seen_as(lab, server)[-1:] == [LATER_EIP], 60, 1)
            lab.timings["nova vm: forward and floating IP after the fix"] = time.monotonic() - t
            p, evidence = passing.result()
        assert p.returncode == 0, p.stderr
        assert evidence["ok"] is True and evidence["internet_seen_as"] == PROVIDER_EIP, evidence
        assert evidence["user_data_ran"] is True and evidence["answers_from_router"] is True, evidence
        assert (evidence["vpc_router_ping"], evidence["vpc_dns"]) == ("ok", "ok"), evidence
    finally:
        for delete in reversed(undo):
            delete()
