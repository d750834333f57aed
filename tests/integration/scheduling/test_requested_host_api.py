"""A host named through the compute API, placed by the conductor: ``openstack server create --host X``
(2.74) and ``--availability-zone zone:X``, seen back in the server, its actions and its fault."""

from __future__ import annotations

import pytest

from portal.models import Aggregate, ComputeHost, Instance
from portal.services import scheduling
from tests.integration.server_api.helpers import BASE, boot, v

from .conftest import make_host

pytestmark = pytest.mark.integration


def boot_and_place(caller, flavor, image, **extra) -> dict:
    """Boot through the API, let the conductor place it, and answer the server as the caller sees it."""
    response = boot(caller, flavor, image, version="2.74", **extra)
    assert response.status_code == 202, response.content
    server_id = response.json()["server"]["id"]
    scheduling.schedule_and_build(instance_uuid=server_id)
    return caller.client.get(f"{BASE}/servers/{server_id}", **v("2.74")).json()["server"]


@pytest.fixture
def roomy_and_small(transactional_db):
    # "roomy" wins every weigher: only a named host sends a server to "small".
    return make_host("roomy", memory_mb=200_000), make_host("small", memory_mb=4096)


def test_host_sends_the_server_to_the_host_that_would_not_win(clean_broker, admin, flavor, image, roomy_and_small):
    assert boot_and_place(admin, flavor, image)["OS-EXT-SRV-ATTR:host"] == "roomy"

    server = boot_and_place(admin, flavor, image, host="small")

    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("BUILD", "small")
    actions = admin.client.get(f"{BASE}/servers/{server['id']}/os-instance-actions", **v("2.62")).json()
    request_id = actions["instanceActions"][0]["request_id"]
    action = admin.client.get(f"{BASE}/servers/{server['id']}/os-instance-actions/{request_id}", **v("2.62")).json()
    scheduled = [e for e in action["instanceAction"]["events"] if e["event"] == "conductor_schedule_and_build"]
    assert scheduled[0]["host"] == "small"
    assert scheduled[0]["traceback"].startswith("Host small requested:")


def test_zone_host_forces_the_host(clean_broker, admin, flavor, image, roomy_and_small):
    for zone in ("nova:small", ":small", "nova::small"):
        assert boot_and_place(admin, flavor, image, availability_zone=zone)["OS-EXT-SRV-ATTR:host"] == "small"


def test_a_multi_create_request_naming_a_host_lands_there_whole(clean_broker, admin, flavor, image, roomy_and_small):
    boot_and_place(admin, flavor, image, host="small", min_count=3, max_count=3)
    assert list(Instance.objects.values_list("host__name", flat=True)) == ["small"] * 3


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"memory_mb": 256}, "RamFilter removed 1 (not enough RAM)"),
        ({"enabled": False, "disabled_reason": "maintenance"}, "ComputeFilter removed 1 (disabled)"),
    ],
)
def test_a_requested_host_that_is_full_or_disabled_is_no_valid_host(
    clean_broker, admin, flavor, image, roomy_and_small, change, why
):
    ComputeHost.objects.filter(name="small").update(**change)

    server = boot_and_place(admin, flavor, image, host="small")

    assert server["status"] == "ERROR"
    assert server["fault"]["message"] == f"No valid host was found. The request named host small: {why}"
    assert '"requested_host": "small"' in server["fault"]["details"]
    assert not Instance.objects.filter(host__isnull=False).exists()


def test_a_forced_host_that_is_full_is_no_valid_host(clean_broker, admin, flavor, image, roomy_and_small):
    ComputeHost.objects.filter(name="small").update(memory_mb=256)
    server = boot_and_place(admin, flavor, image, availability_zone="nova:small")
    assert server["fault"]["message"] == (
        "No valid host was found. The request forced host small: RamFilter removed 1 (not enough RAM)"
    )


def test_zones_with_a_named_host(clean_broker, admin, flavor, image, roomy_and_small):
    zoned = make_host("zoned")
    Aggregate.objects.create(name="rack", metadata={"availability_zone": "az1"}).hosts.add(zoned)

    # zone:host names a host of another zone: as in Nova the host wins and the server takes its zone.
    forced = boot_and_place(admin, flavor, image, availability_zone="nova:zoned")
    assert (forced["OS-EXT-SRV-ATTR:host"], forced["OS-EXT-AZ:availability_zone"]) == ("zoned", "az1")

    # A requested host (2.74) goes through every filter, the zone's too.
    requested = boot_and_place(admin, flavor, image, host="small", availability_zone="az1")
    assert requested["status"] == "ERROR"
    assert requested["fault"]["message"] == (
        "No valid host was found. The request named host small: "
        "AvailabilityZoneFilter removed 1 (in another availability zone)"
    )
    in_zone = boot_and_place(admin, flavor, image, host="zoned", availability_zone="az1")
    assert (in_zone["OS-EXT-SRV-ATTR:host"], in_zone["OS-EXT-AZ:availability_zone"]) == ("zoned", "az1")


def test_explain_answers_for_a_named_host(clean_broker, admin, flavor, roomy_and_small):
    url = f"{BASE}/os-scheduler-explain"
    body = {"server": {"flavorRef": flavor.flavorid, "host": "small", "max_count": 2}}
    placement = admin.client.post(url, body, format="json").json()["placement"]
    assert [p["host"] for p in placement["placements"]] == ["small", "small"]
    assert (placement["request"]["requested_host"], placement["request"]["forced_host"]) == ("small", False)
    assert placement["explanation"]["summary"] == "The request named host small, which passes every filter."

    ComputeHost.objects.filter(name="small").update(memory_mb=256)
    body = {"server": {"flavorRef": flavor.flavorid, "availability_zone": "nova:small"}}
    placement = admin.client.post(url, body, format="json").json()["placement"]
    assert placement["valid"] is False
    assert placement["explanation"]["summary"] == (
        "No valid host was found. The request forced host small: RamFilter removed 1 (not enough RAM)"
    )
    response = admin.client.post(url, {"server": {"flavorRef": flavor.flavorid, "host": "ghost"}}, format="json")
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == "Compute host ghost could not be found."
