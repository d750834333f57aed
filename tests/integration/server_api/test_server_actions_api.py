"""Server actions through the API without hosts: what is accepted, what is queued, what is refused.

Hosts are not running here: on-commit callbacks are captured to see what would be sent.
"""

import pytest

from compute_tasks import rpc
from portal.models import ConsoleToken, Image, InstanceAction
from portal.states import TaskState, VmState

from .helpers import BASE, action, booted, on_host, v

pytestmark = pytest.mark.integration


@pytest.fixture
def server(member, flavor, image):
    return on_host(booted(member, flavor, image))


@pytest.fixture
def sent(monkeypatch):
    """What would go to the hosts, by rpc function name."""
    calls = []
    for name in (
        "pause_instance",
        "unpause_instance",
        "suspend_instance",
        "resume_instance",
        "rebuild_instance",
        "snapshot_instance",
    ):
        monkeypatch.setattr(rpc, name, lambda host, message, _n=name: calls.append((_n, host, message)))
    return calls


@pytest.mark.parametrize(
    ("body", "vm_state", "task_state", "sender"),
    [
        ({"pause": None}, VmState.ACTIVE, TaskState.PAUSING, "pause_instance"),
        ({"unpause": None}, VmState.PAUSED, TaskState.UNPAUSING, "unpause_instance"),
        ({"suspend": None}, VmState.ACTIVE, TaskState.SUSPENDING, "suspend_instance"),
        ({"resume": None}, VmState.SUSPENDED, TaskState.RESUMING, "resume_instance"),
    ],
)
def test_power_actions_claim_the_task_and_ask_the_host(
    member, server, sent, django_capture_on_commit_callbacks, body, vm_state, task_state, sender
):
    server.vm_state = vm_state
    server.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = action(member, server, body)
    assert response.status_code == 202, response.content
    server.refresh_from_db()
    assert (server.vm_state, server.task_state) == (vm_state, task_state)
    assert server.task_deadline is not None
    ((name, host, ref),) = sent
    assert (name, host, ref.instance_uuid) == (sender, "hv1", str(server.uuid))
    record = InstanceAction.objects.filter(instance=server).latest("start_time")
    assert record.action == next(iter(body))
    # Asking again while the task runs is a conflict.
    assert action(member, server, body).status_code == 409


@pytest.mark.parametrize(
    ("body", "vm_state"),
    [
        ({"pause": None}, VmState.STOPPED),
        ({"unpause": None}, VmState.ACTIVE),
        ({"suspend": None}, VmState.PAUSED),
        ({"resume": None}, VmState.ACTIVE),
        ({"rebuild": {"imageRef": "IMAGE"}}, VmState.PAUSED),
        ({"createImage": {"name": "snap"}}, VmState.ERROR),
        ({"os-stop": None}, VmState.SUSPENDED),
    ],
)
def test_actions_the_state_table_forbids_are_409(member, server, image, body, vm_state):
    server.vm_state = vm_state
    server.save()
    if "rebuild" in body:
        body = {"rebuild": {"imageRef": str(image.id)}}
    response = action(member, server, body)
    assert response.status_code == 409, response.content
    assert "conflictingRequest" in response.json()


def test_actions_need_a_host(member, flavor, image):
    building = booted(member, flavor, image)
    building.vm_state = VmState.ERROR
    building.task_state = None
    building.save()
    for body in ({"rebuild": {"imageRef": str(image.id)}}, {"os-getConsoleOutput": {}}):
        assert action(member, building, body).status_code == 409


