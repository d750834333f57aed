"""``GET /metrics``: who may read it, and that what it says moves with what happens and matches the database.

Each answer is parsed with prometheus_client's own text-format parser. Counters are compared before and
after, since every test of the run counts into the same files.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone
from kombu import Connection

from portal.models import ConsoleSession, Instance, Keypair, Role
from portal.services import reaper
from tests.conftest import Caller, basic_auth
from tests.factories import ImageFactory, InstanceFactory
from tests.integration.compute_api.admin_helpers import ComputeHostFactory, stale
from tests.prometheus import TOKEN, dashboard_metric_names, family_names, samples, scrape, value

pytestmark = pytest.mark.integration

AMQP_BROKER = os.environ.get("COMPUTE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def scraper_token():
    with override_settings(CLOUD={**settings.CLOUD, "METRICS_TOKEN": TOKEN}):
        yield


# --- who may read it ---------------------------------------------------------------------------------


def test_a_scraper_without_the_token_or_with_a_wrong_one_is_refused(client, db):
    assert client.get("/metrics").status_code == 401
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Token {TOKEN}", TOKEN, f"Basic {TOKEN}"):
        response = client.get("/metrics", HTTP_AUTHORIZATION=header)
        assert response.status_code in (401, 403), header
        assert b"cloud_" not in response.content
    # The refusal speaks the API's error envelope.
    assert "unauthorized" in client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").json()


def test_the_right_token_is_accepted(client, db):
    assert "cloud_instances" in family_names(scrape(client))


def test_without_a_configured_token_no_bearer_token_gets_in(client, db):
    with override_settings(CLOUD={**settings.CLOUD, "METRICS_TOKEN": ""}):
        for header in ("Bearer ", "Bearer  ", f"Bearer {TOKEN}"):
            assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code in (401, 403)


def test_admins_may_read_it_and_members_may_not(admin, member):
    with override_settings(CLOUD={**settings.CLOUD, "METRICS_TOKEN": ""}):
        assert admin.client.get("/metrics").status_code == 200
        refused = member.client.get("/metrics")
    assert refused.status_code == 403
    assert "forbidden" in refused.json()
    reader = Caller(Role.READER)
    assert reader.client.get("/metrics").status_code == 403


def test_a_wrong_password_is_refused_even_with_an_admin_s_name(admin, client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=basic_auth(admin.user.username, "not-the-password"))
    assert response.status_code == 401


# --- API requests ------------------------------------------------------------------------------------


def test_requests_are_counted_and_timed_by_route_name_and_status(admin, client):
    before = scrape(client)
    for _ in range(3):
        assert admin.client.get("/compute/v2.1/flavors").status_code == 200
    server = "/compute/v2.1/servers/00000000-0000-0000-0000-000000000000"
    assert admin.client.get(server).status_code == 404
    assert admin.client.get("/no/such/path/4f3a9c").status_code == 404
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cloud_api_requests_total", route="flavors", method="GET", status="200") == 3
    assert moved("cloud_api_request_duration_seconds_count", route="flavors", method="GET") == 3
    assert moved("cloud_api_request_duration_seconds_bucket", route="flavors", method="GET", le="+Inf") == 3
    assert moved("cloud_api_request_duration_seconds_sum", route="flavors", method="GET") > 0
    assert moved("cloud_api_requests_total", route="server", method="GET", status="404") == 1
    assert moved("cloud_api_requests_total", route="unmatched", method="GET", status="404") == 1
    # Routes are names: no path, no id ever becomes a label.
    assert "4f3a9c" not in after
    assert "00000000-0000-0000-0000-000000000000" not in after


def test_a_method_nobody_uses_is_counted_as_other(admin, client):
    before = scrape(client)
    admin.client.generic("BREW", "/compute/v2.1/flavors")
    after = scrape(client)
    assert "BREW" not in after
    assert sum(v for (name, labels), v in samples(after).items() if ("method", "other") in labels) > sum(
        v for (name, labels), v in samples(before).items() if ("method", "other") in labels
    )


# --- the cloud's state, read from the database -------------------------------------------------------


def test_the_instance_gauge_matches_the_database(client, db):
    InstanceFactory.create_batch(2)
    InstanceFactory(vm_state="building", task_state="scheduling")
    InstanceFactory(vm_state="active", task_state="rebooting")
    InstanceFactory(vm_state="stopped", power_state=4)
    InstanceFactory(vm_state="error")
    InstanceFactory(vm_state="deleted")

    text = scrape(client)

    expected = {
        (row["vm_state"], row["task_state"] or "none"): row["n"]
        for row in Instance.objects.exclude(vm_state="deleted")
        .order_by()
        .values("vm_state", "task_state")
        .annotate(n=Count("id"))
    }
    found = {
        (dict(labels)["vm_state"], dict(labels)["task_state"]): v
        for (name, labels), v in samples(text).items()
        if name == "cloud_instances"
    }
    assert found == expected
    assert found[("active", "none")] == 2
    assert found[("building", "scheduling")] == 1
    assert ("deleted", "none") not in found


def test_hosts_are_counted_up_down_and_disabled(client, db):
    ComputeHostFactory.create_batch(2)
    ComputeHostFactory(enabled=False, disabled_reason="maintenance")
    stale(ComputeHostFactory())
    ComputeHostFactory(forced_down=True)
    stale(ComputeHostFactory(enabled=False))

    text = scrape(client)

    assert value(text, "cloud_compute_hosts", state="up", status="enabled") == 2
    assert value(text, "cloud_compute_hosts", state="up", status="disabled") == 1
    assert value(text, "cloud_compute_hosts", state="down", status="enabled") == 2
    assert value(text, "cloud_compute_hosts", state="down", status="disabled") == 1


def test_quota_usage_is_summed_over_every_project(client, db):
    InstanceFactory(vcpus=2, memory_mb=1024)
    InstanceFactory(vcpus=4, memory_mb=2048)
    InstanceFactory(vcpus=8, memory_mb=4096, vm_state="deleted")
    ImageFactory(size=3 * 1024 * 1024 + 1)
    caller = Caller()
    Keypair.objects.create(user=caller.user, name="k", public_key="ssh-ed25519 AAAA", fingerprint="f")

    text = scrape(client)

    assert value(text, "cloud_quota_usage", resource="instances") == 2
    assert value(text, "cloud_quota_usage", resource="cores") == 6
    assert value(text, "cloud_quota_usage", resource="ram") == 3072
    assert value(text, "cloud_quota_usage", resource="key_pairs") == 1
    # Three images of 1 KiB made with the instances, one of 3 MiB and a byte: in MiB, rounded up.
    assert value(text, "cloud_quota_usage", resource="image_count_total") == 4
    assert value(text, "cloud_quota_usage", resource="image_size_total") == 4
    # One series per resource, never per project.
    assert not any("project" in dict(labels) for (_name, labels) in samples(text))


def test_console_sessions_are_counted_open_or_stale(client, db):
    instance = InstanceFactory()
    now = timezone.now()
    long_ago = now - timedelta(seconds=settings.CONSOLE["SESSION_STALE_AFTER"] + 60)
    for last_seen, closed in ((None, None), (now, None), (long_ago, None), (now, now)):
        ConsoleSession.objects.create(instance=instance, user=instance.user, last_seen_at=last_seen, closed_at=closed)

    text = scrape(client)

    assert value(text, "cloud_console_sessions", state="open") == 2
    assert value(text, "cloud_console_sessions", state="stale") == 1


# --- the broker ----------------------------------------------------------------------------------------


def test_queue_depths_come_from_the_broker(client, db):
    host = ComputeHostFactory(name="metrics-queue-host")
    queue = f"compute.{host.name}"
    with Connection(settings.CELERY_BROKER_URL) as connection:
        producer = connection.Producer()
        # Redis keeps a list per priority step: all of them count.
        for priority in (0, 5, 9):
            producer.publish(
                {"n": priority}, routing_key=queue, priority=priority, declare=[connection.SimpleQueue(queue).queue]
            )
        redis_client = connection.default_channel.client
        assert len([key for key in redis_client.keys(f"{queue}*") if redis_client.type(key) == b"list"]) == 3
    try:
        text = scrape(client)
        assert value(text, "cloud_broker_up") == 1
        assert value(text, "cloud_queue_messages", queue=queue) == 3
        assert ("cloud_queue_messages", (("queue", "conductor"),)) in samples(text)
    finally:
        with Connection(settings.CELERY_BROKER_URL) as connection:
            connection.SimpleQueue(queue).clear()


def test_an_unreachable_broker_is_reported_within_the_timeout(client, db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with override_settings(
        CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0",
        CLOUD={**settings.CLOUD, "METRICS_TOKEN": TOKEN, "METRICS_BROKER_TIMEOUT": 0.5},
    ):
        started = time.monotonic()
        text = scrape(client)
    assert time.monotonic() - started < 5
    assert value(text, "cloud_broker_up") == 0
    assert "cloud_instances" in family_names(text)


# --- the reaper ----------------------------------------------------------------------------------------


def test_reaper_actions_are_counted(client, db):
    before = scrape(client)
    InstanceFactory(vm_state="active", task_state="rebooting", task_deadline=timezone.now() - timedelta(seconds=1))
    assert reaper.reap_expired_tasks() == 1
    after = scrape(client)
    assert (
        value(after, "cloud_reaper_actions_total", action="end_expired_task")
        - value(before, "cloud_reaper_actions_total", action="end_expired_task")
        == 1
    )
    assert (
        value(after, "cloud_reaper_expired_tasks_total", task_state="rebooting")
        - value(before, "cloud_reaper_expired_tasks_total", task_state="rebooting")
        == 1
    )


def test_the_dashboard_asks_only_for_metrics_that_exist(client, db):
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    from portal.metrics import instruments

    counted = {metric._name for metric in vars(instruments).values() if isinstance(metric, MetricWrapperBase)}
    known = counted | family_names(scrape(client))
    dashboard = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "control-plane.json"
    used = dashboard_metric_names(dashboard, ("cloud_",))
    assert used - known == set()
    # Every instrument and every state the collector reads has a panel.
    assert known - used == set()


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_queue_lengths_are_read_from_redis_and_from_rabbitmq(broker):
    from portal.metrics.queues import queue_lengths

    url = settings.CELERY_BROKER_URL if broker == "redis" else AMQP_BROKER
    if broker == "amqp" and not port_open(5672):
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672")
    busy, unknown = f"metrics-test-{uuid.uuid4().hex[:8]}", f"metrics-test-{uuid.uuid4().hex[:8]}"
    with Connection(url) as connection:
        queue = connection.SimpleQueue(busy)
        for n in range(3):
            queue.put({"n": n})
        try:
            lengths = queue_lengths(url, [busy, unknown, busy], timeout=2)
        finally:
            queue.clear()
            if broker == "amqp":
                queue.queue(connection.default_channel).delete()
            queue.close()
    # A queue nobody declared is empty; asking twice for one answers twice.
    assert lengths == {busy: 3, unknown: 0}
