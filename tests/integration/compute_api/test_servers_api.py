"""Server requests through the API, without hosts: validation, scoping, states, and what is queued."""

import pytest

from portal.models import Instance, InstanceAction
from portal.states import TaskState, VmState
from tests.factories import FlavorFactory, ImageFactory

pytestmark = pytest.mark.integration

V = {"HTTP_OPENSTACK_API_VERSION": "compute 2.47"}


@pytest.fixture
def flavor(db):
    return FlavorFactory(flavorid="1", name="m1.tiny")


@pytest.fixture
def image(member):
    return ImageFactory(owner=member.project)


def boot(caller, flavor, image, **extra):
    body = {"server": {"name": "vm1", "imageRef": str(image.id), "flavorRef": flavor.flavorid, "networks": "auto"}}
    body["server"].update(extra)
    return caller.client.post("/compute/v2.1/servers", body, format="json", **V)


def test_create_answers_202_and_queues_scheduling(member, flavor, image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = boot(member, flavor, image)
    assert response.status_code == 202, response.content
    server = response.json()["server"]
    assert set(server) == {"id", "links", "OS-DCF:diskConfig", "security_groups"}
    instance = Instance.objects.get(uuid=server["id"])
    assert (instance.vm_state, instance.task_state) == (VmState.BUILDING, TaskState.SCHEDULING)
    assert instance.task_deadline is not None
    assert instance.project == member.project
    assert len(callbacks) == 1  # the conductor message is sent only once the row is committed
    assert InstanceAction.objects.get(instance=instance).action == "create"


def test_create_as_the_cli_sends_it(member, flavor, image):
    bdm = [
        {
            "uuid": str(image.id),
            "boot_index": 0,
            "source_type": "image",
            "destination_type": "local",
            "delete_on_termination": True,
        }
    ]
    response = boot(member, flavor, image, block_device_mapping_v2=bdm, min_count=1, max_count=1)
    assert response.status_code == 202, response.content


def test_image_only_in_block_device_mapping(member, flavor, image):
    body = {
        "server": {
            "name": "vm",
            "flavorRef": flavor.flavorid,
            "networks": "none",
            "imageRef": "",
            "block_device_mapping_v2": [
                {"uuid": str(image.id), "boot_index": 0, "source_type": "image", "destination_type": "local"}
            ],
        }
    }
    response = member.client.post("/compute/v2.1/servers", body, format="json", **V)
    assert response.status_code == 202, response.content
    assert str(Instance.objects.get(uuid=response.json()["server"]["id"]).image_ref) == str(image.id)


def test_multi_create_makes_each_instance(member, flavor, image):
    response = boot(member, flavor, image, min_count=3, max_count=3, return_reservation_id=True)
    assert response.status_code == 202
    reservation = response.json()["reservation_id"]
    batch = Instance.objects.filter(reservation_id=reservation).order_by("launch_index")
    assert [(i.name, i.launch_index) for i in batch] == [("vm1-1", 0), ("vm1-2", 1), ("vm1-3", 2)]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"flavorRef": "nope"}, "Flavor"),
        ({"imageRef": "00000000-0000-0000-0000-000000000000"}, "Image"),
        ({"networks": [{"uuid": "x"}]}, "networks"),
        ({"networks": 5}, "networks"),
        ({"name": ""}, "name"),
        ({"name": " padded "}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"user_data": "not base64!"}, "user_data"),
        ({"min_count": 0}, "min_count"),
        ({"key_name": "missing"}, "key_name"),
        ({"availability_zone": "elsewhere"}, "availability zone"),
        ({"metadata": {"k": ["not", "a", "string"]}}, "metadata"),
        (
            {"block_device_mapping_v2": [{"source_type": "volume", "destination_type": "volume", "uuid": "v"}]},
            "volumes",
        ),
    ],
)
def test_bad_create_requests_are_400(member, flavor, image, change, fragment):
    response = boot(member, flavor, image, **change)
    assert response.status_code == 400, response.content
    assert fragment in response.json()["badRequest"]["message"]
    assert not Instance.objects.exists()


def test_networks_required_since_2_37(member, flavor, image):
    body = {"server": {"name": "vm", "imageRef": str(image.id), "flavorRef": "1"}}
    assert member.client.post("/compute/v2.1/servers", body, format="json", **V).status_code == 400
    old = {"HTTP_OPENSTACK_API_VERSION": "compute 2.36"}
    assert member.client.post("/compute/v2.1/servers", body, format="json", **old).status_code == 202


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"server": "x"}', b"null"])
def test_malformed_bodies_are_400(member, payload):
    response = member.client.post("/compute/v2.1/servers", payload, content_type="application/json", **V)
    assert response.status_code == 400
    assert "badRequest" in response.json()


def test_wrong_content_type_is_415(member):
    response = member.client.post("/compute/v2.1/servers", b"name=x", content_type="text/plain", **V)
    assert response.status_code == 415
    assert response.json()["badMediaType"]["code"] == 415


def test_reader_cannot_create_or_delete(reader, member, flavor, image):
    assert boot(reader, flavor, image).status_code == 403
    server_id = boot(member, flavor, image).json()["server"]["id"]
    assert reader.client.get(f"/compute/v2.1/servers/{server_id}", **V).status_code == 200
    assert reader.client.delete(f"/compute/v2.1/servers/{server_id}", **V).status_code == 403