def test_lock_stops_a_members_actions_but_not_an_admins(member, admin, server, sent):
    assert action(member, server, {"lock": None}).status_code == 202
    server.refresh_from_db()
    assert (server.locked, server.locked_by) == (True, "owner")
    for body in ({"os-stop": None}, {"pause": None}, {"reboot": {"type": "HARD"}}, {"suspend": None}):
        response = action(member, server, body)
        assert response.status_code == 409, body
        assert "locked" in response.json()["conflictingRequest"]["message"]
    assert member.client.delete(f"{BASE}/servers/{server.uuid}").status_code == 409
    assert action(admin, server, {"pause": None}).status_code == 202
    # The owner's lock can be lifted by the owner.
    assert action(member, server, {"unlock": None}).status_code == 202
    server.refresh_from_db()
    assert (server.locked, server.locked_by) == (False, "")
    assert [a.action for a in InstanceAction.objects.filter(instance=server).order_by("start_time", "id")] == [
        "create",
        "lock",
        "pause",
        "unlock",
    ]


def test_an_admins_lock_only_an_admin_lifts(member, admin, server):
    assert action(admin, server, {"lock": None}).status_code == 202
    server.refresh_from_db()
    assert server.locked_by == "admin"
    assert action(member, server, {"unlock": None}).status_code == 403
    assert action(admin, server, {"unlock": None}).status_code == 202


def test_lock_reason_from_2_73(member, server, server_microversions):
    assert action(member, server, {"lock": {"locked_reason": "maintenance"}}, version="2.73").status_code == 202
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.73")).json()["server"]
    assert (body["locked"], body["locked_reason"]) == (True, "maintenance")
    assert action(member, server, {"lock": {"locked_reason": "x" * 256}}, version="2.73").status_code == 400
    assert action(member, server, {"lock": {"reason": "x"}}, version="2.73").status_code == 202
    action(member, server, {"unlock": None}, version="2.73")
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.73")).json()["server"]
    assert (body["locked"], body["locked_reason"]) == (False, None)


def test_inject_network_info_is_for_admins_and_changes_nothing(member, admin, server):
    assert action(member, server, {"injectNetworkInfo": None}).status_code == 403
    assert action(admin, server, {"injectNetworkInfo": None}).status_code == 202
    server.refresh_from_db()
    assert (server.vm_state, server.task_state) == (VmState.ACTIVE, None)


@pytest.mark.parametrize("name", ["restore", "forceDelete"])
def test_restore_and_force_delete_find_no_soft_deleted_server(member, server, name):
    """Deletion is never deferred here, so these answer as Nova does for a server that is not SOFT_DELETED:
    404 for an unknown server, 409 for any other."""
    assert action(member, server, {name: None}).status_code == 409
    server.refresh_from_db()
    assert server.vm_state == VmState.ACTIVE
    unknown = member.client.post(
        f"{BASE}/servers/8c3d7cbb-6ba2-4b5d-9ed4-2bba5bb3e55c/action", {name: None}, format="json", **v("2.1")
    )
    assert unknown.status_code == 404


def test_reset_state_is_for_admins(member, admin, server):
    server.task_state = TaskState.PAUSING
    server.save()
    ConsoleToken.objects.create(token_hash="h", instance=server, user=member.user, expires_at=server.created_at)
    assert action(member, server, {"os-resetState": {"state": "error"}}).status_code == 403
    assert action(admin, server, {"os-resetState": {"state": "error"}}).status_code == 202
    server.refresh_from_db()
    assert (server.vm_state, server.task_state, server.task_deadline) == (VmState.ERROR, None, None)
    assert not ConsoleToken.objects.exists()
    assert action(admin, server, {"os-resetState": {"state": "active"}}).status_code == 202
    server.refresh_from_db()
    assert server.vm_state == VmState.ACTIVE
    for bad in ({"os-resetState": {"state": "paused"}}, {"os-resetState": None}, {"os-resetState": {}}):
        assert action(admin, server, bad).status_code == 400


