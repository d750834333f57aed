"""``/images`` of the compute API until 2.35: Nova's view of the image API's images, their deletion and
their properties as metadata (Tempest's compute image tests go through it)."""

import pytest

from portal.models import Image, QuotaLimit
from tests.factories import ImageFactory

from .admin_helpers import BASE, v

pytestmark = pytest.mark.integration


@pytest.fixture
def snapshot(member):
    return ImageFactory(
        owner=member.project,
        visibility="private",
        name="snap",
        status=Image.Status.QUEUED,
        min_ram=64,
        min_disk=1,
        properties={"image_type": "snapshot", "instance_uuid": "8c3d7cbb-6ba2-4b5d-9ed4-2bba5bb3e55c"},
    )


def test_show_has_novas_shape_and_status(member, snapshot):
    body = member.client.get(f"{BASE}/images/{snapshot.id}", **v("2.35")).json()["image"]
    assert set(body) == {
        "id", "name", "minRam", "minDisk", "metadata", "created", "updated", "status", "progress",
        "OS-EXT-IMG-SIZE:size", "links", "server",
    }  # fmt: skip
    assert (body["status"], body["progress"], body["minRam"], body["minDisk"]) == ("SAVING", 25, 64, 1)
    assert body["server"]["id"] == "8c3d7cbb-6ba2-4b5d-9ed4-2bba5bb3e55c"
    assert body["metadata"] == {"image_type": "snapshot", "instance_uuid": "8c3d7cbb-6ba2-4b5d-9ed4-2bba5bb3e55c"}
    assert body["created"].endswith("Z")
    Image.objects.filter(pk=snapshot.pk).update(status=Image.Status.ACTIVE)
    body = member.client.get(f"{BASE}/images/{snapshot.id}", **v("2.1")).json()["image"]
    assert (body["status"], body["progress"]) == ("ACTIVE", 100)


def test_gone_from_2_36(member, snapshot):
    assert member.client.get(f"{BASE}/images/{snapshot.id}", **v("2.36")).status_code == 404
    assert member.client.get(f"{BASE}/images", **v("2.36")).status_code == 404


def test_list_filters_and_pages(member, stranger, snapshot):
    public = ImageFactory(name="base", min_disk=5)
    hidden = ImageFactory(owner=stranger.project, visibility="private")

    def ids(query=""):
        response = member.client.get(f"{BASE}/images/detail?{query}", **v("2.1"))
        assert response.status_code == 200, response.content
        return [i["id"] for i in response.json()["images"]]

    assert set(ids()) == {str(snapshot.id), str(public.id)} and str(hidden.id) not in ids()
    assert ids("type=snapshot") == [str(snapshot.id)]
    assert ids("server=8c3d7cbb-6ba2-4b5d-9ed4-2bba5bb3e55c") == [str(snapshot.id)]
    assert ids("name=base") == [str(public.id)]
    assert ids("status=SAVING") == [str(snapshot.id)]
    assert ids("minDisk=2") == [str(public.id)]
    first = member.client.get(f"{BASE}/images?limit=1", **v("2.1")).json()
    assert len(first["images"]) == 1 and set(first["images"][0]) == {"id", "name", "links"}
    marker = first["images"][0]["id"]
    assert ids(f"marker={marker}") == [i for i in ids() if i != marker]
    assert member.client.get(f"{BASE}/images?limit=x", **v("2.1")).status_code == 400


def test_delete_marks_the_image_deleted_and_hides_it(member, reader, stranger, snapshot):
    assert reader.client.delete(f"{BASE}/images/{snapshot.id}", **v("2.1")).status_code == 403
    assert stranger.client.delete(f"{BASE}/images/{snapshot.id}", **v("2.1")).status_code == 404
    assert member.client.delete(f"{BASE}/images/", **v("2.1")).status_code == 404  # no image named
    assert member.client.delete(f"{BASE}/images/{snapshot.id}", **v("2.1")).status_code == 204
    snapshot.refresh_from_db()
    assert snapshot.status == Image.Status.DELETED
    assert member.client.get(f"{BASE}/images/{snapshot.id}", **v("2.1")).status_code == 404


def test_metadata_merge_replace_and_items(member, snapshot):
    url = f"{BASE}/images/{snapshot.id}/metadata"
    merged = member.client.post(url, {"metadata": {"os_distro": "cirros"}}, format="json", **v("2.1"))
    assert merged.json()["metadata"]["os_distro"] == "cirros" and "image_type" in merged.json()["metadata"]
    replaced = member.client.put(url, {"metadata": {"a": "1"}}, format="json", **v("2.1"))
    assert replaced.json() == {"metadata": {"a": "1"}}
    item = member.client.put(f"{url}/b", {"meta": {"b": "2"}}, format="json", **v("2.1"))
    assert item.json() == {"meta": {"b": "2"}}
    assert member.client.get(f"{url}/b", **v("2.1")).json() == {"meta": {"b": "2"}}
    assert member.client.put(f"{url}/b", {"meta": {"c": "2"}}, format="json", **v("2.1")).status_code == 400
    assert member.client.delete(f"{url}/b", **v("2.1")).status_code == 204
    assert member.client.get(f"{url}/b", **v("2.1")).status_code == 404
    assert member.client.delete(f"{url}/b", **v("2.1")).status_code == 404
    snapshot.refresh_from_db()
    assert snapshot.properties == {"a": "1"}


def test_metadata_is_bounded_by_the_metadata_items_quota(member, snapshot):
    QuotaLimit.objects.create(project=member.project, resource="metadata_items", hard_limit=2)
    url = f"{BASE}/images/{snapshot.id}/metadata"
    response = member.client.post(url, {"metadata": {"one": "more"}}, format="json", **v("2.1"))
    assert response.status_code == 403, response.content
    assert member.client.put(url, {"metadata": {"x": "1"}}, format="json", **v("2.1")).status_code == 200
