"""``DELETE /os-services/{id}``: a host with no server and no move in progress leaves the cloud (its listings,
its aggregates, its key); before that it is 409; ids are integers before 2.53 and UUIDs from it."""

import time

import pytest

from compute_tasks import rpc, signing
from portal.models import Aggregate, ComputeHost, HostCredential, Instance, Migration
from portal.services import host_trust
from portal.services.hosts import host_heartbeat
from tests.factories import InstanceFactory
from tests.integration.hosts.beats import heartbeat

from .admin_helpers import BASE, ComputeHostFactory, v

pytestmark = pytest.mark.integration


def delete(caller, service_id, version: str = "2.53"):
    return caller.client.delete(f"{BASE}/os-services/{service_id}", **v(version))


def services(caller) -> list[str]:
    return [s["host"] for s in caller.client.get(f"{BASE}/os-services", **v("2.53")).json()["services"]]


KEY = signing.new_private_key()  # the retiring host's


@pytest.fixture
def host(db):
    host = ComputeHostFactory(name="retiring")
    host_trust.host_enroll_many(names=["retiring"], public_keys={"retiring": signing.encode_public(KEY)})
    return ComputeHost.objects.get(pk=host.pk)


def test_only_admins_delete_and_ids_are_checked(admin, member, host):
    assert delete(member, host.uuid).status_code == 403
    assert delete(admin, "not-a-uuid").json() == {"badRequest": {"code": 400, "message": "Invalid uuid not-a-uuid"}}
    missing = delete(admin, "2f0c8bbe-58c1-4ba1-9cf4-b6b7e4b1a3a2")
    assert missing.status_code == 404 and "not found" in missing.json()["itemNotFound"]["message"]
    # Before 2.53 the id is the integer one; a UUID there is not an integer.
    assert delete(admin, host.uuid, "2.52").status_code == 400
    assert delete(admin, "1_0", "2.52").status_code == 400
    assert delete(admin, "99999999999999999999999", "2.52").status_code == 404
    assert services(admin) == ["retiring"]


def test_a_host_with_a_server_or_a_move_is_kept(admin, host):
    server = InstanceFactory(host=host)
    refused = delete(admin, host.uuid)
    assert refused.status_code == 409
    assert "hosting instances" in refused.json()["conflictingRequest"]["message"]
    # A server moving away from it still has a migration in progress that names it.
    other = ComputeHostFactory(name="other")
    Instance.objects.filter(pk=server.pk).update(host=other)
    flavor = {"flavorid": "1"}
    migration = Migration.objects.create(
        instance=server, project=server.project, migration_type="migration", status="finished",
        source_host=host, dest_host=other, old_flavor=flavor, new_flavor=flavor,
    )  # fmt: skip
    refused = delete(admin, host.uuid)
    assert refused.status_code == 409 and "in-progress migrations" in refused.json()["conflictingRequest"]["message"]
    assert not ComputeHost.objects.get(pk=host.pk).deleted_at
    # Confirmed, the migration is history: the host may go, and the migration still names it.
    Migration.objects.filter(pk=migration.pk).update(status="confirmed")
    assert delete(admin, host.pk, "2.52").status_code == 204
    listed = admin.client.get(f"{BASE}/os-migrations", **v("2.59")).json()["migrations"]
    assert [(m["source_compute"], m["dest_compute"]) for m in listed] == [("retiring", "other")]


def test_a_deleted_host_is_gone_and_its_messages_refused(admin, host):
    InstanceFactory(host=host, vm_state="deleted")  # a deleted server's history keeps naming the host
    aggregate = Aggregate.objects.create(name="rack-1")
    aggregate.hosts.add(host)
    assert delete(admin, host.uuid).status_code == 204
    assert services(admin) == []
    assert admin.client.get(f"{BASE}/os-hypervisors", **v("2.53")).json()["hypervisors"] == []
    assert admin.client.get(f"{BASE}/os-aggregates/{aggregate.pk}").json()["aggregate"]["hosts"] == []
    assert Instance.objects.get(host__name="retiring").host.deleted_at is not None
    assert delete(admin, host.uuid).status_code == 404
    # Its key is revoked: a heartbeat it signs now is refused, and changes nothing.
    beat = heartbeat("retiring", vcpus=64)
    auth = signing.Signer("retiring", KEY).sign(rpc.HEARTBEAT, "conductor", beat.to_dict())
    assert host_trust.message_accept(task=rpc.HEARTBEAT, message=beat.to_dict(), auth=auth) is None
    assert host_heartbeat(beat=beat, signed_at=time.time()) is None
    assert not ComputeHost.objects.filter(name="retiring").exists()
    assert ComputeHost._base_manager.get(pk=host.pk).vcpus != 64
    assert HostCredential.objects.get(host=host).revoked_at is not None


def test_enrolled_again_it_comes_back_as_a_new_service(admin, host):
    assert delete(admin, host.uuid).status_code == 204
    host_trust.host_enroll(name="retiring")
    (back,) = admin.client.get(f"{BASE}/os-services", **v("2.53")).json()["services"]
    assert back["host"] == "retiring" and back["id"] != str(host.uuid)
