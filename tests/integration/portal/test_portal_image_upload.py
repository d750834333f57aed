"""The portal's image upload under attack: publishing as a member, and (below) going over the quotas."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import Image

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def image_dir(settings, tmp_path):
    directory = tmp_path / "images"
    directory.mkdir()
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": directory}
    return directory


def post_upload(user, data: bytes = b"\0" * 4096, **fields):
    form = {
        "name": "disk",
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "private",
        "min_disk": "0",
        "min_ram": "0",
        "file": SimpleUploadedFile("disk.raw", data, content_type="application/octet-stream"),
    }
    form.update(fields)
    return user.client.post("/images/upload/", form)


def test_the_portal_offers_public_to_admins_only(portal_member, portal_admin):
    assert 'value="public"' not in portal_member.client.get("/images/upload/").content.decode()
    assert 'value="public"' in portal_admin.client.get("/images/upload/").content.decode()


def test_a_member_posting_public_is_refused(portal_member, image_dir):
    response = post_upload(portal_member, name="ubuntu-24.04", visibility="public")

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()  # the refusal is shown with the form
    assert not Image.objects.filter(name="ubuntu-24.04").exists()
    assert list(image_dir.iterdir()) == []


def test_an_admin_publishes_from_the_portal(portal_admin):
    response = post_upload(portal_admin, name="official", visibility="public")

    assert response.status_code == 302, response.content.decode()
    assert Image.objects.get(name="official").visibility == "public"
