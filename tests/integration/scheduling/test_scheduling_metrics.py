"""What the conductor's decisions add to ``/metrics``: decisions and their duration by result, NoValidHost by
the filter that removed the last hosts, and failed builds by what the conductor made of them."""

from __future__ import annotations

import pytest

from compute_tasks import rpc
from portal.services import scheduling
from tests.prometheus import scrape, value

from .conftest import make_host, schedule

pytestmark = pytest.mark.integration


def moved(before: str, after: str, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_placement_is_counted_and_timed(clean_broker, client, ctx, boot):
    make_host("metrics-a")
    instance = boot(ctx)
    before = scrape(client)

    assert schedule(instance) == "metrics-a"

    after = scrape(client)
    assert moved(before, after, "cloud_scheduler_decisions_total", result="placed") == 1
    assert moved(before, after, "cloud_scheduler_duration_seconds_count", result="placed") == 1
    assert moved(before, after, "cloud_scheduler_duration_seconds_sum", result="placed") > 0
    assert moved(before, after, "cloud_scheduler_decisions_total", result="no_valid_host") == 0
    # A redelivered request finds nothing to decide and counts nothing.
    assert schedule(instance) is None
    assert value(scrape(client), "cloud_scheduler_decisions_total", result="placed") == value(
        after, "cloud_scheduler_decisions_total", result="placed"
    )


def test_no_valid_host_is_counted_by_the_filter_that_removed_the_last_hosts(clean_broker, client, ctx, boot, flavor):
    make_host("metrics-small", memory_mb=flavor.memory_mb - 1)
    make_host("metrics-disabled", enabled=False)
    batch = [boot(ctx, name=f"m-{i}", reservation_id="r-metrics", launch_index=i) for i in range(2)]
    before = scrape(client)

    assert schedule(batch[0]) is None

    after = scrape(client)
    # ComputeFilter removed the disabled host, RamFilter the last one: both instances of the request failed.
    assert moved(before, after, "cloud_scheduler_no_valid_host_total", reason="RamFilter") == 2
    assert moved(before, after, "cloud_scheduler_no_valid_host_total", reason="ComputeFilter") == 0
    assert moved(before, after, "cloud_scheduler_decisions_total", result="no_valid_host") == 1
    assert moved(before, after, "cloud_scheduler_duration_seconds_count", result="no_valid_host") == 1


def test_no_hosts_at_all_has_its_own_reason(clean_broker, client, ctx, boot):
    instance = boot(ctx)
    before = scrape(client)
    assert schedule(instance) is None
    assert moved(before, scrape(client), "cloud_scheduler_no_valid_host_total", reason="no_hosts") == 1


def test_failed_builds_are_counted_by_the_conductor_s_decision(clean_broker, client, ctx, boot):
    make_host("metrics-x")
    make_host("metrics-y")
    instance = boot(ctx)
    first = schedule(instance)
    before = scrape(client)

    scheduling.build_failed(
        report=rpc.BuildFailed(
            instance_uuid=str(instance.uuid), host=first, request_id="", message="disk full", reschedulable=True
        )
    )
    instance.refresh_from_db()
    second = instance.host.name
    scheduling.build_failed(
        report=rpc.BuildFailed(
            instance_uuid=str(instance.uuid), host=second, request_id="", message="bad image", reschedulable=False
        )
    )

    after = scrape(client)
    assert second != first
    assert moved(before, after, "cloud_conductor_build_failures_total", decision="rescheduled") == 1
    assert moved(before, after, "cloud_conductor_build_failures_total", decision="failed") == 1
    # The reschedule was a decision of its own.
    assert moved(before, after, "cloud_scheduler_decisions_total", result="placed") == 1
