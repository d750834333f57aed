"""The compute API's steps after 2.75, one shape test each (os-server-external-events, 2.76, has its
own module; 2.79, 2.85, 2.89 are in tests/integration/volumes, 2.86 with flavors, 2.88 with
hypervisors, 2.92 with key pairs)."""

import pytest

from portal.models import Aggregate, InstanceAction
from portal.states import TaskState, VmState
from tests.factories import InstanceFactory

from .admin_helpers import BASE, ComputeHostFactory, allow_version, v

pytestmark = pytest.mark.integration


def action(caller, server, body, version):
    return caller.client.post(f"{BASE}/servers/{server.uuid}/action", body, format="json", **v(version))


@pytest.fixture
def offloaded(member):
    return InstanceFactory(
        project=member.project, user=member.user, host=None, vm_state=VmState.SHELVED_OFFLOADED, power_state=0
    )


@pytest.fixture
def zone_b(db):
    aggregate = Aggregate.objects.create(name="agg-b", metadata={"availability_zone": "zone-b"})
    aggregate.hosts.add(ComputeHostFactory())
    return "zone-b"


# --- 2.77: unshelve into an availability zone ------------------------------------------------------


def test_2_77_unshelve_into_a_zone(monkeypatch, member, offloaded, zone_b, django_capture_on_commit_callbacks):
    allow_version(monkeypatch, "2.77")
    with django_capture_on_commit_callbacks(execute=False):
        response = action(member, offloaded, {"unshelve": {"availability_zone": zone_b}}, "2.77")
    assert response.status_code == 202, response.content
    offloaded.refresh_from_db()
    assert (offloaded.task_state, offloaded.availability_zone) == (TaskState.UNSHELVING, zone_b)
    assert InstanceAction.objects.filter(instance=offloaded, action="unshelve").exists()


def test_2_77_unshelve_shapes(monkeypatch, member, offloaded, zone_b):
    allow_version(monkeypatch, "2.77")
    # Before 2.77 the zone is not an argument.
    assert action(member, offloaded, {"unshelve": {"availability_zone": zone_b}}, "2.76").status_code == 400
    for body in ({}, {"availability_zone": zone_b, "host": "x"}, {"availability_zone": 1}, {"availability_zone": ""}):
        response = action(member, offloaded, {"unshelve": body}, "2.77")
        assert response.status_code == 400, body
    unknown = action(member, offloaded, {"unshelve": {"availability_zone": "nowhere"}}, "2.77")
    assert unknown.status_code == 400
    assert "availability zone is not available" in unknown.json()["badRequest"]["message"]


def test_2_77_a_server_shelved_on_its_host_cannot_change_zone(monkeypatch, member, zone_b):
    allow_version(monkeypatch, "2.77")
    shelved = InstanceFactory(
        project=member.project, user=member.user, host=ComputeHostFactory(), vm_state=VmState.SHELVED, power_state=4
    )
    response = action(member, shelved, {"unshelve": {"availability_zone": zone_b}}, "2.77")
    assert response.status_code == 409


# --- 2.78: server topology -------------------------------------------------------------------------


def test_2_78_topology_is_empty_as_nova_without_numa(monkeypatch, member, admin, stranger):
    allow_version(monkeypatch, "2.78")
    server = InstanceFactory(project=member.project, user=member.user)
    url = f"{BASE}/servers/{server.uuid}/topology"
    assert member.client.get(url, **v("2.77")).status_code == 404
    for caller in (member, admin):
        response = caller.client.get(url, **v("2.78"))
        assert response.status_code == 200
        assert response.json() == {"nodes": [], "pagesize_kb": None}
    assert stranger.client.get(url, **v("2.78")).status_code == 404
