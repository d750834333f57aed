"""A conductor decides on a recent picture of the hosts (``SCHEDULER['HOST_STATE_MAX_AGE']``) but claims on
the rows as they are: a host disabled, full, added or gone since the picture was taken is never wrongly
claimed or wrongly missed."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.models import ComputeHost
from portal.selectors.hosts import forget_host_rows, host_state_snapshots
from portal.states import VmState

from .conftest import make_host, schedule

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def host_cache(settings, transactional_db, clean_broker):
    settings.SCHEDULER = {**settings.SCHEDULER, "HOST_STATE_MAX_AGE": 600}
    forget_host_rows()
    yield
    forget_host_rows()


def every_host_reads(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT") and 'FROM "portal_computehost"' in q["sql"] and " WHERE " not in q["sql"]
    ]


def test_later_decisions_do_not_read_every_host(ctx, boot):
    for n in range(5):
        make_host(f"host{n}")
    schedule(boot(ctx, "first"))
    with CaptureQueriesContext(connection) as queries:
        second = boot(ctx, "second")
        assert schedule(second) is not None
    assert every_host_reads(queries) == []
    assert second.vm_state == VmState.BUILDING and second.host is not None


def test_a_host_disabled_since_the_picture_is_not_claimed(ctx, boot):
    make_host("big", memory_mb=131072)
    make_host("small")
    assert schedule(boot(ctx, "first")) == "big"  # the RAM weigher prefers the roomier host
    ComputeHost.objects.filter(name="big").update(enabled=False, disabled_reason="maintenance")
    assert schedule(boot(ctx, "second")) == "small"


def test_a_host_that_filled_up_since_the_picture_is_not_claimed(ctx, boot, flavor):
    make_host("one", vcpus=1, memory_mb=512, cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0)
    make_host("two", vcpus=1, memory_mb=512, cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0)
    first = schedule(boot(ctx, "first"))
    second = schedule(boot(ctx, "second"))
    assert {first, second} == {"one", "two"}
    third = boot(ctx, "third")
    assert schedule(third) is None
    assert third.vm_state == VmState.ERROR


def test_a_host_added_since_the_picture_is_found(ctx, boot):
    make_host("full", vcpus=1, memory_mb=512, cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0)
    assert schedule(boot(ctx, "first")) == "full"
    make_host("new")
    assert schedule(boot(ctx, "second")) == "new"


def test_a_host_gone_since_the_picture_is_not_chosen(ctx, boot):
    make_host("big", vcpus=128, memory_mb=131072, disk_gb=2000)
    make_host("small")
    assert schedule(boot(ctx, "first")) == "big"
    make_host("bigger", vcpus=256, memory_mb=262144, disk_gb=4000)
    ComputeHost.objects.filter(name="big").update(name="renamed-away")  # the host the picture prefers is gone
    assert schedule(boot(ctx, "second")) == "bigger"  # decided again on the hosts as they are


def test_a_host_added_since_the_picture_is_seen_once_it_is_old(ctx, boot, settings):
    make_host("first-host")
    schedule(boot(ctx, "first"))
    make_host("roomy", vcpus=256, memory_mb=262144, disk_gb=4000)
    settings.SCHEDULER = {**settings.SCHEDULER, "HOST_STATE_MAX_AGE": 0.01}
    time.sleep(0.05)
    assert schedule(boot(ctx, "second")) == "roomy"


def test_a_new_picture_keeps_what_did_not_change_and_remakes_what_did(ctx, boot, settings):
    """A host whose row is as it was keeps its snapshot from one picture to the next; a host whose row
    changed (here: disabled) is seen as it is now."""
    make_host("kept")
    make_host("changed", memory_mb=131072)
    assert schedule(boot(ctx, "first")) == "changed"  # "kept" holds nothing: its snapshot is an idle one
    before = {s.host: s for s in host_state_snapshots(recent=True)}
    ComputeHost.objects.filter(name="changed").update(enabled=False, disabled_reason="maintenance")
    settings.SCHEDULER = {**settings.SCHEDULER, "HOST_STATE_MAX_AGE": 0.01}
    time.sleep(0.05)
    after = {s.host: s for s in host_state_snapshots(recent=True)}
    assert after["kept"] is before["kept"]
    assert before["changed"].enabled and not after["changed"].enabled
