import hashlib
from urllib.parse import urlsplit

import pytest
from django.test import Client

from compute_tasks import rpc
from portal.models import Image
from portal.services import images as services

from .conftest import create_image, qcow2_bytes, upload

pytestmark = pytest.mark.integration


def _fetch(url: str):
    """A request as a compute host makes it: no credentials, no session."""
    parts = urlsplit(url)
    return Client().get(f"{parts.path}?{parts.query}")


@pytest.fixture
def image(active_image):
    return Image.objects.get(pk=active_image["id"])


def test_signed_url_serves_the_file_without_credentials(image, active_image):
    url = services.image_download_url(image=image)

    assert url.startswith(f"http://cloud.test:8000/internal/images/{image.id}/file?sig=")
    response = _fetch(url)
    assert response.status_code == 200
    assert response["Content-MD5"] == image.checksum
    data = b"".join(response.streaming_content)
    assert data == active_image["data"]
    assert hashlib.sha256(data).hexdigest() == image.os_hash_value


def test_expired_url_is_403(image, settings):
    url = services.image_download_url(image=image)
    settings.CLOUD = {**settings.CLOUD, "IMAGE_URL_TTL": -1}

    response = _fetch(url)

    assert response.status_code == 403
    assert "expired" in response.json()["forbidden"]["message"]


@pytest.mark.parametrize("tamper", ["flip", "drop", "empty"])
def test_tampered_url_is_403(image, tamper):
    url = services.image_download_url(image=image)
    signature = url.rsplit("sig=", 1)[1]
    if tamper == "flip":
        signature = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    elif tamper == "drop":
        signature = signature[:-5]
    else:
        signature = ""

    assert _fetch(url.rsplit("sig=", 1)[0] + "sig=" + signature).status_code == 403


def test_signature_for_one_image_does_not_open_another(member, image):
    other = create_image(member.client, name="other")
    upload(member.client, other["id"], qcow2_bytes(payload=b"secret"))
    url = services.image_download_url(image=image)

    response = _fetch(url.replace(str(image.id), other["id"]))

    assert response.status_code == 403


def test_url_dies_when_the_data_changes(image):
    url = services.image_download_url(image=image)
    Image.objects.filter(pk=image.pk).update(os_hash_value="f" * 64)

    assert _fetch(url).status_code == 403


def test_url_of_a_deleted_image_is_404(member, image):
    url = services.image_download_url(image=image)
    member.client.delete(f"/image/v2/images/{image.id}")

    assert _fetch(url).status_code == 404


def test_malformed_image_id_in_url_is_404(image):
    url = services.image_download_url(image=image)

    assert _fetch(url.replace(str(image.id), "not-a-uuid")).status_code == 404


def test_no_url_for_an_image_without_data(member):
    queued = Image.objects.get(pk=create_image(member.client)["id"])

    with pytest.raises(services.ImageConflict):
        services.image_download_url(image=queued)


def test_build_spec_makes_an_rpc_image_spec(image):
    spec = services.image_build_spec(image=image)

    image_spec = rpc.ImageSpec(**spec)
    assert image_spec.id == str(image.id)
    assert image_spec.sha256 == image.os_hash_value
    assert image_spec.size == image.size
    assert image_spec.disk_format == "qcow2"
    assert _fetch(image_spec.url).status_code == 200


def test_management_commands_can_register_an_image_from_a_file(db, tmp_path, image_dir):
    path = tmp_path / "cirros.qcow2"
    path.write_bytes(qcow2_bytes(payload=b"cirros" * 1000))

    image = services.image_create(
        ctx=None, name="cirros", disk_format="qcow2", container_format="bare", visibility="public"
    )
    with path.open("rb") as stream:
        image = services.image_upload(image=image, stream=stream)

    assert image.status == Image.Status.ACTIVE and image.owner is None
    assert image.os_hash_value == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (image_dir / str(image.id)).read_bytes() == path.read_bytes()
