"""``manage.py demo_setup``: the demo's admin, flavors, image and networks, made once however often it runs."""

from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from portal.models import IPAllocation, Network, SecurityGroup, Subnet

pytestmark = pytest.mark.integration

DEMO_IMAGE = Path(__file__).resolve().parents[3] / "var" / "images" / "demo.qcow2"


def run(tmp_path, *args):
    out = StringIO()
    call_command(
        "demo_setup", "--image", str(tmp_path / "demo.qcow2"), "--password-file", str(tmp_path / "pw"), *args,
        stdout=out,
    )  # fmt: skip
    return out.getvalue()


@pytest.fixture
def image(tmp_path):
    if not DEMO_IMAGE.exists():
        pytest.skip("the demo image is not built (scripts/build_demo_image.sh)")
    shutil.copy(DEMO_IMAGE, tmp_path / "demo.qcow2")


@pytest.mark.django_db
def test_demo_networks_are_made_once_with_the_ranges_asked_for(tmp_path, image, settings):
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": tmp_path / "store"}
    first = run(tmp_path, "--public-cidr", "10.253.0.0/24", "--tenant-cidr", "10.0.0.0/24")
    run(tmp_path, "--public-cidr", "10.253.0.0/24", "--tenant-cidr", "10.0.0.0/24")

    public = Network.objects.get(name="public")
    assert (public.network_type, public.physical_network, public.shared) == ("flat", "public", True)
    demo = Network.objects.get(name="demo-net")
    assert demo.network_type == "vxlan" and not demo.shared and demo.auto_allocated
    assert demo.project.name == "admin" and demo.segmentation_id
    assert Network.objects.count() == 2 and Subnet.objects.count() == 2
    subnet = Subnet.objects.get(network=public)
    # The gateway is the address of the demo's bridge on the machine; guests get addresses after it.
    assert (subnet.cidr, subnet.gateway_ip) == ("10.253.0.0/24", "10.253.0.1")
    assert "10.253.0.1" not in set(IPAllocation.objects.filter(subnet=subnet).values_list("ip_address", flat=True))
    assert Subnet.objects.get(network=demo).cidr == "10.0.0.0/24"
    assert f"network public: {public.pk} (flat, 10.253.0.0/24)" in first
    # The group the demo guest on public is in: ICMP, SSH and HTTP from public's range, made once.
    web = SecurityGroup.objects.get(project=demo.project, name="web")
    rules = {(r.direction, r.protocol, r.port_range_min, r.remote_ip_prefix) for r in web.rules.all()}
    assert {
        ("ingress", "icmp", None, "10.253.0.0/24"),
        ("ingress", "tcp", 22, "10.253.0.0/24"),
        ("ingress", "tcp", 80, "10.253.0.0/24"),
    } <= rules
    assert web.rules.filter(direction="ingress").count() == 3


@pytest.mark.django_db
def test_a_bad_range_is_a_clear_error(tmp_path, image, settings):
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": tmp_path / "store"}
    with pytest.raises(CommandError, match="the demo's networks"):
        run(tmp_path, "--public-cidr", "10.253.0.0/33")
    assert not Network.objects.filter(name="public").exists()  # nothing half made
