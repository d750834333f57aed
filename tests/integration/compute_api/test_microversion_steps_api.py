"""The compute API's steps after 2.75, one shape test each (os-server-external-events, 2.76, has its
own module; 2.79, 2.85, 2.89, 2.101 are in tests/integration/volumes, 2.81 in test_aggregate_images_api,
2.84 with instance actions, 2.86 with flavors, 2.88 with hypervisors, 2.92 with key pairs, and the
servers' steps from 2.87 in tests/integration/server_api/test_server_steps_after_2_80.py)."""

import pytest

from portal.models import Aggregate, InstanceAction, Migration, ServerGroup
from portal.states import TaskState, VmState
from tests.factories import FlavorFactory, InstanceFactory

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


# --- 2.83: members filter the server list by more attributes; 2.90: by hostname ---------------------


def _listed(caller, query, version):
    response = caller.client.get(f"{BASE}/servers?{query}", **v(version))
    assert response.status_code == 200, response.content
    return {s["name"] for s in response.json()["servers"]}


def test_2_83_members_filter_by_state_zone_key_and_user(monkeypatch, member):
    allow_version(monkeypatch, "2.90")
    InstanceFactory(project=member.project, user=member.user, name="running", availability_zone="az-x", key_name="k")
    InstanceFactory(project=member.project, user=member.user, name="stopped", vm_state=VmState.STOPPED, power_state=4)
    everything = {"running", "stopped"}
    # Before 2.83 the compute API ignores these filters for members.
    assert _listed(member, "vm_state=stopped", "2.82") == everything
    assert _listed(member, "vm_state=stopped", "2.83") == {"stopped"}
    assert _listed(member, "power_state=4", "2.83") == {"stopped"}
    assert _listed(member, "availability_zone=az-x", "2.83") == {"running"}
    assert _listed(member, "key_name=k", "2.83") == {"running"}
    assert _listed(member, f"user_id={member.user.username}", "2.83") == everything
    assert _listed(member, "user_id=someone-else", "2.83") == set()
    assert _listed(member, "progress=^100$", "2.83") == {"running"}
    assert _listed(member, "progress=^100$", "2.82") == everything
    # An admin's filter stays ignored for members.
    assert _listed(member, "auto_disk_config=1", "2.83") == everything


def test_2_90_members_filter_by_hostname(monkeypatch, member, admin):
    allow_version(monkeypatch, "2.90")
    InstanceFactory(project=member.project, user=member.user, name="one", hostname="web-1")
    InstanceFactory(project=member.project, user=member.user, name="two", hostname="db-1")
    assert _listed(member, "hostname=web", "2.89") == {"one", "two"}
    assert _listed(member, "hostname=^web", "2.90") == {"one"}
    assert _listed(admin, f"hostname=^db&all_tenants=1&project_id={member.project.pk}", "2.1") == {"two"}


# --- 2.102: flavors by name, without rxtx_factor and disabled; no unknown query parameters --------------


