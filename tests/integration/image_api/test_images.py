import json
import re
import uuid

import pytest

from portal.models import Image
from tests.factories import ImageFactory

from .conftest import create_image, qcow2_bytes, upload

pytestmark = pytest.mark.integration

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BASE_KEYS = {
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "size", "virtual_size", "min_disk", "min_ram", "disk_format", "container_format",
    "owner", "created_at", "updated_at", "tags", "self", "file", "schema",
}  # fmt: skip
PATCH = "application/openstack-images-v2.1-json-patch"


def patch(client, image_id, operations, content_type=PATCH):
    return client.generic(
        "PATCH", f"/image/v2/images/{image_id}", data=json.dumps(operations),
        content_type=content_type, HTTP_ACCEPT="",
    )  # fmt: skip


# --- create --------------------------------------------------------------------------------------------


def test_create_returns_the_glance_image_object(member):
    response = member.client.post(
        "/image/v2/images",
        {
            "name": "demo",
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "community",
            "min_disk": 1,
            "min_ram": 128,
            "tags": ["a", "b", "a"],
            "hw_disk_bus": "virtio",
            "owner_specified.openstack.md5": "",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= BASE_KEYS
    assert body["status"] == "queued"
    assert body["visibility"] == "community"
    assert body["owner"] == member.project.pk
    assert body["min_disk"] == 1 and body["min_ram"] == 128
    assert body["tags"] == ["a", "b"]
    assert body["hw_disk_bus"] == "virtio"
    assert body["owner_specified.openstack.md5"] == ""
    assert body["size"] is None and body["checksum"] is None and body["os_hidden"] is False
    assert body["self"] == f"/v2/images/{body['id']}"
    assert body["file"] == f"/v2/images/{body['id']}/file"
    assert body["schema"] == "/v2/schemas/image"
    assert ISO_Z.match(body["created_at"]) and ISO_Z.match(body["updated_at"])
    assert response["Location"] == f"http://cloud.test:8000/image/v2/images/{body['id']}"
    image = Image.objects.get(pk=body["id"])
    assert image.properties == {"hw_disk_bus": "virtio", "owner_specified.openstack.md5": ""}


def test_create_defaults_to_shared_visibility(member):
    body = member.client.post("/image/v2/images", {"name": "x"}, format="json").json()

    assert body["visibility"] == "shared"
    assert body["disk_format"] is None and body["protected"] is False


def test_create_with_id_and_duplicate_id_conflicts(member):
    image_id = str(uuid.uuid4())
    assert create_image(member.client, id=image_id)["id"] == image_id

    response = member.client.post("/image/v2/images", {"id": image_id}, format="json")

    assert response.status_code == 409
    assert response.json()["conflictingRequest"]["code"] == 409


@pytest.mark.parametrize(
    "body",
    [
        {"min_disk": -1},
        {"min_ram": "128"},
        {"min_ram": 1.5},
        {"min_ram": True},
        {"protected": "yes"},
        {"disk_format": "exe"},
        {"container_format": 3},
        {"visibility": "everyone"},
        {"name": 5},
        {"name": "x" * 256},
        {"tags": "x"},
        {"tags": [1]},
        {"id": "not-a-uuid"},
        {"id": 12},
        {"hw_disk_bus": 5},
        {"hw_disk_bus": None},
        {"os_hidden": True},
        {"owner": "no-such-project"},
    ],
)
def test_create_rejects_bad_values_with_400(admin, body):
    response = admin.client.post("/image/v2/images", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["badRequest"]["code"] == 400


@pytest.mark.parametrize(
    "key",
    ["status", "checksum", "size", "virtual_size", "self", "file", "schema", "created_at", "os_hash_value",
     "location", "deleted", "os_glance_importing_to_stores"],
)  # fmt: skip
def test_create_refuses_read_only_and_reserved_attributes_with_403(member, key):
    response = member.client.post("/image/v2/images", {"name": "x", key: "v"}, format="json")

    assert response.status_code == 403, response.content
    assert not Image.objects.exists()


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ("", "application/json", 400),
        ("name=x", "application/x-www-form-urlencoded", 415),
    ],
)
def test_create_refuses_malformed_bodies(member, data, content_type, status):
    response = member.client.generic("POST", "/image/v2/images", data=data, content_type=content_type)

    assert response.status_code == status, response.content


def test_member_may_not_create_images_for_another_project(member, stranger):
    response = member.client.post("/image/v2/images", {"owner": stranger.project.pk}, format="json")

    assert response.status_code == 403


def test_admin_may_create_images_for_another_project(admin, member):
    body = create_image(admin.client, owner=member.project.pk)

    assert body["owner"] == member.project.pk


# --- show ----------------------------------------------------------------------------------------------


def test_show(member):
    created = create_image(member.client, hw_qemu_guest_agent="yes")

    response = member.client.get(f"/image/v2/images/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert response["X-Openstack-Request-Id"].startswith("req-")


@pytest.mark.parametrize("ref", ["demo", str(uuid.uuid4()), "1"])
def test_show_by_name_or_unknown_id_is_404(member, ref):
    create_image(member.client, name="demo")

    response = member.client.get(f"/image/v2/images/{ref}")

    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404


# --- list ----------------------------------------------------------------------------------------------


def test_list_shape_and_name_lookup(member):
    wanted = create_image(member.client, name="demo")
    create_image(member.client, name="other")

    response = member.client.get("/image/v2/images", {"name": "demo"})

    assert response.status_code == 200
    body = response.json()
    assert body["schema"] == "/v2/schemas/images"
    assert body["first"] == "/v2/images?name=demo"
    assert "next" not in body
    assert body["images"] == [wanted]


def test_list_filters(member, admin):
    queued = create_image(
        member.client, name="q", visibility="private", tags=["x", "y"], os_distro="cirros", **{"a__b": "c"}
    )
    active = ImageFactory(owner=member.project, name="a", visibility=Image.Visibility.PUBLIC, size=10)
    foreign = ImageFactory(name="f", visibility=Image.Visibility.PUBLIC, size=5000)

    def ids(**params):
        response = member.client.get("/image/v2/images", params)
        assert response.status_code == 200, response.content
        return {image["id"] for image in response.json()["images"]}

    assert ids() == {queued["id"], str(active.id), str(foreign.id)}
    assert ids(status="queued") == {queued["id"]}
    assert ids(status="active") == {str(active.id), str(foreign.id)}
    assert ids(visibility="private") == {queued["id"]}
    assert ids(visibility="public") == {str(active.id), str(foreign.id)}
    assert ids(owner=member.project.pk) == {queued["id"], str(active.id)}
    assert ids(tag="x") == {queued["id"]}
    assert ids(tag=["x", "z"]) == set()
    assert ids(os_distro="cirros") == {queued["id"]}
    assert ids(**{"a__b": "c", "os_distro": "cirros"}) == {queued["id"]}
    assert ids(os_distro="fedora") == set()
    assert ids(name='in:q,"a"') == {queued["id"], str(active.id)}
    assert ids(size_min=100) == {str(foreign.id)}
    assert ids(size_max=100) == {str(active.id)}
    assert ids(os_hidden="true") == set()
    assert ids(os_hidden="false") == ids()
    assert ids(created_at="gte:2000-01-01T00:00:00Z") == ids()
    assert ids(created_at="lt:2000-01-01T00:00:00Z") == set()


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "-1"},
        {"limit": "x"},
        {"marker": "nope"},
        {"marker": str(uuid.uuid4())},
        {"sort_key": "owner"},
        {"sort_dir": "up"},
        {"sort": "name:sideways"},
        {"sort": "name", "sort_key": "name"},
        {"visibility": "everyone"},
        {"protected": "maybe"},
        {"size_min": "-5"},
        {"id": "nope"},
        {"created_at": "gt:yesterday"},
        {"member_status": "friends"},
        {"changes-since": "2020-01-01"},
    ],
)
def test_list_rejects_bad_queries_with_400(member, params):
    response = member.client.get("/image/v2/images", params)

    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    ("sort_params", "expected"),
    [
        # A missing name sorts as the empty name: first going up, last going down.
        ({"sort_key": "name", "sort_dir": "asc"}, [None, "a", "a", "b", "c", "d"]),
        ({"sort": "name:desc"}, ["d", "c", "b", "a", "a", None]),
        ({"sort_key": "size", "sort_dir": "asc"}, None),
    ],
)
def test_pagination_follows_next_links_through_every_image_once(member, sort_params, expected):
    names = ["c", "a", None, "d", "a", "b"]
    for position, name in enumerate(names):
        ImageFactory(owner=member.project, name=name, visibility=Image.Visibility.PRIVATE, size=position % 3)

    seen, url, pages = [], "/image/v2/images", 0
    params = {"limit": 2, **sort_params}
    while url:
        response = member.client.get(url, params)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += body["images"]
        pages += 1
        url, params = ("/image" + body["next"], None) if "next" in body else (None, None)

    assert pages == 3
    assert len({image["id"] for image in seen}) == 6
    if expected is not None:
        assert [image["name"] for image in seen] == expected
    else:
        sizes = [image["size"] for image in seen]
        assert sizes == sorted(sizes)


