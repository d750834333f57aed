"""``/os-aggregates`` and the availability zones they make (``/os-availability-zone``)."""

import threading

import pytest
from django.db import connection

from portal.models import Aggregate
from portal.services import aggregates as aggregate_services
from tests.factories import InstanceFactory

from .admin_helpers import BASE, ComputeHostFactory, v

pytestmark = pytest.mark.integration


def create(admin, body: dict, version: str = "2.1"):
    return admin.client.post(f"{BASE}/os-aggregates", {"aggregate": body}, format="json", **v(version))


def act(admin, aggregate_id, body: dict, version: str = "2.1"):
    return admin.client.post(f"{BASE}/os-aggregates/{aggregate_id}/action", body, format="json", **v(version))


def test_create_show_list_update_delete(admin):
    response = create(admin, {"name": "fast", "availability_zone": "az1"})
    assert response.status_code == 200
    created = response.json()["aggregate"]
    # The create answer has neither hosts nor metadata, and no uuid before 2.41.
    assert set(created) == {"id", "name", "availability_zone", "created_at", "updated_at", "deleted_at", "deleted"}
    assert (created["name"], created["availability_zone"], created["deleted"]) == ("fast", "az1", False)
    agg_id = created["id"]

    shown = admin.client.get(f"{BASE}/os-aggregates/{agg_id}").json()["aggregate"]
    assert shown["hosts"] == [] and shown["metadata"] == {"availability_zone": "az1"}
    assert "uuid" not in shown
    at_241 = admin.client.get(f"{BASE}/os-aggregates/{agg_id}", **v("2.41")).json()["aggregate"]
    assert at_241["uuid"] == str(Aggregate.objects.get(pk=agg_id).uuid)
    assert "uuid" in create(admin, {"name": "other"}, "2.41").json()["aggregate"]

    listed = admin.client.get(f"{BASE}/os-aggregates").json()["aggregates"]
    assert [a["name"] for a in listed] == ["fast", "other"]

    renamed = admin.client.put(
        f"{BASE}/os-aggregates/{agg_id}", {"aggregate": {"name": "faster", "availability_zone": "az2"}}, format="json"
    )
    assert renamed.status_code == 200
    assert renamed.json()["aggregate"]["name"] == "faster"
    assert renamed.json()["aggregate"]["availability_zone"] == "az2"
    assert renamed.json()["aggregate"]["metadata"] == {"availability_zone": "az2"}

    deleted = admin.client.delete(f"{BASE}/os-aggregates/{agg_id}")
    assert deleted.status_code == 200
    assert admin.client.get(f"{BASE}/os-aggregates/{agg_id}").status_code == 404


def test_errors(admin, member):
    assert create(admin, {"name": "a"}).status_code == 200
    taken = create(admin, {"name": "a"})
    assert taken.status_code == 409
    assert taken.json()["conflictingRequest"]["message"] == "Aggregate a already exists."
    assert create(admin, {"name": " a"}).status_code == 400
    assert create(admin, {"name": "b", "availability_zone": "has:colon"}).status_code == 400
    assert create(admin, {"name": "b", "extra": 1}).status_code == 400
    assert create(admin, {}).status_code == 400
    assert admin.client.get(f"{BASE}/os-aggregates/abc").status_code == 400
    assert admin.client.get(f"{BASE}/os-aggregates/-1").status_code == 404  # an integer no aggregate has
    missing = admin.client.get(f"{BASE}/os-aggregates/999999")
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == "Aggregate 999999 could not be found."
    assert act(admin, Aggregate.objects.get().pk, {"explode": {}}).status_code == 400
    for call in (
        lambda: member.client.get(f"{BASE}/os-aggregates"),
        lambda: create(member, {"name": "m"}),
        lambda: act(member, Aggregate.objects.get().pk, {"set_metadata": {"metadata": {"k": "v"}}}),
    ):
        assert call().status_code == 403