def test_2_102_flavors_filter_by_name_and_drop_rxtx_factor_and_disabled(monkeypatch, member, admin):
    allow_version(monkeypatch, "2.102")
    FlavorFactory(flavorid="s1", name="small.one")
    FlavorFactory(flavorid="l1", name="large.one")

    def names(query, version):
        response = member.client.get(f"{BASE}/flavors?{query}", **v(version))
        assert response.status_code == 200, response.content
        return {f["name"] for f in response.json()["flavors"]}

    assert names("name=^small", "2.102") == {"small.one"}
    assert names("name=one$", "2.102") == {"small.one", "large.one"}
    assert member.client.get(f"{BASE}/flavors?name=small", **v("2.101")).status_code == 400
    assert member.client.get(f"{BASE}/flavors?name=(", **v("2.102")).status_code == 400
    old = member.client.get(f"{BASE}/flavors/s1", **v("2.101")).json()["flavor"]
    assert old["rxtx_factor"] == 1.0 and old["OS-FLV-DISABLED:disabled"] is False
    new = member.client.get(f"{BASE}/flavors/s1", **v("2.102")).json()["flavor"]
    assert "rxtx_factor" not in new and "OS-FLV-DISABLED:disabled" not in new
    (listed,) = member.client.get(f"{BASE}/flavors/detail?name=small", **v("2.102")).json()["flavors"]
    assert "rxtx_factor" not in listed
    assert member.client.get(f"{BASE}/flavors?sort_key=rxtx_factor", **v("2.101")).status_code == 200
    assert member.client.get(f"{BASE}/flavors?sort_key=rxtx_factor", **v("2.102")).status_code == 400
    body = {"flavor": {"name": "x", "ram": 64, "vcpus": 1, "disk": 1, "rxtx_factor": 1.0}}
    assert admin.client.post(f"{BASE}/flavors", body, format="json", **v("2.101")).status_code == 200
    body["flavor"]["name"] = "y"
    assert admin.client.post(f"{BASE}/flavors", body, format="json", **v("2.102")).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "servers/{server}",
        "servers/{server}/metadata",
        "servers/{server}/os-instance-actions/{request_id}",
        "servers/{server}/os-interface",
        "servers/{server}/topology",
        "servers/{server}/os-security-groups",
        "servers/{server}/migrations",
        "flavors/{flavor}",
        "flavors/{flavor}/os-extra_specs",
        "os-aggregates",
        "os-aggregates/{aggregate}",
        "os-availability-zone",
        "os-availability-zone/detail",
        "os-server-groups/{group}",
    ],
)
def test_2_102_unknown_query_parameters_are_refused_everywhere(monkeypatch, admin, path):
    allow_version(monkeypatch, "2.102")
    server = InstanceFactory(project=admin.project, user=admin.user, host=ComputeHostFactory())
    action_row = InstanceAction.objects.create(instance=server, action="create", request_id="req-x")
    group = ServerGroup.objects.create(name="g", project=admin.project, user=admin.user, policy="affinity")
    url = f"{BASE}/" + path.format(
        server=server.uuid,
        request_id=action_row.request_id,
        flavor=server.flavor.flavorid,
        aggregate=Aggregate.objects.create(name="a").pk,
        group=group.uuid,
    )
    assert admin.client.get(url, **v("2.101")).status_code == 200
    assert admin.client.get(f"{url}?bogus=1", **v("2.101")).status_code == 200
    refused = admin.client.get(f"{url}?bogus=1", **v("2.102"))
    assert refused.status_code == 400, url
    assert "bogus" in refused.json()["badRequest"]["message"]
    assert admin.client.get(url, **v("2.102")).status_code == 200


def test_os_volumes_boot_is_the_servers_api_until_2_103(monkeypatch, member, stranger):
    allow_version(monkeypatch, "2.103")
    server = InstanceFactory(project=member.project, user=member.user, name="old-name")
    listed = member.client.get(f"{BASE}/os-volumes_boot", **v("2.102"))
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["servers"]] == [str(server.uuid)]
    detail = member.client.get(f"{BASE}/os-volumes_boot/detail", **v("2.102")).json()["servers"]
    assert [s["name"] for s in detail] == ["old-name"]
    renamed = member.client.put(
        f"{BASE}/os-volumes_boot/{server.uuid}", {"server": {"name": "new-name"}}, format="json", **v("2.102")
    )
    assert renamed.status_code == 200 and renamed.json()["server"]["name"] == "new-name"
    assert member.client.get(f"{BASE}/os-volumes_boot/{server.uuid}", **v("2.102")).status_code == 200
    assert stranger.client.get(f"{BASE}/os-volumes_boot/{server.uuid}", **v("2.102")).status_code == 404
    bad = member.client.post(f"{BASE}/os-volumes_boot", {"server": {"name": "x"}}, format="json", **v("2.102"))
    assert bad.status_code == 400, bad.content  # the create's own validation
    for path in ("os-volumes_boot", "os-volumes_boot/detail", f"os-volumes_boot/{server.uuid}"):
        assert member.client.get(f"{BASE}/{path}", **v("2.103")).status_code == 404, path
    assert member.client.post(f"{BASE}/os-volumes_boot", {"server": {}}, format="json", **v("2.103")).status_code == 404
