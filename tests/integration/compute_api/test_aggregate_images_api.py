"""``POST /os-aggregates/{id}/images`` (2.81): each host of the aggregate that is up is asked to cache the
images; what a host does with the message is in tests/integration/compute_tasks/test_compute_worker.py."""

import uuid

import pytest

from compute_tasks import rpc
from portal.models import Aggregate, Image
from tests.factories import ImageFactory

from .admin_helpers import BASE, ComputeHostFactory, allow_version, stale, v

pytestmark = pytest.mark.integration


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(rpc, "cache_images", lambda host, request, **options: calls.append((host, request, options)))
    return calls


@pytest.fixture
def aggregate(db):
    aggregate = Aggregate.objects.create(name="cache-me")
    aggregate.hosts.add(ComputeHostFactory(name="cache-a"), ComputeHostFactory(name="cache-b"))
    stale(ComputeHostFactory(name="cache-down")).aggregates.add(aggregate)
    ComputeHostFactory(name="elsewhere")
    return aggregate


def cache(caller, aggregate_id, body, version="2.81"):
    return caller.client.post(f"{BASE}/os-aggregates/{aggregate_id}/images", body, format="json", **v(version))


def test_every_host_that_is_up_is_asked_with_signed_urls(monkeypatch, admin, aggregate, sent):
    allow_version(monkeypatch, "2.81")
    first, second = ImageFactory(), ImageFactory(visibility=Image.Visibility.PRIVATE)
    response = cache(admin, aggregate.pk, {"cache": [{"id": str(first.id)}, {"id": str(second.id)}]})
    assert response.status_code == 202, response.content
    assert response.content in (b"", b"null")
    assert [host for host, _, _ in sent] == ["cache-a", "cache-b"]
    request = sent[0][1]
    assert [i.id for i in request.images] == [str(first.id), str(second.id)]
    assert all(i.sha256 == "0" * 64 and i.size == 1024 and "/internal/images/" in i.url for i in request.images)
    assert "sig=" in request.images[0].url
    assert sent[0][2]["expires"] is not None


def test_before_2_81_there_is_no_such_resource(monkeypatch, admin, aggregate, sent):
    allow_version(monkeypatch, "2.81")
    image = ImageFactory()
    assert cache(admin, aggregate.pk, {"cache": [{"id": str(image.id)}]}, "2.80").status_code == 404
    assert sent == []


def test_admins_only(monkeypatch, member, aggregate, sent):
    allow_version(monkeypatch, "2.81")
    image = ImageFactory()
    assert cache(member, aggregate.pk, {"cache": [{"id": str(image.id)}]}).status_code == 403
    assert sent == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"cache": []},
        {"cache": "x"},
        {"cache": [{"id": "not-a-uuid"}]},
        {"cache": [{"id": "00000000-0000-0000-0000-000000000001", "name": "x"}]},
        {"cache": [{}]},
        {"cache": [{"id": "00000000-0000-0000-0000-000000000001"}], "other": 1},
    ],
)
def test_malformed_requests_are_400(monkeypatch, admin, aggregate, sent, body):
    allow_version(monkeypatch, "2.81")
    response = cache(admin, aggregate.pk, body)
    assert response.status_code == 400, body
    assert "badRequest" in response.json()
    assert sent == []


def test_unknown_aggregate_image_duplicates_and_images_without_data(monkeypatch, admin, aggregate, sent):
    allow_version(monkeypatch, "2.81")
    image = ImageFactory()
    assert cache(admin, 999999, {"cache": [{"id": str(image.id)}]}).status_code == 404
    assert cache(admin, "abc", {"cache": [{"id": str(image.id)}]}).status_code == 400
    duplicate = cache(admin, aggregate.pk, {"cache": [{"id": str(image.id)}, {"id": str(image.id)}]})
    assert duplicate.status_code == 400
    assert duplicate.json()["badRequest"]["message"] == "Duplicate images in request"
    unknown = cache(admin, aggregate.pk, {"cache": [{"id": str(image.id)}, {"id": str(uuid.uuid4())}]})
    assert unknown.status_code == 400
    assert "could not be found" in unknown.json()["badRequest"]["message"]
    queued = ImageFactory(status=Image.Status.QUEUED, os_hash_value="", size=None)
    assert cache(admin, aggregate.pk, {"cache": [{"id": str(queued.id)}]}).status_code == 400
    assert sent == []


def test_an_aggregate_without_hosts_up_asks_nobody(monkeypatch, admin, sent):
    allow_version(monkeypatch, "2.81")
    empty = Aggregate.objects.create(name="empty")
    assert cache(admin, empty.pk, {"cache": [{"id": str(ImageFactory().id)}]}).status_code == 202
    assert sent == []