def test_hosts_in_and_out(admin):
    host = ComputeHostFactory(name="node1")
    agg_id = create(admin, {"name": "rack1"}).json()["aggregate"]["id"]
    added = act(admin, agg_id, {"add_host": {"host": "node1"}})
    assert added.status_code == 200
    assert added.json()["aggregate"]["hosts"] == ["node1"]
    again = act(admin, agg_id, {"add_host": {"host": "node1"}})
    assert again.status_code == 409
    assert again.json()["conflictingRequest"]["message"] == f"Aggregate {agg_id} already has host node1."
    unknown = act(admin, agg_id, {"add_host": {"host": "nowhere"}})
    assert unknown.status_code == 404
    assert unknown.json()["itemNotFound"]["message"] == "Compute host nowhere could not be found."
    assert act(admin, agg_id, {"add_host": {"host": "bad host!"}}).status_code == 400

    not_empty = admin.client.delete(f"{BASE}/os-aggregates/{agg_id}")
    assert not_empty.status_code == 400
    assert "Host aggregate is not empty" in not_empty.json()["badRequest"]["message"]

    removed = act(admin, agg_id, {"remove_host": {"host": "node1"}})
    assert removed.status_code == 200 and removed.json()["aggregate"]["hosts"] == []
    not_member = act(admin, agg_id, {"remove_host": {"host": "node1"}})
    assert not_member.status_code == 404
    assert not_member.json()["itemNotFound"]["message"] == f"Cannot remove host node1 in aggregate {agg_id}"
    assert list(host.aggregates.all()) == []


def test_set_metadata_adds_replaces_and_removes_keys(admin):
    agg_id = create(admin, {"name": "meta"}).json()["aggregate"]["id"]
    first = act(admin, agg_id, {"set_metadata": {"metadata": {"ssd": "true", "cpu_allocation_ratio": "2.0"}}})
    assert first.json()["aggregate"]["metadata"] == {"ssd": "true", "cpu_allocation_ratio": "2.0"}
    second = act(admin, agg_id, {"set_metadata": {"metadata": {"ssd": None, "availability_zone": "az9"}}})
    assert second.json()["aggregate"]["metadata"] == {"cpu_allocation_ratio": "2.0", "availability_zone": "az9"}
    assert second.json()["aggregate"]["availability_zone"] == "az9"
    empty_zone = act(admin, agg_id, {"set_metadata": {"metadata": {"availability_zone": ""}}})
    assert empty_zone.status_code == 400
    assert "does not support empty named availability zone" in empty_zone.json()["badRequest"]["message"]
    assert act(admin, agg_id, {"set_metadata": {"metadata": {"bad/key": "x"}}}).status_code == 400
    assert act(admin, agg_id, {"set_metadata": {"metadata": {"k": 5}}}).status_code == 400
    assert act(admin, agg_id, {"set_metadata": {}}).status_code == 400


def test_a_host_is_in_one_zone_at_most(admin):
    ComputeHostFactory(name="node1")
    ComputeHostFactory(name="node2")
    az1 = create(admin, {"name": "a1", "availability_zone": "az1"}).json()["aggregate"]["id"]
    az2 = create(admin, {"name": "a2", "availability_zone": "az2"}).json()["aggregate"]["id"]
    also_az1 = create(admin, {"name": "a3", "availability_zone": "az1"}).json()["aggregate"]["id"]
    plain = create(admin, {"name": "a4"}).json()["aggregate"]["id"]
    assert act(admin, az1, {"add_host": {"host": "node1"}}).status_code == 200
    conflict = act(admin, az2, {"add_host": {"host": "node1"}})
    assert conflict.status_code == 409
    assert "already in availability zone(s) ['az1']" in conflict.json()["conflictingRequest"]["message"]
    # Another aggregate of the same zone, or one without a zone, is fine.
    assert act(admin, also_az1, {"add_host": {"host": "node1"}}).status_code == 200
    assert act(admin, plain, {"add_host": {"host": "node1"}}).status_code == 200
    # An aggregate cannot take a zone one of its hosts has from another aggregate.
    renamed = act(admin, plain, {"set_metadata": {"metadata": {"availability_zone": "az2"}}})
    assert renamed.status_code == 400
    assert "already in availability zone(s) ['az1']" in renamed.json()["badRequest"]["message"]
    via_put = admin.client.put(
        f"{BASE}/os-aggregates/{plain}", {"aggregate": {"availability_zone": "az2"}}, format="json"
    )
    assert via_put.status_code == 400
    assert act(admin, az2, {"add_host": {"host": "node2"}}).status_code == 200


