"""What the instance page's graphs endpoint lets through of a host's answer.

The host is the one part of the cloud assumed compromisable, and its answer goes to a user's browser: the
portal passes only the shape the hosts' rings give. The host's answer is stood in for here (it comes over
the broker from another machine); ``tests/integration/test_instance_graphs.py`` asks a real worker.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute_tasks import rpc

pytestmark = pytest.mark.django_db

MAC = "52:54:00:12:34:56"


@pytest.fixture
def instance(portal_member, host):
    host.last_heartbeat = timezone.now()
    host.save(update_fields=["last_heartbeat"])
    return portal_member.instance(host=host, vm_state="active")


@pytest.fixture
def host_answers(monkeypatch):
    """The answer the instance's host gives, and the requests it was asked."""
    asked = []
    answer = {}

    def get_instance_graphs(host, request, *, timeout):
        asked.append((host, request))
        fields = {"instance_uuid": request.instance_uuid, "host": host, **answer}
        return rpc.InstanceGraphs.from_dict(fields)

    monkeypatch.setattr(rpc, "get_instance_graphs", get_instance_graphs)
    return answer, asked


def good(points=360):
    return {
        "resolution": "hour",
        "start": 1_800_000_000,
        "step": 10,
        "series": {
            "cpu_percent": [None] * (points - 1) + [97.5],
            "memory_used_mib": [None] * (points - 1) + [120.0],
            "disk.vda.write_bytes": [None] * (points - 1) + [4194304.0],
            f"nic.{MAC}.rx_packets": [None] * (points - 1) + [3.0],
        },
    }


def test_an_answer_of_the_hosts_shape_is_shown(portal_member, instance, host_answers):
    answer, asked = host_answers
    answer.update(good())
    response = portal_member.client.get(f"/instances/{instance.uuid}/graphs", {"range": "day"})
    assert response.status_code == 200
    body = response.json()
    assert body["series"]["cpu_percent"][-1] == 97.5 and body["step"] == 10
    ((host, request),) = asked
    assert host == instance.host.name and request.seconds == 86400 and request.instance_uuid == str(instance.uuid)


def test_a_host_without_history_says_so(portal_member, instance, host_answers):
    answer, _ = host_answers
    answer.update({"no_history": True, "error": "this host has no graphs of the guest"})
    body = portal_member.client.get(f"/instances/{instance.uuid}/graphs").json()
    assert body["no_history"] is True and body["series"] == {}


@pytest.mark.parametrize(
    "change",
    [
        {"series": {'<img src=x onerror="alert(1)">': [1.0]}},
        {"series": {"disk.vda;rm -rf.write_bytes": [1.0]}},
        {"series": {"cpu_percent": [1.0] * 100_000}},
        {"series": {"cpu_percent": ["<script>"]}},
        {"series": {"cpu_percent": [-1.0]}},
        {"series": {"cpu_percent": [True]}},
        {"series": {"cpu_percent": {"a": 1}}},
        {"series": {"cpu_percent": [1.0, 2.0], "memory_used_mib": [1.0]}},
        {"series": {f"disk.vd{n}.read_ops": [1.0] for n in range(100)}},
        {"series": "everything"},
        {"step": 1},
        {"resolution": "year"},
        {"start": "yesterday"},
    ],
)
def test_an_answer_of_another_shape_is_refused_whole(portal_member, instance, host_answers, change):
    answer, _ = host_answers
    answer.update({**good(), **change})
    response = portal_member.client.get(f"/instances/{instance.uuid}/graphs")
    assert response.status_code == 503
    assert response.json() == {"error": "The server's host answered graphs that cannot be shown."}


def test_an_instance_on_no_host_has_no_graphs_and_nothing_is_asked(portal_member, host_answers):
    _, asked = host_answers
    unplaced = portal_member.instance(host=None, vm_state="building")
    response = portal_member.client.get(f"/instances/{unplaced.uuid}/graphs")
    assert response.status_code == 409
    assert "on no host" in response.json()["error"]
    assert asked == []


def test_a_host_that_is_down_is_not_asked(portal_member, instance, host_answers):
    _, asked = host_answers
    instance.host.last_heartbeat = timezone.now() - timedelta(hours=1)
    instance.host.save(update_fields=["last_heartbeat"])
    response = portal_member.client.get(f"/instances/{instance.uuid}/graphs")
    assert response.status_code == 503 and "down" in response.json()["error"]
    assert asked == []
