"""The conductor's tasks: thin adapters from messages to services.

Every message is believed only after ``host_trust.message_accept``: signed by an enrolled host (or the
control plane), fresh, not acted on before, and from a host speaking about itself. Every task is
idempotent (a redelivered message finds the work done and does nothing), acknowledged late, and named
explicitly after the contract in ``compute_tasks.rpc``.

The periodic jobs take no input and only repair toward what the database says, so they are not signed:
anyone who can reach the broker could at most make one run early.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.db import OperationalError, connection

from compute_tasks import request_ids, rpc
from portal.db.contention import gave_way
from portal.services import (
    actions,
    build_progress,
    drains,
    host_graphs,
    host_trust,
    hosts,
    identity_tokens,
    live_migrations,
    moves,
    network_sync,
    reaper,
    router_hosts,
    scheduling,
    shelving,
    sign_in_throttle,
    volumes,
)

log = logging.getLogger(__name__)

DEADLOCK_ATTEMPTS = 4


def retrying_deadlocks(call: Callable[[], Any], *, what: str = "a task") -> Any:
    """``call()``, again when PostgreSQL ended its transaction to break a deadlock (or a serialization
    failure): two tasks that lock the same rows in another order are normal, and the one chosen to give
    way has changed nothing. Only outside a transaction, where ``call`` owns its own; every task is
    idempotent, so running it again from the start is safe."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return call()
        except OperationalError as exc:
            if not gave_way(exc) or attempt == DEADLOCK_ATTEMPTS or connection.in_atomic_block:
                raise
            log.warning("%s gave way in a deadlock (attempt %d): running it again", what, attempt)
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def signed_task(name: str, *, from_hosts: bool = True, replay_check: bool = True):
    """Register ``handler(message, verified)`` as the task ``name``, called only for a believed message.
    The message's nonce is recorded once the handler returned, so that it cannot be sent again."""

    def register(handler: Callable[[dict, Any], None]) -> Any:
        @shared_task(name=name)
        def task(message: dict, auth: dict | None = None) -> None:
            verified = host_trust.message_accept(
                task=name, message=message, auth=auth, from_hosts=from_hosts, replay_check=replay_check
            )
            if verified is None:
                return
            with request_ids.working_for(request_ids.of_message(message)):
                retrying_deadlocks(lambda: handler(message, verified), what=name)
            if replay_check:
                host_trust.message_done(verified)

        task.__doc__ = handler.__doc__
        return task

    return register


@signed_task(rpc.SCHEDULE_AND_BUILD, from_hosts=False)
def schedule_and_build(message: dict, _verified) -> None:
    request = rpc.ScheduleRequest.from_dict(message)
    scheduling.schedule_and_build(
        instance_uuid=request.instance_uuid, request_id=request.request_id, user_token=request.user_token
    )


@signed_task(rpc.MOVE_SERVER, from_hosts=False)
def move_server(message: dict, _verified) -> None:
    request = rpc.MoveRequest.from_dict(message)
    moves.move_server(migration_id=request.migration_id, request_id=request.request_id)
    drains.advance_drains()


@signed_task(rpc.UNSHELVE_SERVER, from_hosts=False)
def unshelve_server(message: dict, _verified) -> None:
    request = rpc.UnshelveRequest.from_dict(message)
    shelving.unshelve_server(instance_uuid=request.instance_uuid, request_id=request.request_id, host=request.host)


@signed_task(rpc.LIVE_MIGRATE_SERVER, from_hosts=False)
def live_migrate_server(message: dict, _verified) -> None:
    request = rpc.MoveRequest.from_dict(message)
    live_migrations.live_migrate_server(migration_id=request.migration_id, request_id=request.request_id)
    drains.advance_drains()


@signed_task(rpc.EVACUATE_SERVER, from_hosts=False)
def evacuate_server(message: dict, _verified) -> None:
    request = rpc.MoveRequest.from_dict(message)
    live_migrations.evacuate_server(migration_id=request.migration_id, request_id=request.request_id)


# Progress comes every second while a guest moves; like heartbeats, only its freshness matters.
@signed_task(rpc.MIGRATION_PROGRESS, replay_check=False)
def migration_progress(message: dict, _verified) -> None:
    live_migrations.migration_progress(progress=rpc.MigrationProgress.from_dict(message))


