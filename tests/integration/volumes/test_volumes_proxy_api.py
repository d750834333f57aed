"""``/os-volumes``, the compute API's proxy of Cinder's volumes until 2.35, against the session's real
Cinder: Nova's shapes, the caller's project only, and 404 from 2.36."""

import time

import pytest

from portal.models import Role
from tests.conftest import Caller

pytestmark = pytest.mark.integration

BASE = "/compute/v2.1"
V235 = {"HTTP_OPENSTACK_API_VERSION": "compute 2.35"}
SHOWN = {
    "id",
    "status",
    "size",
    "availabilityZone",
    "createdAt",
    "attachments",
    "displayName",
    "displayDescription",
    "volumeType",
    "snapshotId",
    "metadata",
}


def test_volumes_are_created_listed_shown_and_deleted_in_nova_shapes(cinder_settings, cinder, transactional_db):
    member, stranger = Caller(Role.MEMBER), Caller(Role.MEMBER)
    reader = Caller(Role.READER, project=member.project)
    elsewhere = cinder.create_volume(stranger.project.pk, name="elsewhere")

    made = member.client.post(
        f"{BASE}/os-volumes",
        {"volume": {"size": 1, "display_name": "data", "display_description": "for tests", "metadata": {"k": "v"}}},
        format="json",
        **V235,
    )
    assert made.status_code == 200, made.content
    volume = made.json()["volume"]
    assert set(volume) == SHOWN
    assert (volume["displayName"], volume["displayDescription"], volume["size"], volume["metadata"]) == (
        "data",
        "for tests",
        1,
        {"k": "v"},
    )
    assert volume["attachments"] == [{}]  # none, as the compute API shows it
    cinder.wait_for_status(member.project.pk, volume["id"], "available")

    for path in ("os-volumes", "os-volumes/detail"):
        listed = member.client.get(f"{BASE}/{path}", **V235).json()["volumes"]
        assert [v["id"] for v in listed] == [volume["id"]], path  # not the other project's
    shown = member.client.get(f"{BASE}/os-volumes/{volume['id']}", **V235)
    assert shown.status_code == 200 and shown.json()["volume"]["status"] == "available"
    assert member.client.get(f"{BASE}/os-volumes/{elsewhere['id']}", **V235).status_code == 404
    assert stranger.client.get(f"{BASE}/os-volumes/{volume['id']}", **V235).status_code == 404
    assert stranger.client.delete(f"{BASE}/os-volumes/{volume['id']}", **V235).status_code == 404
    assert reader.client.delete(f"{BASE}/os-volumes/{volume['id']}", **V235).status_code == 403
    assert member.client.get(f"{BASE}/os-volumes/not-a-uuid", **V235).status_code == 404

    for bad in ({}, {"size": 0}, {"size": "x"}, {"size": 1, "bogus": 1}, {"size": 1, "metadata": {"k": 1}}):
        refused = member.client.post(f"{BASE}/os-volumes", {"volume": bad}, format="json", **V235)
        assert refused.status_code == 400, (bad, refused.content)
        assert "badRequest" in refused.json()

    # Gone from 2.36.
    assert member.client.get(f"{BASE}/os-volumes", HTTP_OPENSTACK_API_VERSION="compute 2.36").status_code == 404
    gone = member.client.get(f"{BASE}/os-volumes/{volume['id']}", HTTP_OPENSTACK_API_VERSION="compute 2.36")
    assert gone.status_code == 404

    deleted = member.client.delete(f"{BASE}/os-volumes/{volume['id']}", **V235)
    assert deleted.status_code == 202, deleted.content
    cinder.wait_for_status(member.project.pk, volume["id"], "deleted")
    assert cinder.volume(stranger.project.pk, elsewhere["id"])["status"] == "available"


def test_without_a_volume_service_the_proxy_says_so(transactional_db, settings):
    settings.CINDER = {**settings.CINDER, "ENDPOINT": ""}
    member = Caller(Role.MEMBER)
    refused = member.client.get(f"{BASE}/os-volumes", **V235)
    assert refused.status_code == 400, refused.content


def test_snapshots_of_the_projects_volumes(cinder_settings, cinder, transactional_db):
    member, stranger = Caller(Role.MEMBER), Caller(Role.MEMBER)
    volume = cinder.create_volume(member.project.pk, name="data")
    theirs = cinder.create_volume(stranger.project.pk, name="theirs")

    made = member.client.post(
        f"{BASE}/os-snapshots",
        {"snapshot": {"volume_id": volume["id"], "display_name": "snap", "display_description": "d"}},
        format="json",
        **V235,
    )
    assert made.status_code == 200, made.content
    snapshot = made.json()["snapshot"]
    assert set(snapshot) == {"id", "volumeId", "status", "size", "createdAt", "displayName", "displayDescription"}
    assert (snapshot["volumeId"], snapshot["displayName"], snapshot["size"]) == (volume["id"], "snap", 1)
    # Another project's volume cannot be snapshotted, nor its snapshots seen.
    refused = member.client.post(
        f"{BASE}/os-snapshots", {"snapshot": {"volume_id": theirs["id"]}}, format="json", **V235
    )
    assert refused.status_code == 404, refused.content
    for bad in (
        {},
        {"volume_id": "x"},
        {"volume_id": volume["id"], "force": "maybe"},
        {"volume_id": volume["id"], "x": 1},
    ):
        assert member.client.post(f"{BASE}/os-snapshots", {"snapshot": bad}, format="json", **V235).status_code == 400

    def status():
        return member.client.get(f"{BASE}/os-snapshots/{snapshot['id']}", **V235).json()["snapshot"]["status"]

    end = time.monotonic() + 60
    while status() != "available":
        assert time.monotonic() < end, status()
        time.sleep(0.5)
    for path in ("os-snapshots", "os-snapshots/detail"):
        assert [s["id"] for s in member.client.get(f"{BASE}/{path}", **V235).json()["snapshots"]] == [snapshot["id"]]
        assert stranger.client.get(f"{BASE}/{path}", **V235).json()["snapshots"] == []
    assert stranger.client.get(f"{BASE}/os-snapshots/{snapshot['id']}", **V235).status_code == 404
    assert stranger.client.delete(f"{BASE}/os-snapshots/{snapshot['id']}", **V235).status_code == 404
    assert member.client.get(f"{BASE}/os-snapshots", HTTP_OPENSTACK_API_VERSION="compute 2.36").status_code == 404

    assert member.client.delete(f"{BASE}/os-snapshots/{snapshot['id']}", **V235).status_code == 202
    end = time.monotonic() + 60
    while member.client.get(f"{BASE}/os-snapshots/{snapshot['id']}", **V235).status_code != 404:
        assert time.monotonic() < end
        time.sleep(0.5)
