"""A destination's heartbeat that reports a live-migrated guest while its move ends never removes it.

The beat is composed once the guest runs on the destination, and is read while the move is still in
progress: the instance is on its source, the migration active. The move ends (another transaction)
while the beat is being read. A beat that reads the instance and its move in two statements would find
the instance on its source and no longer moving, and send the destination the order to remove the guest
it had just taken in. That happened to a real migration under load. Real PostgreSQL, real transactions."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from compute_tasks import rpc
from portal.models import ComputeHost, Instance, Migration
from portal.services.hosts import host_heartbeat
from portal.states import TaskState
from tests.factories import InstanceFactory
from tests.integration.scheduling.conftest import in_thread

from .beats import heartbeat

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SOURCE, DESTINATION = "move-src", "move-dst"


@pytest.fixture
def removals(monkeypatch):
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(rpc, "terminate_instance", lambda host, ref: sent.append((host, ref.instance_uuid)))
    return sent


@pytest.fixture
def moving():
    """A server live-migrating from SOURCE to DESTINATION, its migration about to complete."""
    source = ComputeHost.objects.create(name=SOURCE)
    destination = ComputeHost.objects.create(name=DESTINATION)
    instance = InstanceFactory(host=source, task_state=TaskState.MIGRATING)
    migration = Migration.objects.create(
        instance=instance,
        project=instance.project,
        migration_type="live-migration",
        source_host=source,
        dest_host=destination,
        status=Migration.Status.POST_MIGRATING,
        old_flavor={},
        new_flavor={},
    )
    return instance, migration


def complete(instance: Instance, migration: Migration) -> None:
    """The end of the move, as the conductor writes it: the server on its destination, the move done."""
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(host=migration.dest_host, task_state=None)
        Migration.objects.filter(pk=migration.pk).update(status=Migration.Status.COMPLETED)


def guest_reported(instance: Instance) -> rpc.Heartbeat:
    time.sleep(0.01)  # composed after the instance's last change
    return heartbeat(DESTINATION, domains=[rpc.DomainState(instance_uuid=str(instance.uuid), power_state=1)])


def test_a_move_that_ends_while_the_beat_is_read_keeps_its_guest(moving, removals):
    instance, migration = moving
    beat = guest_reported(instance)
    ended = threading.Event()

    def end_the_move_after_the_instances_are_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not ended.is_set() and 'FROM "portal_instance"' in sql:
            ended.set()
            mover = threading.Thread(target=in_thread(complete), args=(instance, migration))
            mover.start()
            mover.join(10)
        return result

    with connection.execute_wrapper(end_the_move_after_the_instances_are_read):
        host_heartbeat(beat=beat, signed_at=time.time())

    assert ended.is_set()
    assert Migration.objects.get(pk=migration.pk).status == Migration.Status.COMPLETED
    assert removals == []
    assert ComputeHost.objects.get(name=DESTINATION).orphan_domains == []


def test_a_guest_left_on_the_destination_by_a_failed_move_is_removed(moving, removals):
    instance, migration = moving
    Migration.objects.filter(pk=migration.pk).update(status=Migration.Status.ERROR)
    Instance.objects.filter(pk=instance.pk).update(task_state=None)

    host_heartbeat(beat=guest_reported(instance), signed_at=time.time())

    assert removals == [(DESTINATION, str(instance.uuid))]
