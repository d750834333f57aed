"""Per-project image quotas (``image_count_total`` images, ``image_size_total`` MiB of data), as a member
trying to go past them would: on create, on upload (refused while the data streams in, leaving nothing
behind), and with many requests at once on PostgreSQL."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from portal.models import Image, QuotaLimit
from portal.selectors.quotas import IMAGE_DEFAULTS, MIB, project_limits
from portal.services import images as services
from tests.conftest import basic_auth

from .conftest import create_image, qcow2_bytes, upload

pytestmark = pytest.mark.integration


def set_limit(project, resource, value):
    QuotaLimit.objects.update_or_create(project=project, user=None, resource=resource, defaults={"hard_limit": value})


def assert_over_limit(response, resource):
    assert response.status_code == 413, response.content
    body = response.json()
    assert set(body) == {"overLimit"} and body["overLimit"]["code"] == 413
    assert resource in body["overLimit"]["message"]


class CountingStream:
    """Image data that is produced as it is read, counting what was read: a client still sending."""

    def __init__(self, size: int):
        self.size = size
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.read_bytes if n < 0 else min(n, self.size - self.read_bytes)
        chunk = (qcow2_bytes() + b"\0" * n)[:n] if self.read_bytes == 0 else b"\0" * n
        self.read_bytes += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:  # part of a WSGI input's interface; never used here
        raise AssertionError("image data is not read by lines")


def test_the_defaults_are_in_one_place_and_apply_to_every_project(member):
    limits = project_limits(member.project)
    assert {r: limits[r] for r in IMAGE_DEFAULTS} == IMAGE_DEFAULTS


# --- count -----------------------------------------------------------------------------------------------


def test_a_create_over_the_image_count_is_refused(member):
    set_limit(member.project, "image_count_total", 2)
    first = create_image(member.client, name="one")
    create_image(member.client, name="two")

    response = member.client.post(
        "/image/v2/images", {"name": "three", "disk_format": "raw", "container_format": "bare"}, format="json"
    )

    assert_over_limit(response, "image_count_total")
    assert sorted(Image.objects.filter(owner=member.project).values_list("name", flat=True)) == ["one", "two"]
    # A deleted image frees its place.
    assert member.client.delete(f"/image/v2/images/{first['id']}").status_code == 204
    create_image(member.client, name="three")


def test_the_count_is_the_owners_whoever_creates(member, admin):
    set_limit(member.project, "image_count_total", 1)
    create_image(member.client, name="mine")

    response = admin.client.post(
        "/image/v2/images",
        {"name": "given", "disk_format": "raw", "container_format": "bare", "owner": member.project.pk},
        format="json",
    )

    assert_over_limit(response, "image_count_total")


def test_concurrent_creates_cannot_exceed_the_count(transactional_db, member):
    """Twelve creates at once, each on its own connection, against a limit of 3: the project row lock
    serialises the count, so exactly 3 get in."""
    set_limit(member.project, "image_count_total", 3)
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def create(n: int):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username))
            barrier.wait(timeout=10)
            body = {"name": f"burst-{n}", "disk_format": "raw", "container_format": "bare"}
            statuses.append(client.post("/image/v2/images", body, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [201] * 3 + [413] * 9
    assert Image.objects.filter(owner=member.project).count() == 3


# --- size ------------------------------------------------------------------------------------------------


def test_an_announced_size_over_the_quota_is_refused_unread(member, image_dir):
    set_limit(member.project, "image_size_total", 1)
    image = create_image(member.client)
    body = CountingStream(2 * MIB)

    response = member.client.put(
        f"/image/v2/images/{image['id']}/file",
        content_type="application/octet-stream",
        CONTENT_LENGTH=str(body.size),
        **{"wsgi.input": body},
    )

    assert_over_limit(response, "image_size_total")
    assert body.read_bytes == 0
    assert Image.objects.get(pk=image["id"]).status == "queued"
    assert list(image_dir.iterdir()) == []


def test_an_upload_over_the_quota_stops_mid_stream_and_leaves_nothing(member, image_dir):
    """Sent without a length (chunked): the server reads until the data goes over the room left, not one
    megabyte more, and keeps nothing of it."""
    set_limit(member.project, "image_size_total", 1)
    image = create_image(member.client)
    body = CountingStream(64 * MIB)

    response = member.client.put(
        f"/image/v2/images/{image['id']}/file",
        content_type="application/octet-stream",
        HTTP_TRANSFER_ENCODING="chunked",
        CONTENT_LENGTH="",
        **{"wsgi.input": body, "wsgi.input_terminated": True},
    )

    assert_over_limit(response, "image_size_total")
    assert MIB < body.read_bytes <= MIB + 1
    assert Image.objects.get(pk=image["id"]).status == "queued"
    assert list(image_dir.iterdir()) == []


def test_the_size_quota_counts_the_projects_other_images(member, image_dir):
    set_limit(member.project, "image_size_total", 1)
    first = create_image(member.client, name="first", disk_format="raw")
    assert upload(member.client, first["id"], b"\0" * (MIB // 2)).status_code == 204
    second = create_image(member.client, name="second", disk_format="raw")

    response = upload(member.client, second["id"], b"\0" * (MIB // 2 + 1))

    assert_over_limit(response, "image_size_total")
    assert upload(member.client, second["id"], b"\0" * (MIB // 2)).status_code == 204  # exactly the limit


def test_uploads_side_by_side_cannot_share_the_room(transactional_db, member, image_dir):
    """Both uploads start while the room is there for each of them alone; the second to finish is refused
    under the project's lock, and goes back to queued with nothing on disk."""
    set_limit(member.project, "image_size_total", 1)
    images = [
        services.image_create(ctx=None, owner_id=member.project.pk, name=n, disk_format="raw", container_format="bare")
        for n in ("a", "b")
    ]
    started = threading.Barrier(2)
    results: list = []

    class Slow:
        def __init__(self):
            self.data = b"\0" * (3 * MIB // 4)

        def read(self, n: int) -> bytes:
            if len(self.data) == 3 * MIB // 4:
                started.wait(timeout=10)  # both have passed the first check before either finishes
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk

    def put(image):
        try:
            results.append(services.image_upload(image=image, stream=Slow()))
        except services.ImageError as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=put, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(type(r).__name__ for r in results) == ["Image", "ImageQuotaExceeded"], results
    statuses = sorted(Image.objects.filter(pk__in=[i.pk for i in images]).values_list("status", flat=True))
    assert statuses == ["active", "queued"]
    active = Image.objects.get(pk__in=[i.pk for i in images], status="active")
    assert sorted(p.name for p in image_dir.iterdir()) == [str(active.pk)]


def test_unlimited_is_minus_one(member):
    set_limit(member.project, "image_size_total", -1)
    set_limit(member.project, "image_count_total", -1)
    image = create_image(member.client, disk_format="raw")
    assert upload(member.client, image["id"], b"\0" * MIB).status_code == 204