def test_the_zone_of_a_host_with_servers_cannot_change(admin):
    host = ComputeHostFactory(name="busy")
    InstanceFactory(host=host)
    zoned = create(admin, {"name": "zoned", "availability_zone": "az1"}).json()["aggregate"]["id"]
    plain = create(admin, {"name": "plain"}).json()["aggregate"]["id"]
    moved = act(admin, zoned, {"add_host": {"host": "busy"}})
    assert moved.status_code == 409
    assert "would change from 'nova' to 'az1'" in moved.json()["conflictingRequest"]["message"]
    # Joining an aggregate without a zone changes nothing, and then the aggregate cannot take one.
    assert act(admin, plain, {"add_host": {"host": "busy"}}).status_code == 200
    refused = act(admin, plain, {"set_metadata": {"metadata": {"availability_zone": "az2"}}})
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == "One or more hosts contain instances in this zone"
    # Naming the default zone explicitly does not move anything.
    assert act(admin, plain, {"set_metadata": {"metadata": {"availability_zone": "nova"}}}).status_code == 200
    leaving = act(admin, plain, {"remove_host": {"host": "busy"}})
    assert leaving.status_code == 200  # from "nova" to the default zone "nova": no move


def test_availability_zones_come_from_hosts_and_their_aggregates(admin, member):
    ComputeHostFactory(name="node1")
    ComputeHostFactory(name="node2")
    ComputeHostFactory(name="node3", enabled=False, disabled_reason="maintenance")
    az1 = create(admin, {"name": "a1", "availability_zone": "az1"}).json()["aggregate"]["id"]
    act(admin, az1, {"add_host": {"host": "node2"}})
    lonely = create(admin, {"name": "a2", "availability_zone": "az-empty"}).json()["aggregate"]["id"]
    assert lonely
    off = create(admin, {"name": "a3", "availability_zone": "az-off"}).json()["aggregate"]["id"]
    act(admin, off, {"add_host": {"host": "node3"}})

    zones = member.client.get(f"{BASE}/os-availability-zone").json()["availabilityZoneInfo"]
    assert zones == [
        {"zoneName": "az1", "zoneState": {"available": True}, "hosts": None},
        {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None},
        {"zoneName": "az-off", "zoneState": {"available": False}, "hosts": None},
    ]
    assert member.client.get(f"{BASE}/os-availability-zone/detail").status_code == 403

    detail = admin.client.get(f"{BASE}/os-availability-zone/detail").json()["availabilityZoneInfo"]
    by_name = {z["zoneName"]: z for z in detail}
    node1 = by_name["nova"]["hosts"]["node1"]["nova-compute"]
    assert node1["available"] is True and node1["active"] is True and node1["updated_at"]
    assert list(by_name["az1"]["hosts"]) == ["node2"]
    assert by_name["az-off"] == {"zoneName": "az-off", "zoneState": {"available": False}, "hosts": None}


def test_services_show_the_zone_of_their_host(admin):
    ComputeHostFactory(name="node1")
    agg = create(admin, {"name": "a1", "availability_zone": "az1"}).json()["aggregate"]["id"]
    act(admin, agg, {"add_host": {"host": "node1"}})
    services = admin.client.get(f"{BASE}/os-services").json()["services"]
    assert [(s["host"], s["zone"]) for s in services] == [("node1", "az1")]


@pytest.mark.django_db(transaction=True)
def test_concurrent_adds_cannot_put_a_host_in_two_zones():
    """Two admins add the same host to aggregates of different zones at once: exactly one wins."""
    host = ComputeHostFactory(name="contested")
    zone_a = aggregate_services.aggregate_create(name="za", availability_zone="A")
    zone_b = aggregate_services.aggregate_create(name="zb", availability_zone="B")
    barrier = threading.Barrier(2)
    outcomes = []

    def add(aggregate):
        try:
            barrier.wait(timeout=10)
            aggregate_services.aggregate_add_host(aggregate=aggregate, host=host)
            outcomes.append("added")
        except aggregate_services.AggregateConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=add, args=(agg,)) for agg in (zone_a, zone_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["added", "conflict"]
    assert Aggregate.objects.filter(hosts=host).count() == 1


def test_aggregate_list_queries_do_not_grow(admin, django_assert_max_num_queries):
    hosts = [ComputeHostFactory() for _ in range(4)]
    for n in range(2):
        agg = Aggregate.objects.create(name=f"agg{n}")
        agg.hosts.set(hosts)
    with django_assert_max_num_queries(10) as few:
        admin.client.get(f"{BASE}/os-aggregates", **v("2.41"))
    baseline = len(few.captured_queries)
    for n in range(2, 20):
        agg = Aggregate.objects.create(name=f"agg{n}", metadata={"availability_zone": "z"})
        agg.hosts.set(hosts)
    with django_assert_max_num_queries(baseline):
        assert len(admin.client.get(f"{BASE}/os-aggregates", **v("2.41")).json()["aggregates"]) == 20
    with django_assert_max_num_queries(7):  # one of them the sign-in throttle's count of failures
        admin.client.get(f"{BASE}/os-availability-zone/detail")
