"""os-instance-actions: list and show, per microversion (2.1, 2.21, 2.51, 2.58, 2.62, 2.66, 2.84)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import InstanceAction, InstanceActionEvent
from portal.states import VmState

from .helpers import BASE, action, booted, on_host, v

pytestmark = pytest.mark.integration


@pytest.fixture
def server(member, flavor, image):
    instance = on_host(booted(member, flavor, image))
    start = InstanceAction.objects.get(instance=instance, action="create")
    InstanceActionEvent.objects.create(
        action=start, event="compute_build_and_run_instance", result="Success", host="hv1", finish_time=timezone.now()
    )
    return instance


def actions_url(server, suffix=""):
    return f"{BASE}/servers/{server.uuid}/os-instance-actions{suffix}"


def test_list_newest_first_with_the_2_1_keys(member, server):
    action(member, server, {"lock": None})
    body = member.client.get(actions_url(server), **v("2.1")).json()
    assert [a["action"] for a in body["instanceActions"]] == ["lock", "create"]
    first = body["instanceActions"][0]
    assert set(first) == {"action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message"}
    assert first["instance_uuid"] == str(server.uuid)
    assert first["project_id"] == member.project.id
    assert first["request_id"].startswith("req-")
    assert "links" not in body


def test_show_with_events_per_microversion(member, admin, server, server_microversions):
    request_id = InstanceAction.objects.get(instance=server, action="create").request_id
    url = actions_url(server, f"/{request_id}")
    old = member.client.get(url, **v("2.50")).json()["instanceAction"]
    assert "events" not in old  # before 2.51 only admins see events
    assert set(admin.client.get(url, **v("2.50")).json()["instanceAction"]["events"][0]) == {
        "event",
        "start_time",
        "finish_time",
        "result",
        "traceback",
    }
    shown = member.client.get(url, **v("2.51")).json()["instanceAction"]
    assert [e["event"] for e in shown["events"]] == ["api_create", "compute_build_and_run_instance"]
    assert set(shown["events"][1]) == {"event", "start_time", "finish_time", "result"}
    at_262 = member.client.get(url, **v("2.62")).json()["instanceAction"]["events"][1]
    assert set(at_262) == {"event", "start_time", "finish_time", "result", "hostId"}
    assert len(at_262["hostId"]) == 56
    as_admin = admin.client.get(url, **v("2.62")).json()["instanceAction"]["events"][1]
    assert (as_admin["host"], as_admin["traceback"]) == ("hv1", None)
    assert member.client.get(actions_url(server, "/req-nope"), **v("2.51")).status_code == 404


def test_times_have_the_compute_apis_old_form(member, server):
    (first,) = member.client.get(actions_url(server), **v("2.58")).json()["instanceActions"]
    assert first["start_time"].count(".") == 1 and not first["start_time"].endswith("Z")
    assert first["updated_at"] is not None


def test_deleted_servers_actions_from_2_21(member, server):
    server.vm_state = VmState.DELETED
    server.save()
    assert member.client.get(actions_url(server), **v("2.20")).status_code == 404
    assert member.client.get(actions_url(server), **v("2.21")).status_code == 200


def test_paging_and_changes_since_from_2_58(member, server, server_microversions):
    for _ in range(4):
        action(member, server, {"lock": None})
    everything = [
        a["request_id"] for a in member.client.get(actions_url(server), **v("2.58")).json()["instanceActions"]
    ]
    assert len(everything) == 5
    walked, query = [], "limit=2"
    while True:
        body = member.client.get(actions_url(server, f"?{query}"), **v("2.58")).json()
        walked += [a["request_id"] for a in body["instanceActions"]]
        if "links" not in body:
            break
        query = body["links"][0]["href"].split("?", 1)[1]
    assert walked == everything
    assert member.client.get(actions_url(server, "?limit=2"), **v("2.57")).json().get("links") is None
    assert member.client.get(actions_url(server, "?marker=req-missing"), **v("2.58")).status_code == 400

    old = timezone.now() - timedelta(days=1)
    InstanceAction.objects.filter(instance=server).exclude(request_id=everything[0]).update(updated_at=old)
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = member.client.get(actions_url(server, f"?changes-since={since}"), **v("2.58")).json()
    assert [a["request_id"] for a in recent["instanceActions"]] == [everything[0]]
    before = member.client.get(actions_url(server, f"?changes-before={since}"), **v("2.66")).json()
    assert [a["request_id"] for a in before["instanceActions"]] == everything[1:]
    assert member.client.get(actions_url(server, "?changes-since=nonsense"), **v("2.58")).status_code == 400


def test_other_projects_see_nothing(stranger, server):
    assert stranger.client.get(actions_url(server), **v("2.58")).status_code == 404


def test_2_84_event_details_for_admins(member, admin, server, server_microversions):
    start = InstanceAction.objects.get(instance=server, action="create")
    InstanceActionEvent.objects.create(
        action=start, event="compute_rebuild", result="Error", host="hv1", details="the disk is gone"
    )
    url = actions_url(server, f"/{start.request_id}")
    before = admin.client.get(url, **v("2.83")).json()["instanceAction"]["events"]
    assert all("details" not in e for e in before)
    events = {e["event"]: e for e in admin.client.get(url, **v("2.84")).json()["instanceAction"]["events"]}
    assert events["compute_rebuild"]["details"] == "the disk is gone"
    assert events["compute_build_and_run_instance"]["details"] is None
    as_member = member.client.get(url, **v("2.84")).json()["instanceAction"]["events"]
    assert all("details" not in e for e in as_member)
