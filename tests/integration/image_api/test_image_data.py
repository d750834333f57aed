import hashlib
import io
import shutil
import subprocess

import pytest
from rest_framework.test import APIRequestFactory, force_authenticate

from portal.api.image.views import ImageFileView
from portal.models import Image
from tests.file_modes import mode_of

from .conftest import create_image, qcow2_bytes, upload

pytestmark = pytest.mark.integration


def test_upload_computes_size_and_checksums(member, image_dir):
    data = qcow2_bytes(5 * 1024**3, b"payload" * 100_000)
    image = create_image(member.client)

    response = upload(member.client, image["id"], data, HTTP_X_OPENSTACK_IMAGE_SIZE=str(len(data)))

    assert response.status_code == 204, response.content
    body = member.client.get(f"/image/v2/images/{image['id']}").json()
    assert body["status"] == "active"
    assert body["size"] == len(data)
    assert body["virtual_size"] == 5 * 1024**3
    assert body["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert body["os_hash_algo"] == "sha256"
    assert body["os_hash_value"] == hashlib.sha256(data).hexdigest()
    assert (image_dir / image["id"]).read_bytes() == data
    assert sorted(p.name for p in image_dir.iterdir()) == [image["id"]]


def test_the_image_store_is_private(member, image_dir):
    image_dir.chmod(0o755)
    image = create_image(member.client)

    assert upload(member.client, image["id"], qcow2_bytes()).status_code == 204

    assert mode_of(image_dir) == 0o700
    assert mode_of(image_dir / image["id"]) == 0o600


def test_download_streams_the_data_with_its_md5(member, active_image):
    response = member.client.get(f"/image/v2/images/{active_image['id']}/file", HTTP_ACCEPT="application/octet-stream")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-MD5"] == active_image["checksum"]
    assert int(response["Content-Length"]) == len(active_image["data"])
    assert b"".join(response.streaming_content) == active_image["data"]


def test_download_without_data_is_204(member):
    image = create_image(member.client)

    assert member.client.get(f"/image/v2/images/{image['id']}/file").status_code == 204


def test_raw_image_virtual_size_is_its_size(member):
    image = create_image(member.client, disk_format="raw")

    assert upload(member.client, image["id"], b"\x00" * 4096).status_code == 204
    body = member.client.get(f"/image/v2/images/{image['id']}").json()
    assert body["virtual_size"] == body["size"] == 4096


def test_second_upload_conflicts(member, active_image):
    response = upload(member.client, active_image["id"], qcow2_bytes())

    assert response.status_code == 409
    assert member.client.get(f"/image/v2/images/{active_image['id']}").json()["checksum"] == active_image["checksum"]


def test_too_large_upload_is_413_and_the_image_stays_queued(member, settings, image_dir):
    settings.CLOUD = {**settings.CLOUD, "MAX_IMAGE_SIZE": 1000}
    image = create_image(member.client)

    response = upload(member.client, image["id"], qcow2_bytes(payload=b"x" * 2000))

    assert response.status_code == 413
    assert response.json()["overLimit"]["code"] == 413
    assert Image.objects.get(pk=image["id"]).status == Image.Status.QUEUED
    assert list(image_dir.iterdir()) == []
    assert upload(member.client, image["id"], qcow2_bytes(payload=b"x" * 100)).status_code == 204


def test_announced_size_over_the_limit_is_refused_before_reading(member, settings):
    settings.CLOUD = {**settings.CLOUD, "MAX_IMAGE_SIZE": 1000}
    image = create_image(member.client)

    response = upload(member.client, image["id"], qcow2_bytes(), HTTP_X_OPENSTACK_IMAGE_SIZE="5000")

    assert response.status_code in (400, 413)
    assert Image.objects.get(pk=image["id"]).status == Image.Status.QUEUED


def test_size_header_must_match_the_body(member):
    image = create_image(member.client)

    response = upload(member.client, image["id"], qcow2_bytes(), HTTP_X_OPENSTACK_IMAGE_SIZE="3")

    assert response.status_code == 400
    assert Image.objects.get(pk=image["id"]).status == Image.Status.QUEUED


@pytest.mark.parametrize(
    ("disk_format", "data"),
    [
        ("qcow2", b"not a qcow2 file at all" * 10),
        ("qcow2", qcow2_bytes(backing=True)),
        ("qcow2", qcow2_bytes()[:40]),
        ("raw", qcow2_bytes()),
    ],
)
def test_data_must_match_the_disk_format(member, image_dir, disk_format, data):
    image = create_image(member.client, disk_format=disk_format)

    response = upload(member.client, image["id"], data)

    assert response.status_code == 400, response.content
    assert Image.objects.get(pk=image["id"]).status == Image.Status.QUEUED
    assert list(image_dir.iterdir()) == []


def test_upload_needs_formats(member):
    image = member.client.post("/image/v2/images", {"name": "bare"}, format="json").json()

    response = upload(member.client, image["id"], qcow2_bytes())

    assert response.status_code == 400
    assert "disk_format" in response.json()["badRequest"]["message"]


def test_upload_needs_octet_stream(member):
    image = create_image(member.client)

    response = member.client.put(f"/image/v2/images/{image['id']}/file", b"{}", content_type="application/json")

    assert response.status_code == 415


def test_empty_upload_of_raw_image_is_an_empty_active_image(member):
    image = create_image(member.client, disk_format="raw")

    assert upload(member.client, image["id"], b"").status_code == 204
    body = member.client.get(f"/image/v2/images/{image['id']}").json()
    assert body["status"] == "active" and body["size"] == 0


def _chunked_put(user, image_id: str, data: bytes, *, server_decodes_chunks: bool):
    """A PUT without Content-Length, as a client streaming from a pipe sends it."""
    request = APIRequestFactory().put(f"/image/v2/images/{image_id}/file", b"", content_type="application/octet-stream")
    request.META.pop("CONTENT_LENGTH", None)
    request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
    request.META["wsgi.input"] = io.BytesIO(data)
    if server_decodes_chunks:
        request.META["wsgi.input_terminated"] = True
    force_authenticate(request, user=user)
    return ImageFileView.as_view()(request, image_id=image_id)


def test_chunked_upload_streams_when_the_server_ends_the_body(member):
    data = qcow2_bytes(payload=b"streamed" * 5000)
    image = create_image(member.client)

    response = _chunked_put(member.user, image["id"], data, server_decodes_chunks=True)

    assert response.status_code == 204
    body = member.client.get(f"/image/v2/images/{image['id']}").json()
    assert body["size"] == len(data) and body["os_hash_value"] == hashlib.sha256(data).hexdigest()


def test_chunked_upload_is_refused_where_the_body_cannot_be_delimited(member):
    image = create_image(member.client)

    response = _chunked_put(member.user, image["id"], qcow2_bytes(), server_decodes_chunks=False)

    assert response.status_code == 400
    assert Image.objects.get(pk=image["id"]).status == Image.Status.QUEUED


qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")


@qemu_img
def test_real_qcow2_files_are_measured_and_backing_files_refused(member, tmp_path):
    base, overlay = tmp_path / "base.qcow2", tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)], check=True
    )
    good, bad = create_image(member.client, name="base"), create_image(member.client, name="overlay")

    assert upload(member.client, good["id"], base.read_bytes()).status_code == 204
    assert member.client.get(f"/image/v2/images/{good['id']}").json()["virtual_size"] == 64 * 1024**2
    response = upload(member.client, bad["id"], overlay.read_bytes())
    assert response.status_code == 400
    assert "backing file" in response.json()["badRequest"]["message"]
