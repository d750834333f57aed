"""The portal's image upload under attack: publishing as a member, and going over the quotas."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client

from portal.models import Image, QuotaLimit

from .test_portal_forms import field_errors

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("image_dir")]


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


# --- quotas, checked while the file streams in -----------------------------------------------------------

MIB = 1024 * 1024


@pytest.fixture
def stored(settings, tmp_path, monkeypatch):
    """What Django's upload handlers were given to store, and the directory they spool files to."""
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file goes to a temporary file, as large ones do
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    received = {"bytes": 0, "spool": spool}
    original = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        received["bytes"] += len(raw_data)
        return original(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    return received


def limit(project, resource, value):
    QuotaLimit.objects.create(project=project, resource=resource, hard_limit=value)


def test_an_upload_announced_over_the_room_is_refused_unread(portal_member, image_dir, stored):
    limit(portal_member.project, "image_size_total", 1)

    response = post_upload(portal_member, data=b"\0" * (3 * MIB))

    assert response.status_code == 413
    assert "image_size_total" in " ".join(field_errors(response.content.decode(), "file"))
    assert stored["bytes"] == 0
    assert not Image.objects.exists()
    assert list(image_dir.iterdir()) == [] and list(stored["spool"].iterdir()) == []


def test_an_upload_over_the_room_is_stopped_mid_stream(portal_member, image_dir, stored):
    """A body just under the unread-refusal threshold: the file goes over while it streams in, and no more
    than the room left is ever handed to the handler that spools it."""
    limit(portal_member.project, "image_size_total", 1)

    response = post_upload(portal_member, data=b"\0" * (MIB + 20 * 1024))

    assert response.status_code == 413
    assert "image_size_total" in " ".join(field_errors(response.content.decode(), "file"))
    assert 0 < stored["bytes"] <= MIB
    assert not Image.objects.exists()
    assert list(image_dir.iterdir()) == [] and list(stored["spool"].iterdir()) == []


def test_max_image_size_bounds_the_portal_upload_too(portal_member, image_dir, stored, settings):
    settings.CLOUD = {**settings.CLOUD, "MAX_IMAGE_SIZE": 100 * 1024}

    response = post_upload(portal_member, data=b"\0" * (120 * 1024))

    assert response.status_code == 413
    assert stored["bytes"] <= 100 * 1024
    assert not Image.objects.exists()


def test_the_portal_keeps_to_the_image_count(portal_member, image_dir):
    limit(portal_member.project, "image_count_total", 1)
    assert post_upload(portal_member, name="first").status_code == 302

    response = post_upload(portal_member, name="second")

    assert response.status_code == 400
    assert "image_count_total" in response.content.decode()
    assert list(Image.objects.values_list("name", flat=True)) == ["first"]
    assert len(list(image_dir.iterdir())) == 1


def test_an_upload_within_the_room_goes_through(portal_member, image_dir, stored):
    limit(portal_member.project, "image_size_total", 1)

    response = post_upload(portal_member, data=b"\0" * (MIB - 4096))

    assert response.status_code == 302, response.content.decode()
    assert Image.objects.get(name="disk").size == MIB - 4096
    assert list(stored["spool"].iterdir()) == []


def test_the_upload_still_checks_the_csrf_token(portal_member, image_dir):
    """The page sets its upload handlers before the body is read, so it checks CSRF itself, after."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_member.user)

    response = client.post(
        "/images/upload/",
        {"name": "forged", "disk_format": "raw", "container_format": "bare", "visibility": "private",
         "min_disk": "0", "min_ram": "0", "file": SimpleUploadedFile("d.raw", b"\0" * 4096)},
    )  # fmt: skip

    assert response.status_code == 403
    assert not Image.objects.exists()
