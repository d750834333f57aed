"""/servers/{id}/metadata[/key] and /servers/{id}/tags[/tag]: CRUD, states, locks, limits, scoping."""

import pytest

from portal.models import QuotaLimit
from portal.states import TaskState, VmState

from .helpers import BASE, booted, on_host, v

pytestmark = pytest.mark.integration


@pytest.fixture
def server(member, flavor, image):
    return on_host(booted(member, flavor, image, metadata={"a": "1", "b": "2"}))


def url(server, suffix=""):
    return f"{BASE}/servers/{server.uuid}/metadata{suffix}"


def test_metadata_crud(member, reader, server):
    assert member.client.get(url(server), **v("2.1")).json() == {"metadata": {"a": "1", "b": "2"}}
    merged = member.client.post(url(server), {"metadata": {"b": "two", "c": "3"}}, format="json")
    assert merged.status_code == 200
    assert merged.json() == {"metadata": {"a": "1", "b": "two", "c": "3"}}
    replaced = member.client.put(url(server), {"metadata": {"only": "this"}}, format="json")
    assert replaced.json() == {"metadata": {"only": "this"}}
    assert member.client.get(url(server, "/only")).json() == {"meta": {"only": "this"}}
    assert member.client.get(url(server, "/missing")).status_code == 404
    one = member.client.put(url(server, "/new"), {"meta": {"new": "value"}}, format="json")
    assert (one.status_code, one.json()) == (200, {"meta": {"new": "value"}})
    assert member.client.delete(url(server, "/only")).status_code == 204
    assert member.client.delete(url(server, "/only")).status_code == 404
    server.refresh_from_db()
    assert server.metadata == {"new": "value"}
    # Readers read, and only read.
    assert reader.client.get(url(server)).status_code == 200
    assert reader.client.post(url(server), {"metadata": {"x": "y"}}, format="json").status_code == 403
    assert reader.client.delete(url(server, "/new")).status_code == 403


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("put", "/k", {"meta": {"other": "v"}}),  # the body and the URI disagree
        ("put", "/k", {"meta": {"k": "v", "l": "w"}}),
        ("put", "/k", {"meta": {}}),
        ("post", "", {"metadata": {"k": 1}}),
        ("post", "", {"metadata": {"bad/key": "v"}}),
        ("post", "", {"metadata": {"k": "v" * 256}}),
        ("post", "", {"meta": {"k": "v"}}),
        ("put", "", ["not", "an", "object"]),
    ],
)
def test_bad_metadata_requests_are_400(member, server, method, suffix, body):
    response = getattr(member.client, method)(url(server, suffix), body, format="json")
    assert response.status_code == 400, response.content
    server.refresh_from_db()
    assert server.metadata == {"a": "1", "b": "2"}


def test_metadata_changes_only_on_an_idle_server_in_a_stable_state(member, server):
    server.task_state = TaskState.REBOOTING
    server.save()
    assert member.client.post(url(server), {"metadata": {"x": "y"}}, format="json").status_code == 409
    server.task_state, server.vm_state = None, VmState.ERROR
    server.save()
    assert member.client.delete(url(server, "/a")).status_code == 409
    server.vm_state = VmState.PAUSED
    server.save()
    assert member.client.post(url(server), {"metadata": {"x": "y"}}, format="json").status_code == 200


def test_a_locked_servers_metadata_is_for_admins_only(member, admin, server):
    server.locked, server.locked_by = True, "owner"
    server.save()
    response = member.client.post(url(server), {"metadata": {"x": "y"}}, format="json")
    assert response.status_code == 409 and "locked" in response.json()["conflictingRequest"]["message"]
    assert admin.client.post(url(server), {"metadata": {"x": "y"}}, format="json").status_code == 200


