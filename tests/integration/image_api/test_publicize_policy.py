"""Only admins make images public (Glance's ``publicize_image``): a public image is in every project's default
list, so a member who could publish one could squat on the names everyone looks for."""

import pytest

from portal.models import Image

from .conftest import create_image

pytestmark = pytest.mark.integration

PATCH = "application/openstack-images-v2.1-json-patch"


def _set_visibility(client, image_id, visibility):
    return client.generic(
        "PATCH",
        f"/image/v2/images/{image_id}",
        f'[{{"op": "replace", "path": "/visibility", "value": "{visibility}"}}]',
        content_type=PATCH,
    )


def _is_policy_refusal(response) -> bool:
    body = response.json()
    return (
        response.status_code == 403
        and set(body) == {"forbidden"}
        and body["forbidden"]["code"] == 403
        and "publicize_image" in body["forbidden"]["message"]
    )


def test_a_member_cannot_create_a_public_image(member, stranger):
    response = member.client.post(
        "/image/v2/images",
        {"name": "ubuntu-24.04", "disk_format": "qcow2", "container_format": "bare", "visibility": "public"},
        format="json",
    )

    assert _is_policy_refusal(response), response.content
    assert not Image.objects.filter(name="ubuntu-24.04").exists()
    assert stranger.client.get("/image/v2/images").json()["images"] == []


def test_a_member_cannot_make_an_image_public(member, stranger):
    image = create_image(member.client, name="ubuntu-24.04", visibility="private")

    response = _set_visibility(member.client, image["id"], "public")

    assert _is_policy_refusal(response), response.content
    assert Image.objects.get(pk=image["id"]).visibility == "private"
    assert stranger.client.get("/image/v2/images").json()["images"] == []


def test_a_refused_publication_changes_nothing_else_of_the_same_patch(member):
    image = create_image(member.client, name="before", visibility="private")

    response = member.client.generic(
        "PATCH",
        f"/image/v2/images/{image['id']}",
        '[{"op": "replace", "path": "/name", "value": "after"},'
        ' {"op": "replace", "path": "/visibility", "value": "public"}]',
        content_type=PATCH,
    )

    assert response.status_code == 403
    assert Image.objects.values_list("name", "visibility").get(pk=image["id"]) == ("before", "private")


@pytest.mark.parametrize("visibility", ["community", "shared", "private"])
def test_members_keep_the_visibilities_glance_allows_them(member, visibility):
    created = create_image(member.client, visibility=visibility)
    assert created["visibility"] == visibility

    other = "community" if visibility != "community" else "shared"
    response = _set_visibility(member.client, created["id"], other)
    assert response.status_code == 200, response.content
    assert response.json()["visibility"] == other


def test_admins_publish_on_create_and_on_update(admin, member, stranger):
    created = create_image(admin.client, name="official", visibility="public")
    assert created["visibility"] == "public"
    members_own = create_image(member.client, name="vetted", visibility="private")

    response = _set_visibility(admin.client, members_own["id"], "public")

    assert response.status_code == 200, response.content
    listed = {i["name"] for i in stranger.client.get("/image/v2/images").json()["images"]}
    assert listed == {"official", "vetted"}
