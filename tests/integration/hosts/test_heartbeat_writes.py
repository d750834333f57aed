"""A heartbeat writes only what changed: the beat's time and the host's orphan list on every beat, the
host's resources only when they differ from what the row holds, and a stale beat nothing at all."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute_tasks import rpc
from portal.models import ComputeHost
from portal.services.hosts import host_heartbeat

from .beats import heartbeat

pytestmark = pytest.mark.django_db

HOST = "writes-host"


def beat(**changes) -> rpc.Heartbeat:
    return heartbeat(
        HOST,
        **{
            "uptime": " 12:00:00 up 4 min,  0 user,  load average: 0.01, 0.02, 0.03",
            "volume_connector": {"host": HOST, "initiator": "iqn.2004-10.com.example:writes"},
            **changes,
        },
    )


def updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "portal_computehost" in q["sql"]]


@pytest.fixture
def host():
    ComputeHost.objects.create(name=HOST)
    host_heartbeat(beat=beat(), signed_at=time.time())  # the first beat records everything
    return ComputeHost.objects.get(name=HOST)


def test_an_unchanged_beat_moves_only_the_beats_time(host):
    signed_at = time.time()
    with CaptureQueriesContext(connection) as queries:
        assert host_heartbeat(beat=beat(uptime=" 12:00:10 up 4 min"), signed_at=signed_at) is not None
    written = updates(queries)
    assert len(written) == 1, written
    assignments = written[0].split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    assert '"last_heartbeat"' in assignments and '"uptime"' in assignments
    assert '"vcpus"' not in assignments and '"volume_connector"' not in assignments
    row = ComputeHost.objects.get(name=HOST)
    assert row.last_beat_signed_at == signed_at and row.uptime == " 12:00:10 up 4 min"
    assert row.last_heartbeat > host.last_heartbeat


@pytest.mark.parametrize(
    "changes",
    [
        {"vcpus": 16},
        {"disk_gb": 150},
        {"hypervisor_version": 9000000},
        {"volume_connector": {"host": HOST, "initiator": "iqn.2004-10.com.example:other"}},
    ],
)
def test_a_changed_resource_is_recorded(host, changes):
    assert host_heartbeat(beat=beat(**changes), signed_at=time.time()) is not None
    row = ComputeHost.objects.values(*changes).get(name=HOST)
    assert row == changes


def test_orphans_are_written_with_the_beats_time(host):
    with CaptureQueriesContext(connection) as queries:
        host_heartbeat(beat=beat(unknown_domains=["somebody-elses"]), signed_at=time.time())
    assert len(updates(queries)) == 1
    assert ComputeHost.objects.get(name=HOST).orphan_domains == ["somebody-elses"]
    host_heartbeat(beat=beat(), signed_at=time.time())
    assert ComputeHost.objects.get(name=HOST).orphan_domains == []


def test_a_stale_beat_changes_nothing(host):
    host_heartbeat(beat=beat(), signed_at=time.time() + 60)
    before = ComputeHost.objects.values().get(name=HOST)
    assert host_heartbeat(beat=beat(vcpus=64), signed_at=time.time()) is None
    assert ComputeHost.objects.values().get(name=HOST) == before