def test_metadata_items_are_limited_by_the_quota(member, server):
    QuotaLimit.objects.create(project=member.project, resource="metadata_items", hard_limit=3)
    assert member.client.post(url(server), {"metadata": {"c": "3"}}, format="json").status_code == 200
    response = member.client.post(url(server), {"metadata": {"d": "4"}}, format="json")
    assert response.status_code == 403
    assert "metadata" in response.json()["forbidden"]["message"]


def test_other_projects_cannot_see_the_metadata(stranger, server):
    assert stranger.client.get(url(server)).status_code == 404
    assert stranger.client.post(url(server), {"metadata": {"x": "y"}}, format="json").status_code == 404


# --- tags --------------------------------------------------------------------------------------------


def tags_url(server, tag=None):
    return f"{BASE}/servers/{server.uuid}/tags" + (f"/{tag}" if tag is not None else "")


def test_tags_crud(member, server):
    V = v("2.26")
    assert member.client.get(tags_url(server), **V).json() == {"tags": []}
    added = member.client.put(tags_url(server, "web"), **V)
    assert added.status_code == 201
    assert added["Location"].endswith(f"/v2.1/servers/{server.uuid}/tags/web")
    assert member.client.put(tags_url(server, "web"), **V).status_code == 204  # already there
    assert member.client.get(tags_url(server, "web"), **V).status_code == 204
    assert member.client.get(tags_url(server, "db"), **V).status_code == 404
    replaced = member.client.put(tags_url(server), {"tags": ["b", "a", "b"]}, format="json", **V)
    assert (replaced.status_code, replaced.json()) == (200, {"tags": ["a", "b"]})
    assert member.client.delete(tags_url(server, "a"), **V).status_code == 204
    assert member.client.delete(tags_url(server, "a"), **V).status_code == 404
    assert member.client.get(f"{BASE}/servers/{server.uuid}", **V).json()["server"]["tags"] == ["b"]
    assert member.client.delete(tags_url(server), **V).status_code == 204
    assert member.client.get(tags_url(server), **V).json() == {"tags": []}


def test_tags_exist_from_2_26(member, server):
    assert member.client.get(tags_url(server), **v("2.25")).status_code == 404
    assert member.client.put(tags_url(server, "x"), **v("2.25")).status_code == 404


def test_tag_limits_and_characters(member, server):
    V = v("2.26")
    assert member.client.put(tags_url(server, "x" * 61), **V).status_code == 400
    assert member.client.put(tags_url(server, "a,b"), **V).status_code == 400
    assert member.client.put(tags_url(server), {"tags": ["a/b"]}, format="json", **V).status_code == 400
    assert member.client.put(tags_url(server), {"tags": "a"}, format="json", **V).status_code == 400
    fifty = [f"t{n}" for n in range(50)]
    assert member.client.put(tags_url(server), {"tags": fifty}, format="json", **V).status_code == 200
    assert member.client.put(tags_url(server, "one-more"), **V).status_code == 400
    assert member.client.put(tags_url(server), {"tags": [*fifty, "x"]}, format="json", **V).status_code == 400


def test_tags_change_only_in_a_stable_state(member, server, reader):
    V = v("2.26")
    server.vm_state = VmState.BUILDING
    server.save()
    assert member.client.put(tags_url(server, "x"), **V).status_code == 409
    server.vm_state, server.task_state = VmState.STOPPED, TaskState.POWERING_ON
    server.save()
    assert member.client.put(tags_url(server, "x"), **V).status_code == 201  # a running task does not matter
    assert reader.client.put(tags_url(server, "y"), **V).status_code == 403
    assert reader.client.get(tags_url(server), **V).json() == {"tags": ["x"]}


def test_a_tag_with_a_space_is_quoted_in_the_location(member, server):
    response = member.client.put(tags_url(server, "two%20words"), **v("2.26"))
    assert response.status_code == 201
    assert response["Location"].endswith("/tags/two%20words")
    assert list(server.tags.values_list("tag", flat=True)) == ["two words"]