def test_other_projects_cannot_see_or_touch_a_server(member, stranger, admin, flavor, image):
    server_id = boot(member, flavor, image).json()["server"]["id"]
    assert stranger.client.get(f"/compute/v2.1/servers/{server_id}", **V).status_code == 404
    assert stranger.client.delete(f"/compute/v2.1/servers/{server_id}", **V).status_code == 404
    action = {"os-stop": None}
    assert stranger.client.post(f"/compute/v2.1/servers/{server_id}/action", action, format="json").status_code == 404
    assert stranger.client.get("/compute/v2.1/servers", **V).json()["servers"] == []
    # Admins can look at any server, and list every project's with all_tenants.
    assert admin.client.get(f"/compute/v2.1/servers/{server_id}", **V).status_code == 200
    assert admin.client.get("/compute/v2.1/servers", **V).json()["servers"] == []
    listed = admin.client.get("/compute/v2.1/servers?all_tenants=1", **V).json()["servers"]
    assert [s["id"] for s in listed] == [server_id]


def test_show_shape_at_2_47(member, flavor, image):
    server_id = boot(member, flavor, image, description="hello").json()["server"]["id"]
    server = member.client.get(f"/compute/v2.1/servers/{server_id}", **V).json()["server"]
    assert server["status"] == "BUILD"
    assert server["OS-EXT-STS:vm_state"] == "building"
    assert server["OS-EXT-STS:task_state"] == "scheduling"
    assert server["OS-EXT-STS:power_state"] == 0
    assert server["flavor"]["original_name"] == "m1.tiny"
    assert server["flavor"]["ram"] == 512
    assert server["image"]["id"] == str(image.id)
    assert server["hostId"] == ""
    assert server["addresses"] == {}
    assert server["description"] == "hello"
    assert server["tags"] == []
    assert server["locked"] is False
    assert server["tenant_id"] == member.project.id
    assert "OS-EXT-SRV-ATTR:host" not in server  # admins only
    assert "fault" not in server


def test_show_shape_at_2_1(member, flavor, image):
    server_id = boot(member, flavor, image).json()["server"]["id"]
    server = member.client.get(f"/compute/v2.1/servers/{server_id}").json()["server"]
    assert set(server["flavor"]) == {"id", "links"}
    assert "description" not in server and "tags" not in server and "locked" not in server


def test_list_and_detail(member, flavor, image):
    ids = [boot(member, flavor, image, name=f"vm{n}").json()["server"]["id"] for n in range(3)]
    listed = member.client.get("/compute/v2.1/servers", **V).json()["servers"]
    assert sorted(s["id"] for s in listed) == sorted(ids)
    assert set(listed[0]) == {"id", "name", "links"}
    detail = member.client.get("/compute/v2.1/servers/detail?deleted=False", **V).json()["servers"]
    assert {s["status"] for s in detail} == {"BUILD"}
    named = member.client.get("/compute/v2.1/servers/detail?name=^vm1$", **V).json()["servers"]
    assert [s["name"] for s in named] == ["vm1"]
    assert member.client.get("/compute/v2.1/servers?status=BOGUS", **V).status_code == 400


def test_delete_before_scheduling_is_immediate(member, flavor, image):
    server_id = boot(member, flavor, image).json()["server"]["id"]
    assert member.client.delete(f"/compute/v2.1/servers/{server_id}", **V).status_code == 204
    assert Instance.objects.get(uuid=server_id).vm_state == VmState.DELETED
    assert member.client.get(f"/compute/v2.1/servers/{server_id}", **V).status_code == 404
    # Deleting again finds nothing to delete.
    assert member.client.delete(f"/compute/v2.1/servers/{server_id}", **V).status_code == 404


@pytest.mark.parametrize(
    "action",
    [{"os-start": None}, {"os-stop": None}, {"reboot": {"type": "SOFT"}}, {"reboot": {"type": "HARD"}}],
)
def test_power_actions_while_building_are_409(member, flavor, image, action):
    server_id = boot(member, flavor, image).json()["server"]["id"]
    response = member.client.post(f"/compute/v2.1/servers/{server_id}/action", action, format="json", **V)
    assert response.status_code == 409
    assert "conflictingRequest" in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"os-explode": None},
        {},
        {"os-start": None, "os-stop": None},
        {"reboot": {"type": "GENTLE"}},
        {"reboot": None},
    ],
)
def test_bad_actions_are_400(member, flavor, image, body):
    server_id = boot(member, flavor, image).json()["server"]["id"]
    response = member.client.post(f"/compute/v2.1/servers/{server_id}/action", body, format="json", **V)
    assert response.status_code == 400, response.content


def test_remote_console_needs_a_running_server(member, flavor, image):
    server_id = boot(member, flavor, image).json()["server"]["id"]
    body = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    url = f"/compute/v2.1/servers/{server_id}/remote-consoles"
    assert member.client.post(url, body, format="json", **V).status_code == 409
    bad = {"remote_console": {"protocol": "spice", "type": "spice-html5"}}
    assert member.client.post(url, bad, format="json", **V).status_code == 400
    # remote-consoles exists from 2.6 on
    old = {"HTTP_OPENSTACK_API_VERSION": "compute 2.5"}
    assert member.client.post(url, body, format="json", **old).status_code == 404


@pytest.mark.parametrize("server_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "x" * 300])
def test_unknown_servers_are_404(member, server_id):
    assert member.client.get(f"/compute/v2.1/servers/{server_id}", **V).status_code == 404