def test_next_link_keeps_the_filters(member):
    for _ in range(3):
        create_image(member.client, name="same")

    body = member.client.get("/image/v2/images", {"name": "same", "limit": 2}).json()

    assert "name=same" in body["next"] and "limit=2" in body["next"] and "marker=" in body["next"]
    assert body["first"] == "/v2/images?name=same&limit=2"


def test_default_limit_and_maximum(member):
    for _ in range(30):
        ImageFactory(owner=member.project)

    assert len(member.client.get("/image/v2/images").json()["images"]) == 25
    assert len(member.client.get("/image/v2/images", {"limit": 5000}).json()["images"]) == 30


def test_list_query_count_does_not_grow_with_images(member, django_assert_max_num_queries):
    for _ in range(3):
        ImageFactory(owner=member.project, tags=["t"], properties={"p": "v"})
    member.client.get("/image/v2/images")  # warm up the user and session caches

    with django_assert_max_num_queries(4) as few:
        member.client.get("/image/v2/images")
    for _ in range(20):
        ImageFactory(owner=member.project, tags=["t"], properties={"p": "v"})
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = member.client.get("/image/v2/images", {"limit": 50})
    assert len(response.json()["images"]) == 23


# --- update --------------------------------------------------------------------------------------------


def test_patch_core_attributes_and_properties(member):
    image = create_image(member.client, old="1", gone="x")

    response = patch(
        member.client,
        image["id"],
        [
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "replace", "path": "/visibility", "value": "community"},
            {"op": "add", "path": "/min_ram", "value": 256},
            {"op": "replace", "path": "/protected", "value": True},
            {"op": "replace", "path": "/tags", "value": ["fedora", "beefy"]},
            {"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
            {"op": "replace", "path": "/old", "value": "2"},
            {"op": "remove", "path": "/gone"},
            {"op": "add", "path": "/a~1b", "value": "slash"},
        ],
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "renamed" and body["visibility"] == "community" and body["min_ram"] == 256
    assert body["protected"] is True and body["tags"] == ["fedora", "beefy"]
    assert body["hw_disk_bus"] == "scsi" and body["old"] == "2" and "gone" not in body
    assert body["a/b"] == "slash"
    assert Image.objects.get(pk=image["id"]).properties == {"old": "2", "hw_disk_bus": "scsi", "a/b": "slash"}


@pytest.mark.parametrize(
    ("operations", "status"),
    [
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "replace", "path": "/checksum", "value": "0"}], 403),
        ([{"op": "add", "path": "/os_glance_x", "value": "1"}], 403),
        ([{"op": "remove", "path": "/name"}], 403),
        ([{"op": "replace", "path": "/owner", "value": "someone"}], 403),
        ([{"op": "replace", "path": "/missing", "value": "1"}], 409),
        ([{"op": "remove", "path": "/missing"}], 409),
        ([{"op": "replace", "path": "/min_disk", "value": -1}], 400),
        ([{"op": "replace", "path": "/min_disk", "value": "1"}], 400),
        ([{"op": "replace", "path": "/visibility", "value": "everyone"}], 400),
        ([{"op": "add", "path": "/prop", "value": 1}], 400),
        ([{"op": "move", "path": "/name", "value": "x"}], 400),
        ([{"op": "replace", "path": "/name"}], 400),
        ([{"op": "add", "path": "/tags/1", "value": "x"}], 400),
        ([{"op": "add", "path": "name", "value": "x"}], 400),
        ([{"op": "add", "path": "/", "value": "x"}], 400),
        ([{"op": "add", "path": "/a~2", "value": "x"}], 400),
        (["replace"], 400),
        ({"op": "replace", "path": "/name", "value": "x"}, 400),
    ],
)
def test_patch_refusals(member, operations, status):
    image = create_image(member.client, name="before")

    response = patch(member.client, image["id"], operations)

    assert response.status_code == status, response.content
    assert Image.objects.get(pk=image["id"]).name == "before"