def test_create_image_makes_a_queued_private_image_and_asks_the_host(
    member, server, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = action(member, server, {"createImage": {"name": "snap-1", "metadata": {"purpose": "backup"}}})
    assert response.status_code == 202
    image_id = response.json()["image_id"]
    image = Image.objects.get(pk=image_id)
    assert (image.name, image.status, image.visibility, image.disk_format) == ("snap-1", "queued", "private", "qcow2")
    assert image.owner == member.project
    assert image.properties["purpose"] == "backup"
    assert image.properties["image_type"] == "snapshot"
    assert image.properties["instance_uuid"] == str(server.uuid)
    server.refresh_from_db()
    assert (server.vm_state, server.task_state) == (VmState.ACTIVE, TaskState.IMAGE_SNAPSHOT)
    ((name, host, request),) = sent
    assert (name, host, request.image_id) == ("snapshot_instance", "hv1", image_id)
    assert f"/internal/images/{image_id}/upload?sig=" in request.upload_url
    assert InstanceAction.objects.filter(instance=server).latest("start_time").action == "createImage"
    # The status the API shows is still ACTIVE, as in the compute API.
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.47")).json()["server"]
    assert (body["status"], body["OS-EXT-STS:task_state"]) == ("ACTIVE", "image_snapshot")


def test_create_image_metadata_may_name_the_image_type_but_not_its_server(member, server):
    metadata = {"image_type": "test", "instance_uuid": "8c3d7cbb-6ba2-4b5d-9ed4-2bba5bb3e55c", "user_id": "x"}
    response = action(member, server, {"createImage": {"name": "snap-2", "metadata": metadata}}, version="2.45")
    assert response.status_code == 202, response.content
    image = Image.objects.get(pk=response.json()["image_id"])
    assert image.properties["image_type"] == "test"
    assert (image.properties["instance_uuid"], image.properties["user_id"]) == (str(server.uuid), str(member.user.pk))


def test_create_image_before_2_45_answers_with_a_location(member, server):
    response = action(member, server, {"createImage": {"name": "snap"}}, version="2.44")
    assert response.status_code == 202
    assert response.content == b""
    image = Image.objects.get(name="snap")
    assert response["Location"].endswith(f"/image/v2/images/{image.id}")


@pytest.mark.parametrize(
    "args",
    [None, {}, {"name": ""}, {"name": "x", "metadata": {"k": 1}}, {"name": "x", "metadata": {"name": "clash"}}],
)
def test_bad_create_image_requests_are_400_and_leave_nothing(member, server, args):
    response = action(member, server, {"createImage": args})
    assert response.status_code == 400, response.content
    assert not Image.objects.filter(properties__instance_uuid=str(server.uuid)).exists()
    server.refresh_from_db()
    assert server.task_state is None


def test_create_image_over_the_projects_image_count_is_403_and_leaves_nothing(member, server):
    from portal.models import QuotaLimit

    owned = Image.objects.filter(owner=member.project).exclude(status="deleted").count()
    QuotaLimit.objects.create(project=member.project, resource="image_count_total", hard_limit=owned)

    response = action(member, server, {"createImage": {"name": "snap"}})

    assert response.status_code == 403, response.content
    assert "image_count_total" in response.json()["forbidden"]["message"]
    assert not Image.objects.filter(properties__instance_uuid=str(server.uuid)).exists()
    server.refresh_from_db()
    assert server.task_state is None


def test_rebuild_writes_the_new_attributes_and_asks_the_host(
    member, server, flavor, sent, django_capture_on_commit_callbacks, server_microversions
):
    from portal.models import Keypair
    from tests.factories import ImageFactory

    other = ImageFactory(owner=member.project, name="other")
    Keypair.objects.create(user=member.user, name="k2", public_key="ssh-ed25519 AAAA k2", fingerprint="f")
    body = {
        "rebuild": {
            "imageRef": str(other.id),
            "name": "rebuilt",
            "metadata": {"m": "1"},
            "description": "new",
            "key_name": "k2",
            "user_data": "aGVsbG8=",
        }
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = action(member, server, body, version="2.57")
    assert response.status_code == 202, response.content
    shown = response.json()["server"]
    assert (shown["name"], shown["image"]["id"], shown["key_name"], shown["user_data"]) == (
        "rebuilt",
        str(other.id),
        "k2",
        "aGVsbG8=",
    )
    server.refresh_from_db()
    assert (server.task_state, server.image_ref, server.key_data) == (
        TaskState.REBUILDING,
        other.id,
        "ssh-ed25519 AAAA k2",
    )
    assert server.metadata == {"m": "1"} and server.description == "new"
    ((name, host, request),) = sent
    assert (name, host, request.power_on) == ("rebuild_instance", "hv1", True)
    assert request.build.image.id == str(other.id) and "/internal/images/" in request.build.image.url
    assert request.build.user_data == "aGVsbG8=" and request.build.nics[0].mac == server.mac_address


def test_rebuild_of_a_stopped_server_keeps_it_off(member, server, image, sent, django_capture_on_commit_callbacks):
    server.vm_state = VmState.STOPPED
    server.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert action(member, server, {"rebuild": {"imageRef": str(image.id)}}).status_code == 202
    assert sent[0][2].power_on is False


@pytest.mark.parametrize(
    ("args", "version"),
    [
        ({"imageRef": "00000000-0000-0000-0000-000000000000"}, "2.47"),
        ({}, "2.47"),
        ({"imageRef": "IMAGE", "key_name": "k"}, "2.53"),  # key_name only from 2.54
        ({"imageRef": "IMAGE", "key_name": "missing"}, "2.54"),
        ({"imageRef": "IMAGE", "user_data": "aGk="}, "2.56"),  # user_data only from 2.57
        ({"imageRef": "IMAGE", "user_data": "not base64!"}, "2.57"),
        ({"imageRef": "IMAGE", "description": "d"}, "2.18"),
        ({"imageRef": "IMAGE", "personality": [{"path": "/x", "contents": "aGk="}]}, "2.57"),  # until 2.56
        ({"imageRef": "IMAGE", "personality": [{"path": "/x", "contents": "not base64"}]}, "2.47"),
        ({"imageRef": "IMAGE", "name": ""}, "2.47"),
    ],
)
def test_bad_rebuild_requests_are_400(member, server, image, server_microversions, args, version):
    args = {k: (str(image.id) if val == "IMAGE" else val) for k, val in args.items()}
    response = action(member, server, {"rebuild": args}, version=version)
    assert response.status_code == 400, response.content
    server.refresh_from_db()
    assert server.task_state is None


def test_rebuild_with_an_image_too_big_for_the_flavor_is_400(member, server):
    from tests.factories import ImageFactory

    big = ImageFactory(owner=member.project, min_disk=20)
    response = action(member, server, {"rebuild": {"imageRef": str(big.id)}})
    assert response.status_code == 400
    assert "disk is too small" in response.json()["badRequest"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"os-getConsoleOutput": {"length": "ten"}},
        {"os-getConsoleOutput": {"length": -2}},
        {"os-getConsoleOutput": {"length": True}},
        {"os-getConsoleOutput": "x"},
    ],
)
def test_bad_console_output_requests_are_400(member, server, body):
    assert action(member, server, body).status_code == 400


def test_console_output_of_a_server_whose_host_is_down_is_503(member, server):
    server.host.last_heartbeat = None
    server.host.save()
    response = action(member, server, {"os-getConsoleOutput": {"length": 10}})
    assert response.status_code == 503
    assert "serviceUnavailable" in response.json()


def test_readers_and_strangers_cannot_act(reader, stranger, server):
    assert action(reader, server, {"pause": None}).status_code == 403
    assert action(reader, server, {"os-getConsoleOutput": {}}).status_code == 403
    assert action(stranger, server, {"pause": None}).status_code == 404


def test_a_server_booted_from_a_volume_is_not_snapshotted_or_rebuilt_here(member, server, image):
    server.image_ref = None
    server.image = None
    server.save()
    for body in ({"createImage": {"name": "snap"}}, {"rebuild": {"imageRef": str(image.id)}}):
        response = action(member, server, body)
        assert response.status_code == 400, response.content
        assert "volume" in response.json()["badRequest"]["message"]
    server.refresh_from_db()
    assert server.task_state is None
    assert not Image.objects.filter(properties__instance_uuid=str(server.uuid)).exists()