# Like a migration's progress, only its freshness matters: steps only go forward, percents only grow.
@signed_task(rpc.BUILD_PROGRESS, replay_check=False)
def build_progress_reported(message: dict, _verified) -> None:
    build_progress.build_progress(report=rpc.BuildProgress.from_dict(message))


@signed_task(rpc.INSTANCE_BUILT)
def instance_built(message: dict, _verified) -> None:
    scheduling.instance_built(report=rpc.InstanceBuilt.from_dict(message))


@signed_task(rpc.BUILD_FAILED)
def build_failed(message: dict, _verified) -> None:
    scheduling.build_failed(report=rpc.BuildFailed.from_dict(message))


def _action_result(message: dict, _verified) -> None:
    report = rpc.ActionResult.from_dict(message)
    actions.action_result(report=report)
    if report.migration_id is not None:
        drains.advance_drains()  # a move's step ended: a drain waiting for it goes on at once


action_done = signed_task(rpc.ACTION_DONE)(_action_result)
action_failed = signed_task(rpc.ACTION_FAILED)(_action_result)


# Heartbeats are not remembered one by one (thousands a minute): one older than the newest believed
# from its host is refused instead. Nearly every beat is its host's resources unchanged, signed with the
# key its previous beat was: one statement records it, checking there that the key is still the host's.
# Anything else (a new key, a refusal, a change) takes the full path.
@shared_task(name=rpc.HEARTBEAT)
def heartbeat(message: dict, auth: dict | None = None) -> None:
    with request_ids.working_for(request_ids.of_message(message)):
        accepted = host_trust.remembered_key_accept(task=rpc.HEARTBEAT, message=message, auth=auth)
        if accepted is not None:
            verified, public_key = accepted
            beat = rpc.Heartbeat.from_dict(message)
            if hosts.host_heartbeat_unchanged(beat=beat, signed_at=verified.sent_at, public_key=public_key):
                return
        verified = host_trust.message_accept(task=rpc.HEARTBEAT, message=message, auth=auth, replay_check=False)
        if verified is not None:
            hosts.host_heartbeat(beat=rpc.Heartbeat.from_dict(message), signed_at=verified.sent_at)


@signed_task(rpc.NETWORK_STATE_APPLIED)
def network_state_applied(message: dict, _verified) -> None:
    network_sync.network_state_applied(report=rpc.NetworkStateApplied.from_dict(message))


@signed_task(rpc.VOLUME_ATTACHED)
def volume_attached(message: dict, _verified) -> None:
    volumes.volume_attached(report=rpc.VolumeResult.from_dict(message))


@signed_task(rpc.VOLUME_DETACHED)
def volume_detached(message: dict, _verified) -> None:
    volumes.volume_detached(report=rpc.VolumeResult.from_dict(message))


@signed_task(rpc.RELEASE_VOLUMES, from_hosts=False)
def release_volumes(message: dict, _verified) -> None:
    volumes.instance_volumes_release(instance_uuid=rpc.VolumeRelease.from_dict(message).instance_uuid)


# --- periodic jobs -----------------------------------------------------------------------------------


@shared_task(name="conductor.reap_expired_tasks")
def reap_expired_tasks() -> int:
    reaper.resend_lost_schedules()
    reaper.resend_lost_moves()
    router_hosts.rehome()
    return reaper.reap_expired_tasks()


@shared_task(name="conductor.advance_moves")
def advance_moves() -> int:
    """Confirm the moves nobody confirmed within the window, offload the servers shelved long enough, and
    take every host drain a step further."""
    return moves.confirm_expired_resizes() + shelving.offload_shelved() + drains.advance_drains()


@shared_task(name="conductor.purge_console_tokens")
def purge_console_tokens() -> int:
    return (
        reaper.purge_console_tokens()
        + host_trust.purge_seen_messages()
        + identity_tokens.identity_tokens_purge_expired()
    )


@shared_task(name="conductor.purge_failed_sign_ins")
def purge_failed_sign_ins() -> int:
    return sign_in_throttle.failed_sign_ins_purge()


@shared_task(name="conductor.record_host_samples")
def record_host_samples() -> int:
    return host_graphs.host_samples_record()


@shared_task(name="conductor.sweep_volumes")
def sweep_volumes() -> int:
    return volumes.sweep_block_devices()
