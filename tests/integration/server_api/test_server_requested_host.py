"""POST /servers naming a host: 2.74 ``host``/``hypervisor_hostname`` and an admin's ``zone:host``
(``zone::node``, ``zone:host:node``), with Nova's policies, messages and microversion rules."""

import pytest

from portal.models import ComputeHost, Instance, InstanceActionEvent

from .helpers import boot, booted

pytestmark = pytest.mark.integration

REQUESTED = "Policy doesn't allow compute:servers:create:requested_destination to be performed."
FORCED = "Policy doesn't allow os_compute_api:servers:create:forced_host to be performed."


@pytest.fixture
def hosts(db):
    return [ComputeHost.objects.create(name=name) for name in ("hv1", "hv2")]


def message(response, kind="badRequest"):
    return response.json()[kind]["message"]


@pytest.mark.parametrize(
    ("fields", "policy"),
    [
        ({"host": "hv1"}, REQUESTED),
        ({"hypervisor_hostname": "hv1"}, REQUESTED),
        ({"availability_zone": "nova:hv1"}, FORCED),
        ({"availability_zone": ":hv1"}, FORCED),
        ({"availability_zone": "nova::hv1"}, FORCED),
        ({"availability_zone": "nova:hv1:hv1"}, FORCED),
    ],
)
def test_naming_a_host_is_for_admins(member, flavor, image, hosts, server_microversions, fields, policy):
    response = boot(member, flavor, image, version="2.74", **fields)
    assert response.status_code == 403
    assert message(response, "forbidden") == policy
    assert not Instance.objects.exists()


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({"host": "hv2"}, ("hv2", False)),
        ({"hypervisor_hostname": "hv2"}, ("hv2", False)),
        ({"host": "hv2", "hypervisor_hostname": "hv2"}, ("hv2", False)),
        ({"availability_zone": "nova:hv2"}, ("hv2", True)),
        ({"availability_zone": ":hv2"}, ("hv2", True)),
        ({"availability_zone": "nova::hv2"}, ("hv2", True)),
        ({"availability_zone": "nova:hv2:hv2"}, ("hv2", True)),
    ],
)
def test_an_admin_may_name_a_host_and_it_is_kept_with_the_server(
    admin, flavor, image, hosts, server_microversions, fields, stored
):
    instance = booted(admin, flavor, image, version="2.74", min_count=2, **fields)
    batch = Instance.objects.filter(reservation_id=instance.reservation_id)
    assert {(i.requested_host, i.force_host) for i in batch} == {stored}
    assert batch.count() == 2
    event = InstanceActionEvent.objects.get(action__instance=instance, event="api_create")
    assert event.details.startswith("Host hv2 forced (zone:host)" if stored[1] else "Host hv2 requested")


def test_a_forced_host_ignores_the_zone_part_as_in_nova(admin, flavor, image, hosts):
    # Not even checked: the server takes its host's zone once placed.
    instance = booted(admin, flavor, image, availability_zone="no-such-zone:hv1")
    assert (instance.requested_host, instance.force_host, instance.availability_zone) == ("hv1", True, "")


def test_a_requested_host_keeps_the_zone_it_is_asked_with(admin, flavor, image, hosts, server_microversions):
    instance = booted(admin, flavor, image, version="2.74", host="hv1", availability_zone="nova")
    assert (instance.requested_host, instance.force_host, instance.availability_zone) == ("hv1", False, "nova")
    response = boot(admin, flavor, image, version="2.74", host="hv1", availability_zone="no-such-zone")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"host": "ghost"}, "Compute host ghost could not be found."),
        ({"hypervisor_hostname": "ghost"}, "Compute host ghost could not be found."),
        ({"host": "hv1", "hypervisor_hostname": "hv2"}, "Compute host hv1 could not be found."),
        ({"availability_zone": "nova:ghost"}, "Compute host ghost could not be found."),
        ({"availability_zone": "nova::ghost"}, "Compute host ghost could not be found."),
        ({"availability_zone": "nova:hv1:hv2"}, "Compute host hv1 could not be found."),
        ({"availability_zone": "nova:hv1:hv1:hv1"}, "Invalid input received: Unable to parse availability_zone"),
        (
            {"host": "hv1", "availability_zone": "nova:hv1"},
            "One mechanism with host and/or hypervisor_hostname and another mechanism with zone:host:node "
            "are mutually exclusive.",
        ),
        ({"host": ""}, "host"),
    ],
)
def test_bad_host_requests_are_400(admin, flavor, image, hosts, server_microversions, fields, text):
    response = boot(admin, flavor, image, version="2.74", **fields)
    assert response.status_code == 400, response.content
    assert text in message(response)
    assert not Instance.objects.exists()


def test_host_and_hypervisor_hostname_are_unknown_before_2_74(admin, member, flavor, image, hosts):
    for caller in (admin, member):
        for field in ("host", "hypervisor_hostname"):
            response = boot(caller, flavor, image, version="2.73", **{field: "hv1"})
            assert response.status_code == 400
            assert "2.74" in message(response)
    assert not Instance.objects.exists()


def test_a_zone_without_a_host_is_not_a_host_request(member, flavor, image, hosts):
    instance = booted(member, flavor, image, availability_zone="nova:")
    assert (instance.requested_host, instance.force_host, instance.availability_zone) == ("", False, "nova")
