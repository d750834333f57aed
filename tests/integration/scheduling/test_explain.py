"""Explaining a hypothetical placement: the management command and the admin API extension."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from portal.models import Aggregate, Instance, ServerGroup
from tests.factories import FlavorFactory, ImageFactory

from .conftest import make_host

pytestmark = pytest.mark.integration

URL = "/compute/v2.1/os-scheduler-explain"


@pytest.fixture
def hosts(db):
    make_host("down", last_heartbeat=timezone.now() - timedelta(hours=1))
    small = make_host("small", memory_mb=1024)
    make_host("big", memory_mb=32768)
    zoned = make_host("zoned", memory_mb=16384)
    Aggregate.objects.create(name="r1", metadata={"availability_zone": "az1"}).hosts.add(zoned)
    return small


@pytest.fixture
def flavor(db):
    return FlavorFactory(flavorid="42", name="m1.medium", vcpus=2, memory_mb=4096, root_gb=10)


def run(*args):
    out = StringIO()
    call_command("explain_placement", *args, stdout=out)
    return out.getvalue()


def test_command_explains_filter_by_filter_and_ranks_the_hosts(hosts, flavor):
    text = run("--flavor", "m1.medium")
    lines = text.splitlines()
    assert lines[0] == "4 hosts: ComputeFilter removed 1 (down), RamFilter removed 1 (not enough RAM), 2 left"
    assert any(line.split()[:4] == ["RamFilter", "3", "in", "1"] for line in lines)
    assert lines[-1].startswith("instance 1: big  [ranked: big (")
    assert "zoned (" in lines[-1]


def test_command_with_a_zone_a_count_and_json(hosts, flavor):
    result = json.loads(run("--flavor", "42", "--zone", "az1", "--count", "5", "--json"))
    assert result["valid"] is False
    assert result["explanation"]["summary"] == (
        "No valid host was found for instance 5 of 5 (4 placed before it). 4 hosts: ComputeFilter removed 1 (down), "
        "AvailabilityZoneFilter removed 2 (in another availability zone), RamFilter removed 1 (not enough RAM)"
    )
    assert [p["host"] for p in result["placements"]] == ["zoned"] * 4
    assert result["request"]["availability_zone"] == "az1"


def test_command_with_hints_and_a_group(hosts, flavor, member):
    neighbour = Instance.objects.create(
        name="n",
        project=member.project,
        user=member.user,
        flavor_name="x",
        vcpus=1,
        memory_mb=1,
        root_gb=0,
        image_ref="6f1e0c3a-2b9d-4c55-9a57-0d6b0e2f8a11",
        host=hosts.__class__.objects.get(name="big"),
    )
    group = ServerGroup.objects.create(name="g", project=member.project, user=member.user, policy="anti-affinity")
    Instance.objects.filter(pk=neighbour.pk).update(server_group=group)

    text = run("--flavor", "m1.medium", "--hint", f"group={group.uuid}")
    assert "ServerGroupAntiAffinityFilter removed 1 (holds a member of the anti-affinity group)" in text
    assert "instance 1: zoned" in text
    text = run("--flavor", "m1.medium", "--hint", f"same_host={neighbour.uuid}")
    assert "SameHostFilter removed 1" in text and "instance 1: big" in text


def test_command_rejects_what_it_cannot_find(hosts, flavor):
    with pytest.raises(CommandError, match="no flavor"):
        run("--flavor", "m9.huge")
    with pytest.raises(CommandError, match="no server group"):
        run("--flavor", "42", "--hint", "group=nope")
    with pytest.raises(CommandError, match="key=value"):
        run("--flavor", "42", "--hint", "group")


def test_api_explains_a_hypothetical_boot_to_admins(hosts, flavor, admin):
    image = ImageFactory(properties={"hw_architecture": "aarch64"})
    body = {"server": {"flavorRef": "42", "max_count": 2}, "os:scheduler_hints": {}}
    response = admin.client.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    placement = response.json()["placement"]
    assert placement["valid"] is True
    # The first takes the host with the most free RAM; the second sees it taken and the CPU and disk
    # weighers now prefer the other host.
    assert [p["host"] for p in placement["placements"]] == ["big", "zoned"]
    assert placement["explanation"]["steps"][0] == {
        "name": "ComputeFilter",
        "hosts_before": 4,
        "removed": 1,
        "reasons": {"down": 1},
    }

    body = {"server": {"flavorRef": "42", "imageRef": str(image.id)}}
    placement = admin.client.post(URL, body, format="json").json()["placement"]
    assert placement["valid"] is False
    assert "ImagePropertiesFilter removed 2 (other architecture)" in placement["explanation"]["summary"]


def test_api_is_admin_only_and_checks_its_input(hosts, flavor, admin, member):
    response = member.client.post(URL, {"server": {"flavorRef": "42"}}, format="json")
    assert response.status_code == 403
    assert response.json()["forbidden"]["code"] == 403
    for body, message in [
        ({}, "'server' object"),
        ({"server": {}}, "'flavorRef' is a required property"),
        ({"server": {"flavorRef": "nope"}}, "Flavor nope could not be found"),
        ({"server": {"flavorRef": "42", "max_count": 0}}, "max_count"),
        ({"server": {"flavorRef": "42", "imageRef": "x"}}, "Image x could not be found"),
        ({"server": {"flavorRef": "42"}, "os:scheduler_hints": []}, "must be an object"),
        ({"server": {"flavorRef": "42"}, "os:scheduler_hints": {"group": "nope"}}, "Invalid server group"),
    ]:
        response = admin.client.post(URL, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert message in response.json()["badRequest"]["message"]
