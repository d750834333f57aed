import struct

import pytest

QCOW2_MAGIC = b"QFI\xfb"


def qcow2_bytes(virtual_size: int = 1024**3, payload: bytes = b"", *, version: int = 3, backing: bool = False) -> bytes:
    """A minimal qcow2 header (plus ``payload``) that format inspection accepts."""
    header = bytearray(104 if version == 3 else 72)
    header[0:4] = QCOW2_MAGIC
    struct.pack_into(">I", header, 4, version)
    if backing:
        struct.pack_into(">QI", header, 8, len(header), 8)
    struct.pack_into(">I", header, 20, 16)  # cluster_bits
    struct.pack_into(">Q", header, 24, virtual_size)
    if version == 3:
        struct.pack_into(">I", header, 100, 104)
    return bytes(header) + payload


@pytest.fixture(autouse=True)
def image_dir(settings, tmp_path):
    directory = tmp_path / "images"
    directory.mkdir()
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": directory, "PUBLIC_URL": "http://cloud.test:8000"}
    return directory


def create_image(client, **body):
    body.setdefault("name", "demo")
    body.setdefault("disk_format", "qcow2")
    body.setdefault("container_format", "bare")
    response = client.post("/image/v2/images", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def upload(client, image_id, data: bytes, **headers):
    headers.setdefault("HTTP_ACCEPT", "")
    return client.put(f"/image/v2/images/{image_id}/file", data, content_type="application/octet-stream", **headers)


@pytest.fixture
def active_image(member):
    """A private qcow2 image of the member's project with data."""
    data = qcow2_bytes(2 * 1024**3, b"disk-bytes" * 1000)
    image = create_image(member.client, name="active", visibility="private")
    assert upload(member.client, image["id"], data).status_code == 204
    return {**member.client.get(f"/image/v2/images/{image['id']}").json(), "data": data}