def test_patch_is_all_or_nothing(member):
    image = create_image(member.client, name="before")

    response = patch(
        member.client,
        image["id"],
        [
            {"op": "replace", "path": "/name", "value": "after"},
            {"op": "replace", "path": "/size", "value": 1},
        ],
    )

    assert response.status_code == 403
    assert Image.objects.get(pk=image["id"]).name == "before"


def test_patch_needs_the_json_patch_media_type(member):
    image = create_image(member.client)

    response = patch(member.client, image["id"], [], content_type="application/json")

    assert response.status_code == 415
    assert response["Accept-Patch"] == PATCH


def test_patch_malformed_json_is_400(member):
    image = create_image(member.client)

    response = member.client.generic("PATCH", f"/image/v2/images/{image['id']}", "[{", content_type=PATCH)

    assert response.status_code == 400


def test_formats_are_fixed_once_data_is_uploaded(member, active_image):
    response = patch(member.client, active_image["id"], [{"op": "replace", "path": "/disk_format", "value": "raw"}])

    assert response.status_code == 403
    ok = patch(member.client, active_image["id"], [{"op": "replace", "path": "/disk_format", "value": "qcow2"}])
    assert ok.status_code == 200


def test_admin_may_change_the_owner(admin, member):
    image = create_image(member.client)

    response = patch(admin.client, image["id"], [{"op": "replace", "path": "/owner", "value": admin.project.pk}])

    assert response.status_code == 200
    assert response.json()["owner"] == admin.project.pk


