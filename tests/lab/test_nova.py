"""Nova's control plane, Placement and Glance in the lab (tests/lab/nova.py): the real services,
reached as the steps reach them (the openstack CLI on the host, through Keystone's catalog and the
host's Apache), their databases migrated by their own tools."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.lab.net import CLOUD, MGMT_IP, Lab
from tests.lab.neutron import wait_for
from tests.lab.nova import GUEST_FLAVOR, GUEST_IMAGE
from tests.lab.test_guest import image as guest_image

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


def test_nova_boots_the_guest_on_the_tenant_network(lab):
    """nova-compute in the host (libvirt, QEMU's emulation) boots the guest image from Glance on the
    tenant network: the server goes ACTIVE, its console log (the serial output Nova reads back)
    shows the lease Neutron's dnsmasq gave it at its port's address, and it answers ping from the
    router's namespace; deleted, it leaves no port behind."""
    print(f"nova-compute up and discovered: {lab.nova.start_compute(lab.container):.1f} s")
    image = lab.work / "lab-guest.img"
    shutil.copy(guest_image(), image)
    made = cli(lab, f"image create --disk-format raw --container-format bare --public --file {image} {GUEST_IMAGE}")
    assert made["status"] == "active"
    flavor_id, ram, disk, vcpus, flavor = GUEST_FLAVOR
    cli(lab, f"flavor create --id {flavor_id} --ram {ram} --disk {disk} --vcpus {vcpus} {flavor}")
    t = time.monotonic()
    server = cli(lab, f"server create --image {GUEST_IMAGE} --flavor {flavor} --network private lab-nova-vm")
    try:

        def active() -> bool:
            server.update(cli(lab, "server show lab-nova-vm"))
            assert server["status"] != "ERROR", server.get("fault")
            return server["status"] == "ACTIVE"

        wait_for("the server ACTIVE", active, 240, every=2)
        ip = next(iter(server["addresses"].values()))[0] if isinstance(server["addresses"], dict) else ""
        print(f"server ACTIVE {time.monotonic() - t:.1f} s after create; addresses {server['addresses']}")

        def leased() -> bool:
            log = lab.ssh(f"openstack --os-cloud {CLOUD} console log show lab-nova-vm", check=False).stdout
            return f"lab-guest: dhcp ok {ip}" in log

        wait_for(f"the guest's DHCP lease {ip} in its console log", leased, 240, every=3)
        print(f"the guest has its lease {time.monotonic() - t:.1f} s after create")
        wait_for(f"the guest {ip} to answer ping from the router", lambda: lab.ping(lab.rns, ip), 60, every=1)
    finally:
        lab.ssh(f"openstack --os-cloud {CLOUD} server delete --wait lab-nova-vm", check=False, timeout=300)
    assert lab.neutron.find("ports", device_id=server["id"]) == []
