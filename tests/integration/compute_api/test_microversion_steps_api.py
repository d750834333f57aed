"""The compute API's steps after 2.75, one shape test each (os-server-external-events, 2.76, has its
own module; 2.79, 2.85, 2.89 are in tests/integration/volumes, 2.86 with flavors, 2.88 with
hypervisors, 2.92 with key pairs)."""

import pytest

from portal.models import Aggregate, InstanceAction, Migration
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


# --- 2.80: who asked for a migration ------------------------------------------------------------------


def _migration(instance, user, kind="migration", status="migrating"):
    flavor = {"flavor_id": "1"}
    return Migration.objects.create(
        instance=instance,
        project=instance.project,
        user=user,
        migration_type=kind,
        status=status,
        source_host=instance.host,
        old_flavor=flavor,
        new_flavor=flavor,
    )


def test_2_80_migrations_show_and_filter_user_and_project(monkeypatch, member, admin, stranger):
    allow_version(monkeypatch, "2.80")
    host = ComputeHostFactory()
    mine = _migration(InstanceFactory(project=member.project, user=member.user, host=host), admin.user)
    theirs = _migration(InstanceFactory(project=stranger.project, user=stranger.user, host=host), stranger.user)
    url = f"{BASE}/os-migrations"
    before = admin.client.get(url, **v("2.79")).json()["migrations"]
    assert all("user_id" not in m and "project_id" not in m for m in before)
    rows = {m["uuid"]: m for m in admin.client.get(url, **v("2.80")).json()["migrations"]}
    assert rows[str(mine.uuid)]["user_id"] == admin.user.username
    assert rows[str(mine.uuid)]["project_id"] == member.project.pk
    assert rows[str(theirs.uuid)]["user_id"] == stranger.user.username

    def uuids(query, version="2.80"):
        return {m["uuid"] for m in admin.client.get(f"{url}?{query}", **v(version)).json()["migrations"]}

    assert uuids(f"user_id={admin.user.username}") == {str(mine.uuid)}
    assert uuids(f"project_id={stranger.project.pk}") == {str(theirs.uuid)}
    assert uuids("user_id=nobody-at-all") == set()
    assert uuids(f"user_id={admin.user.username}", "2.79") == {str(mine.uuid), str(theirs.uuid)}


def test_2_80_server_migrations_show_user_and_project(monkeypatch, member, admin):
    allow_version(monkeypatch, "2.80")
    server = InstanceFactory(project=member.project, user=member.user, host=ComputeHostFactory())
    _migration(server, admin.user, kind="live-migration", status="running")
    url = f"{BASE}/servers/{server.uuid}/migrations"
    (row,) = admin.client.get(url, **v("2.80")).json()["migrations"]
    assert (row["user_id"], row["project_id"]) == (admin.user.username, member.project.pk)
    shown = admin.client.get(f"{url}/{row['id']}", **v("2.80")).json()["migration"]
    assert shown["user_id"] == admin.user.username
    (old,) = admin.client.get(url, **v("2.79")).json()["migrations"]
    assert "user_id" not in old