def test_tags_subresource(member):
    image = create_image(member.client, tags=["a"])

    assert member.client.put(f"/image/v2/images/{image['id']}/tags/b").status_code == 204
    assert member.client.put(f"/image/v2/images/{image['id']}/tags/b").status_code == 204
    assert member.client.get(f"/image/v2/images/{image['id']}").json()["tags"] == ["a", "b"]
    assert member.client.delete(f"/image/v2/images/{image['id']}/tags/a").status_code == 204
    assert member.client.delete(f"/image/v2/images/{image['id']}/tags/a").status_code == 404
    assert member.client.get(f"/image/v2/images/{image['id']}").json()["tags"] == ["b"]


# --- delete --------------------------------------------------------------------------------------------


def test_delete_removes_the_image_and_its_file(member, active_image, image_dir, django_capture_on_commit_callbacks):
    assert (image_dir / active_image["id"]).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = member.client.delete(f"/image/v2/images/{active_image['id']}")

    assert response.status_code == 204
    assert not (image_dir / active_image["id"]).exists()
    assert member.client.get(f"/image/v2/images/{active_image['id']}").status_code == 404
    assert member.client.get("/image/v2/images").json()["images"] == []
    assert member.client.delete(f"/image/v2/images/{active_image['id']}").status_code == 404
    # A deleted image's id is never handed out again.
    assert member.client.post("/image/v2/images", {"id": active_image["id"]}, format="json").status_code == 409


def test_protected_image_cannot_be_deleted(member):
    image = create_image(member.client, protected=True)

    response = member.client.delete(f"/image/v2/images/{image['id']}")

    assert response.status_code == 403
    assert Image.objects.get(pk=image["id"]).status == Image.Status.QUEUED
    patch(member.client, image["id"], [{"op": "replace", "path": "/protected", "value": False}])
    assert member.client.delete(f"/image/v2/images/{image['id']}").status_code == 204


def test_create_upload_show_list_cycle_as_the_cli_does_it(member):
    """The requests ``openstack image create --file`` sends, then ``image list`` and ``image save``."""
    data = qcow2_bytes(64 * 1024**2, b"\x00" * 4096)
    created = member.client.post(
        "/image/v2/images",
        {
            "name": "demo",
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "private",
            "owner_specified.openstack.md5": "",
            "owner_specified.openstack.sha256": "",
            "owner_specified.openstack.object": "images/demo",
        },
        format="json",
    ).json()
    uploaded = upload(member.client, created["id"], data, HTTP_X_OPENSTACK_IMAGE_SIZE=str(len(data)))
    assert uploaded.status_code == 204, uploaded.content

    listed = member.client.get("/image/v2/images").json()["images"]
    assert [(i["name"], i["status"]) for i in listed] == [("demo", "active")]
    saved = member.client.get(f"/image/v2/images/{created['id']}/file")
    assert b"".join(saved.streaming_content) == data
