import pytest

from .conftest import create_image, qcow2_bytes, upload

pytestmark = pytest.mark.integration

PATCH = "application/openstack-images-v2.1-json-patch"


def _rename(client, image_id):
    return client.generic(
        "PATCH",
        f"/image/v2/images/{image_id}",
        '[{"op": "replace", "path": "/name", "value": "mine"}]',
        content_type=PATCH,
    )


@pytest.mark.parametrize("visibility", ["private", "shared"])
def test_other_projects_private_images_do_not_exist_for_a_stranger(member, stranger, visibility):
    image = create_image(member.client, visibility=visibility)
    url = f"/image/v2/images/{image['id']}"

    assert stranger.client.get(url).status_code == 404
    assert stranger.client.get(f"{url}/file").status_code == 404
    assert _rename(stranger.client, image["id"]).status_code == 404
    assert stranger.client.delete(url).status_code == 404
    assert upload(stranger.client, image["id"], qcow2_bytes()).status_code == 404
    assert stranger.client.get("/image/v2/images", {"visibility": "all"}).json()["images"] == []
    assert stranger.client.get("/image/v2/images", {"marker": image["id"]}).status_code == 400


def test_public_images_are_readable_but_not_writable_by_others(member, stranger, admin, active_image):
    _rename(member.client, active_image["id"])
    published = admin.client.generic(
        "PATCH",
        f"/image/v2/images/{active_image['id']}",
        '[{"op": "replace", "path": "/visibility", "value": "public"}]',
        content_type=PATCH,
    )
    assert published.status_code == 200, published.content
    url = f"/image/v2/images/{active_image['id']}"

    assert stranger.client.get(url).status_code == 200
    assert [i["id"] for i in stranger.client.get("/image/v2/images").json()["images"]] == [active_image["id"]]
    assert b"".join(stranger.client.get(f"{url}/file").streaming_content) == active_image["data"]
    assert _rename(stranger.client, active_image["id"]).status_code == 403
    assert stranger.client.delete(url).status_code == 403
    assert stranger.client.put(f"{url}/tags/x").status_code == 403


def test_community_images_are_found_by_asking(member, stranger):
    image = create_image(member.client, visibility="community")

    assert stranger.client.get(f"/image/v2/images/{image['id']}").status_code == 200
    assert stranger.client.get("/image/v2/images").json()["images"] == []
    listed = stranger.client.get("/image/v2/images", {"visibility": "community"}).json()["images"]
    assert [i["id"] for i in listed] == [image["id"]]
    # The owner sees its community images in its default list.
    assert [i["id"] for i in member.client.get("/image/v2/images").json()["images"]] == [image["id"]]


def test_readers_read_but_never_write(member, reader):
    image = create_image(member.client)
    url = f"/image/v2/images/{image['id']}"

    assert reader.client.get(url).status_code == 200
    assert [i["id"] for i in reader.client.get("/image/v2/images").json()["images"]] == [image["id"]]
    assert reader.client.post("/image/v2/images", {"name": "x"}, format="json").status_code == 403
    assert _rename(reader.client, image["id"]).status_code == 403
    assert reader.client.delete(url).status_code == 403
    assert upload(reader.client, image["id"], qcow2_bytes()).status_code == 403
    assert reader.client.put(f"{url}/tags/x").status_code == 403
    assert member.client.get(url).json()["status"] == "queued"


def test_admins_see_and_manage_everything(member, stranger, admin):
    private = create_image(member.client, visibility="private")
    other = create_image(stranger.client, visibility="shared")

    listed = {i["id"] for i in admin.client.get("/image/v2/images").json()["images"]}
    assert listed == {private["id"], other["id"]}
    assert admin.client.get(f"/image/v2/images/{private['id']}").status_code == 200
    assert _rename(admin.client, private["id"]).status_code == 200
    assert upload(admin.client, private["id"], qcow2_bytes()).status_code == 204
    assert admin.client.delete(f"/image/v2/images/{other['id']}").status_code == 204
