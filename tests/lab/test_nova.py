"""Nova's control plane, Placement and Glance in the lab (tests/lab/nova.py): the real services,
reached as the steps reach them (the openstack CLI on the host, through Keystone's catalog and the
host's Apache), their databases migrated by their own tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from components.openstack import TlsParts
from tests.lab.net import CLOUD, MGMT_EIP, MGMT_IP, PROVIDER_EIP, Lab
from tests.lab.nova import GUEST_FLAVOR, GUEST_IMAGE
from tests.lab.test_guest import image as guest_image
from tests.lab.test_steps import apply_both

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
    print(f"nova-compute up and discovered: {lab.nova.start_compute(lab.container):.1f} s")
    image = lab.work / "lab-guest.img"
    shutil.copy(guest_image(), image)
    made = cli(lab, f"image create --disk-format raw --container-format bare --public --file {image} {GUEST_IMAGE}")
    assert made["status"] == "active"
    flavor_id, ram, disk, vcpus, flavor = GUEST_FLAVOR
    cli(lab, f"flavor create --id {flavor_id} --ram {ram} --disk {disk} --vcpus {vcpus} {flavor}")
    return lab


def smoke(lab: Lab, action: str) -> subprocess.CompletedProcess:
    """The smoke step's `action` with the exact command text and stdin the program builds for the
    lab's DevStack stack (its router ids as external-gateway printed them)."""
    tls = TlsParts(MGMT_EIP, "<CA>", "<certificate>", "<key>", encode=False)  # smoke has no TLS parameter
    return lab.step("smoke", action, lab.chain_params("smoke", tls=tls), timeout=900)  # the row's is 25 min


def test_the_smoke_step_passes_through_the_fix_against_real_nova(nova_guests, clean):
    """smoke apply as Pulumi sends it, after gateway-mac and port-forwards: it boots the guest
    through real Nova on the tenant network, the guest runs the step's user data from Nova's
    metadata service (through the router's metadata proxy and Neutron's metadata agent), pings the
    VPC router, resolves the probe's name through the VPC resolver (the lab's answers
    checkip.amazonaws.com with the internet namespace) and fetches it: the internet sees the
    provider Elastic IP. The step passes and leaves no server, port or security group."""
    lab = clean
    apply_both(lab)
    t = time.monotonic()
    p = smoke(lab, "apply")
    took = time.monotonic() - t
    print(f"smoke apply: {took:.1f} s (exit {p.returncode})\n{p.stderr[-3000:]}")
    lab.timings["smoke apply (real Nova)"] = took
    assert p.returncode == 0, p.stderr
    evidence = json.loads(p.stdout.strip().splitlines()[-1])
    assert evidence["ok"] is True and evidence["internet_seen_as"] == PROVIDER_EIP, evidence
    assert evidence["user_data_ran"] is True and evidence["answers_from_router"] is True, evidence
    assert (evidence["vpc_router_ping"], evidence["vpc_dns"]) == ("ok", "ok"), evidence
    assert evidence["servers_left"] == 0
    assert [pt for pt in lab.neutron.find("ports") if pt["name"] == "openstack-on-aws-smoke"] == []
    assert [g for g in lab.neutron.find("security-groups") if g["name"] == "openstack-on-aws-smoke"] == []
