"""The admins' host graphs: heartbeats bring each host's real CPU and memory use, a job samples every host a
minute into a ring of a day, and the admin draws one host's graphs and the fleet at a glance."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.models import ComputeHost, HostSample
from portal.selectors.host_graphs import host_graph
from portal.services.host_graphs import host_samples_record, sample_slot
from portal.services.hosts import host_heartbeat
from tests.factories import FlavorFactory, InstanceFactory

from .beats import heartbeat

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)


beat = heartbeat


@pytest.fixture
def host():
    row = ComputeHost.objects.create(name="graph-host", vcpus=8, memory_mb=16384, disk_gb=200)
    host_heartbeat(beat=beat(row.name, cpu_used_percent=37.5, memory_used_mb=6000), signed_at=time.time())
    row.refresh_from_db()
    return row


@pytest.fixture
def busy_host(host):
    flavor = FlavorFactory(vcpus=2, memory_mb=2048)
    for _ in range(3):
        InstanceFactory(host=host, flavor=flavor, vcpus=2, memory_mb=2048, vm_state="active")
    return host


def test_a_heartbeat_records_what_the_host_really_uses_and_ignores_nonsense(host):
    assert (host.cpu_used_percent, host.memory_used_mb) == (37.5, 6000)
    for cpu, memory in [(250.0, -1), ("lots", 2**60), (True, True)]:
        host_heartbeat(beat=beat(host.name, cpu_used_percent=cpu, memory_used_mb=memory), signed_at=time.time())
        host.refresh_from_db()
        assert (host.cpu_used_percent, host.memory_used_mb) == (None, None)


def test_samples_are_a_ring_of_a_day_per_host(busy_host, settings):
    reserved = settings.SCHEDULER["RESERVED_HOST_MEMORY_MB"]
    assert host_samples_record(now=NOON) == 1
    sample = HostSample.objects.get(host=busy_host)
    assert (sample.vcpus, sample.vcpus_used, sample.instances) == (8, 6, 3)
    assert (sample.memory_mb, sample.memory_mb_used) == (16384, 3 * 2048 + reserved)
    assert (sample.cpu_used_percent, sample.memory_used_mb) == (37.5, 6000)
    assert sample.heartbeat_age_seconds is not None

    # The same minute a day later takes the same row; another minute another one.
    host_samples_record(now=NOON + timedelta(days=1))
    host_samples_record(now=NOON + timedelta(days=1, minutes=1))
    assert HostSample.objects.filter(host=busy_host).count() == 2
    assert sample_slot(NOON) == sample_slot(NOON + timedelta(days=1)) == 12 * 60
    for minute in range(0, 3 * HostSample.SLOTS, 7):
        host_samples_record(now=NOON + timedelta(minutes=minute))
    assert HostSample.objects.filter(host=busy_host).count() <= HostSample.SLOTS


def test_sampling_costs_the_same_few_queries_whatever_the_number_of_hosts(busy_host):
    with CaptureQueriesContext(connection) as one:
        host_samples_record(now=NOON)
    for n in range(30):
        ComputeHost.objects.create(name=f"more-{n}", vcpus=4, memory_mb=8192)
    with CaptureQueriesContext(connection) as many:
        assert host_samples_record(now=NOON + timedelta(minutes=1)) == 31
    assert len(many) == len(one) <= 4


def test_a_graph_is_a_point_a_minute_with_gaps_where_nothing_was_sampled(busy_host):
    for minute in (0, 1, 3):
        host_samples_record(now=NOON + timedelta(minutes=minute))
    graph = host_graph(busy_host, seconds=3600, now=NOON + timedelta(minutes=3))
    assert graph["step"] == 60 and len(graph["series"]["vcpus_used"]) == 60
    assert graph["series"]["vcpus_used"][-4:] == [6, 6, None, 6]
    assert graph["start"] == int((NOON + timedelta(minutes=3)).timestamp()) // 60 * 60 - 59 * 60
    day = host_graph(busy_host, seconds=10**9, now=NOON + timedelta(minutes=3))
    assert len(day["series"]["instances"]) == HostSample.SLOTS  # never more than the ring holds
    # A day old is gone from the graph, even while its row waits to be overwritten.
    later = host_graph(busy_host, seconds=86400, now=NOON + timedelta(days=1, minutes=2))
    assert later["series"]["instances"].count(3) == 1  # only minute 3 is within the last day


@pytest.fixture
def staff_client():
    user = get_user_model().objects.create_user("ops", password="secret", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_shows_a_hosts_graphs_and_the_fleet(busy_host, staff_client):
    host_samples_record()
    ComputeHost.objects.create(name="silent-host", vcpus=4, memory_mb=4096)
    fleet = staff_client.get("/admin/portal/computehost/fleet/")
    assert fleet.status_code == 200
    html = fleet.content.decode()
    assert 'data-host="graph-host"' in html and 'data-host="silent-host"' in html
    assert "6 of 8" in html and "38 %" in html and "6000 of 16384 MB" in html
    assert 'aria-valuenow="75"' in html  # 6 of 8 vCPUs allocated
    assert "never" in html  # the silent host never beat

    page = staff_client.get(f"/admin/portal/computehost/{busy_host.pk}/graphs/")
    assert page.status_code == 200
    assert "/static/portal/vendor/uplot/uPlot.iife.min.js" in page.content.decode()
    data = staff_client.get(f"/admin/portal/computehost/{busy_host.pk}/graphs/data", {"range": "hour"})
    assert data.status_code == 200
    series = data.json()["series"]
    assert series["vcpus_used"][-1] == 6 and series["cpu_used_percent"][-1] == 37.5
    assert (
        staff_client.get(f"/admin/portal/computehost/{busy_host.pk}/graphs/data", {"range": "year"}).status_code == 400
    )
    assert staff_client.get("/admin/portal/computehost/99999/graphs/data").status_code == 404
    assert (
        f"/admin/portal/computehost/{busy_host.pk}/graphs/"
        in staff_client.get("/admin/portal/computehost/").content.decode()
    )


def test_only_admins_see_host_graphs(busy_host):
    member = get_user_model().objects.create_user("member", password="secret")
    client = Client()
    client.force_login(member)
    for path in ("/admin/portal/computehost/fleet/", f"/admin/portal/computehost/{busy_host.pk}/graphs/data"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff_without_permission = get_user_model().objects.create_user("staff", password="secret", is_staff=True)
    client.force_login(staff_without_permission)
    assert client.get("/admin/portal/computehost/fleet/").status_code == 403
    assert client.get(f"/admin/portal/computehost/{busy_host.pk}/graphs/data").status_code == 403
