"""``createBackup``: a snapshot made as createImage makes it, with ``image_type: backup`` and its
``backup_type``; once the host's upload is active, the oldest backups of that server and type beyond
``rotation`` are deleted (rotation 0 keeps none)."""

import pytest

from compute_tasks import rpc
from portal.conductor import tasks
from portal.models import Image, InstanceAction
from portal.states import TaskState, VmState
from tests.factories import InstanceFactory
from tests.processes import signed_as_host

from .admin_helpers import BASE, ComputeHostFactory, v

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(rpc, "snapshot_instance", lambda host, message: calls.append((host, message)))
    return calls


@pytest.fixture
def server(member):
    return InstanceFactory(project=member.project, user=member.user, host=ComputeHostFactory(name="hv1"))


def backup(caller, server, version="2.45", **args):
    body = {"createBackup": {"name": "nightly", "backup_type": "daily", "rotation": 2, **args}}
    return caller.client.post(f"{BASE}/servers/{server.uuid}/action", body, format="json", **v(version))


def uploaded(server, image_id, *, active=True):
    """The host's report that it uploaded the snapshot (the image made active first, as the upload would)."""
    if active:
        Image.objects.filter(pk=image_id).update(status="active")
    request_id = InstanceAction.objects.filter(instance=server).latest("start_time", "id").request_id
    message = rpc.ActionResult(
        instance_uuid=str(server.uuid),
        host="hv1",
        request_id=request_id,
        action="snapshot",
        power_state=rpc.RUNNING,
        image_id=str(image_id),
    ).to_dict()
    tasks.action_done(message, signed_as_host("hv1", rpc.ACTION_DONE, message))
    server.refresh_from_db()


def made(caller, server, **args) -> str:
    response = backup(caller, server, **args)
    assert response.status_code == 202, response.content
    image_id = response.json()["image_id"]
    uploaded(server, image_id)
    assert server.task_state is None
    return image_id


def live(ids):
    return {str(i) for i in Image.objects.filter(pk__in=ids).exclude(status="deleted").values_list("pk", flat=True)}


def test_a_backup_is_a_snapshot_with_its_type(member, server, sent):
    response = backup(member, server, metadata={"purpose": "audit"})
    assert response.status_code == 202, response.content
    image = Image.objects.get(pk=response.json()["image_id"])
    assert (image.name, image.status, image.visibility, image.owner) == ("nightly", "queued", "private", member.project)
    assert image.properties["image_type"] == "backup"
    assert image.properties["backup_type"] == "daily"
    assert image.properties["instance_uuid"] == str(server.uuid)
    assert image.properties["purpose"] == "audit"
    assert image.backup_rotation == 2
    server.refresh_from_db()
    assert (server.vm_state, server.task_state) == (VmState.ACTIVE, TaskState.IMAGE_SNAPSHOT)
    assert InstanceAction.objects.filter(instance=server).latest("start_time").action == "createBackup"
    # The image API does not show the rotation.
    shown = member.client.get(f"/image/v2/images/{image.id}").json()
    assert "backup_rotation" not in shown and shown["image_type"] == "backup"


def test_before_2_45_a_location_unless_nothing_is_kept(member, server):
    response = backup(member, server, version="2.44")
    assert response.status_code == 202 and response.content == b""
    image = Image.objects.get(properties__instance_uuid=str(server.uuid))
    assert response["Location"].endswith(f"/image/v2/images/{image.id}")
    uploaded(server, image.id)
    response = backup(member, server, version="2.1", rotation=0)
    assert response.status_code == 202
    assert not response.has_header("Location")


def test_the_oldest_beyond_the_rotation_go_once_the_new_one_is_active(member, server):
    other_server = InstanceFactory(project=member.project, user=member.user, host=server.host)
    weekly = made(member, server, backup_type="weekly", rotation=1)
    theirs = made(member, other_server, rotation=1)
    first = made(member, server)
    second = made(member, server)
    assert live([first, second]) == {first, second}
    response = backup(member, server)
    third = response.json()["image_id"]
    # Not while the third is still uploading.
    assert live([first]) == {first}
    uploaded(server, third)
    assert live([first, second, third]) == {second, third}
    # Other types and other servers' backups are not in this rotation.
    assert live([weekly, theirs]) == {weekly, theirs}


def test_a_failed_backup_rotates_nothing(member, server):
    first = made(member, server, rotation=1)
    response = backup(member, server, rotation=1)
    uploaded(server, response.json()["image_id"], active=False)
    assert live([first]) == {first}


def test_rotation_zero_keeps_none_not_even_the_new_one(member, server):
    kept = made(member, server, rotation=5)
    new = made(member, server, rotation=0)
    assert live([kept, new]) == set()


def test_snapshots_are_never_rotated(member, server):
    response = member.client.post(
        f"{BASE}/servers/{server.uuid}/action", {"createImage": {"name": "snap"}}, format="json", **v("2.45")
    )
    snapshot = response.json()["image_id"]
    uploaded(server, snapshot)
    made(member, server, rotation=0)
    assert live([snapshot]) == {snapshot}


@pytest.mark.parametrize(
    "args",
    [
        {"name": None},
        {"name": ""},
        {"name": " padded"},
        {"backup_type": None},
        {"backup_type": 7},
        {"rotation": -1},
        {"rotation": "two"},
        {"rotation": True},
        {"rotation": 1.5},
        {"rotation": None},
        {"metadata": {"k": 1}},
        {"unknown": "x"},
    ],
)
def test_bad_requests_are_400_and_leave_nothing(member, server, args):
    response = backup(member, server, **args)
    assert response.status_code == 400, response.content
    assert "badRequest" in response.json()
    assert not Image.objects.filter(properties__instance_uuid=str(server.uuid)).exists()
    server.refresh_from_db()
    assert server.task_state is None


@pytest.mark.parametrize("missing", ["name", "backup_type", "rotation"])
def test_every_field_is_required(member, server, missing):
    body = {"name": "nightly", "backup_type": "daily", "rotation": 2}
    del body[missing]
    response = member.client.post(f"{BASE}/servers/{server.uuid}/action", {"createBackup": body}, format="json")
    assert response.status_code == 400


def test_rotation_as_a_string_of_digits(member, server):
    response = backup(member, server, rotation="3")
    assert response.status_code == 202
    assert Image.objects.get(pk=response.json()["image_id"]).backup_rotation == 3


@pytest.mark.parametrize(("vm_state", "task_state"), [(VmState.ERROR, None), (VmState.ACTIVE, TaskState.REBOOTING)])
def test_the_state_rules_of_create_image_are_409(member, server, vm_state, task_state):
    server.vm_state, server.task_state = vm_state, task_state
    server.save()
    response = backup(member, server)
    assert response.status_code == 409
    assert "Cannot 'createBackup' instance" in response.json()["conflictingRequest"]["message"]
    assert not Image.objects.filter(properties__instance_uuid=str(server.uuid)).exists()


def test_a_server_booted_from_a_volume_is_400(member, server):
    server.image_ref = None
    server.save()
    response = backup(member, server)
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == "Backup is not supported for volume-backed instances."


def test_readers_and_strangers_may_not(reader, stranger, server):
    assert backup(reader, server).status_code == 403
    assert backup(stranger, server).status_code == 404
    assert not Image.objects.filter(properties__instance_uuid=str(server.uuid)).exists()
