"""Races on real PostgreSQL transactions: each thread has its own connection."""

import hashlib
import threading
import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from portal.models import Image
from portal.services import images as services
from tests.conftest import basic_auth

from .conftest import create_image, qcow2_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _in_thread(target, results, *args):
    def run():
        try:
            results.append(target(*args))
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread ended with
            results.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class _GatedStream:
    """Reads block until the test lets them continue, so two uploads are certainly in flight at once."""

    def __init__(self, data: bytes, started: threading.Event, proceed: threading.Event):
        self.data, self.started, self.proceed = data, started, proceed

    def read(self, size: int = -1) -> bytes:
        self.started.set()
        assert self.proceed.wait(timeout=10)
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def test_an_upload_in_flight_makes_a_second_one_conflict(member, image_dir):
    image = services.image_create(ctx=None, name="race", disk_format="qcow2", container_format="bare")
    first, second = qcow2_bytes(payload=b"first" * 1000), qcow2_bytes(payload=b"second" * 1000)
    started, proceed = threading.Event(), threading.Event()
    results: list = []

    slow = _in_thread(lambda: services.image_upload(image=image, stream=_GatedStream(first, started, proceed)), results)
    assert started.wait(timeout=10)
    try:
        with pytest.raises(services.ImageConflict):
            services.image_upload(image=image, stream=_GatedStream(second, threading.Event(), proceed))
    finally:
        proceed.set()
        slow.join(timeout=30)

    assert isinstance(results[0], Image), results
    stored = Image.objects.get(pk=image.pk)
    assert stored.status == Image.Status.ACTIVE
    assert stored.os_hash_value == hashlib.sha256(first).hexdigest()
    assert sorted(p.name for p in image_dir.iterdir()) == [str(image.pk)]


def test_simultaneous_api_uploads_leave_one_consistent_image(member, image_dir):
    image = create_image(member.client)
    payloads = [qcow2_bytes(payload=bytes([n]) * 3_000_000) for n in (1, 2)]
    barrier = threading.Barrier(2)
    results: list = []

    def put(data: bytes) -> tuple[int, bytes]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username))
        barrier.wait(timeout=10)
        response = client.put(f"/image/v2/images/{image['id']}/file", data, content_type="application/octet-stream")
        return response.status_code, data

    threads = [_in_thread(put, results, data) for data in payloads]
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(status for status, _ in results) == [204, 409], results
    winner = next(data for status, data in results if status == 204)
    stored = Image.objects.get(pk=image["id"])
    assert stored.status == Image.Status.ACTIVE
    assert stored.size == len(winner)
    assert stored.checksum == hashlib.md5(winner, usedforsecurity=False).hexdigest()
    assert stored.os_hash_value == hashlib.sha256(winner).hexdigest()
    assert sorted(p.name for p in image_dir.iterdir()) == [image["id"]]
    assert (image_dir / image["id"]).read_bytes() == winner


def test_simultaneous_creates_with_one_id_make_one_image(member):
    image_id = str(uuid.uuid4())
    barrier = threading.Barrier(4)
    results: list = []

    def post() -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username))
        barrier.wait(timeout=10)
        return client.post("/image/v2/images", {"id": image_id, "name": "x"}, format="json").status_code

    threads = [_in_thread(post, results) for _ in range(4)]
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == [201, 409, 409, 409]
    assert Image.objects.filter(pk=image_id).count() == 1


def test_delete_during_upload_leaves_nothing_behind(member, image_dir):
    image = services.image_create(ctx=None, name="gone", disk_format="qcow2", container_format="bare")
    started, proceed = threading.Event(), threading.Event()
    results: list = []

    slow = _in_thread(
        lambda: services.image_upload(image=image, stream=_GatedStream(qcow2_bytes(), started, proceed)),
        results,
    )
    assert started.wait(timeout=10)
    services.image_delete(ctx=None, image=image)
    proceed.set()
    slow.join(timeout=30)

    assert isinstance(results[0], services.ImageConflict), results
    assert Image.objects.get(pk=image.pk).status == Image.Status.DELETED
    assert list(image_dir.iterdir()) == []
