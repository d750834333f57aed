"""The signed URL a compute host uploads a snapshot through: one image, once, before it expires."""

import subprocess

import pytest
from django.core import signing

from portal.models import Image
from portal.services.image_uploads import snapshot_upload_url
from portal.services.images import image_create

pytestmark = pytest.mark.integration


@pytest.fixture
def queued(member, settings, tmp_path):
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": tmp_path / "images"}
    return image_create(ctx=None, name="snap", disk_format="qcow2", container_format="bare", owner_id=member.project.pk)


@pytest.fixture
def qcow2(tmp_path):
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "8M"], check=True)
    return path.read_bytes()


def put(client, url, data):
    path = url.split("://", 1)[1].split("/", 1)[1]
    return client.put("/" + path, data, content_type="application/octet-stream")


def test_the_url_fills_its_image_once(client, queued, qcow2):
    url = snapshot_upload_url(image=queued)
    assert put(client, url, qcow2).status_code == 204
    queued.refresh_from_db()
    assert (queued.status, queued.size, queued.virtual_size) == ("active", len(qcow2), 8 * 1024**2)
    again = put(client, url, qcow2)
    assert again.status_code == 409 and "conflictingRequest" in again.json()


def test_a_url_for_another_image_or_a_tampered_one_is_refused(client, member, queued, qcow2):
    other = image_create(ctx=None, name="x", disk_format="qcow2", container_format="bare", owner_id=member.project.pk)
    url = snapshot_upload_url(image=other)
    forged = url.replace(str(other.id), str(queued.id), 1)
    assert put(client, forged, qcow2).status_code == 403
    tampered = url[:-3] + ("abc" if not url.endswith("abc") else "xyz")
    assert put(client, tampered, qcow2).status_code == 403
    download_style = signing.dumps({"id": str(queued.id), "sha256": "0" * 64}, salt="portal.images.download")
    assert (
        client.put(f"/internal/images/{queued.id}/upload?sig={download_style}", qcow2, content_type="x/y").status_code
        == 403
    )
    queued.refresh_from_db()
    assert queued.status == "queued"


def test_an_expired_url_is_refused(client, queued, qcow2, settings):
    url = snapshot_upload_url(image=queued)
    settings.CLOUD = {**settings.CLOUD, "TASK_LEASES": {**settings.CLOUD["TASK_LEASES"], "image_snapshot": -1}}
    response = put(client, url, qcow2)
    assert response.status_code == 403 and "expired" in response.json()["forbidden"]["message"]


def test_data_that_is_not_what_the_image_says_is_400(client, queued):
    response = put(client, snapshot_upload_url(image=queued), b"not a qcow2 image at all" * 10)
    assert response.status_code == 400
    queued.refresh_from_db()
    assert queued.status == "queued"


def test_a_deleted_image_cannot_be_filled(client, queued, qcow2):
    url = snapshot_upload_url(image=queued)
    Image.objects.filter(pk=queued.pk).update(status="deleted")
    assert put(client, url, qcow2).status_code == 404
    assert client.get(f"/internal/images/{queued.id}/upload?sig=x").status_code == 405
