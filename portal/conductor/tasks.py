"""The conductor's tasks: thin adapters from messages to services.

Every task is idempotent (a redelivered message finds the work done and does nothing), acknowledged
late, and named explicitly after the contract in ``compute_tasks.rpc``.
"""

from __future__ import annotations

from celery import shared_task

from compute_tasks import rpc
from portal.services import actions, hosts, reaper, scheduling, sign_in_throttle, volumes


@shared_task(name=rpc.SCHEDULE_AND_BUILD)
def schedule_and_build(message: dict) -> None:
    request = rpc.ScheduleRequest.from_dict(message)
    scheduling.schedule_and_build(
        instance_uuid=request.instance_uuid, request_id=request.request_id, user_token=request.user_token
    )


@shared_task(name=rpc.INSTANCE_BUILT)
def instance_built(message: dict) -> None:
    scheduling.instance_built(report=rpc.InstanceBuilt.from_dict(message))


@shared_task(name=rpc.BUILD_FAILED)
def build_failed(message: dict) -> None:
    scheduling.build_failed(report=rpc.BuildFailed.from_dict(message))


def _action_result(message: dict) -> None:
    report = rpc.ActionResult.from_dict(message)
    if report.action in actions.HANDLED:
        actions.action_result(report=report)
    else:
        scheduling.action_result(report=report)


@shared_task(name=rpc.ACTION_DONE)
def action_done(message: dict) -> None:
    _action_result(message)


@shared_task(name=rpc.ACTION_FAILED)
def action_failed(message: dict) -> None:
    _action_result(message)


@shared_task(name=rpc.HEARTBEAT)
def heartbeat(message: dict) -> None:
    hosts.host_heartbeat(beat=rpc.Heartbeat.from_dict(message))


@shared_task(name="conductor.reap_expired_tasks")
def reap_expired_tasks() -> int:
    reaper.resend_lost_schedules()
    return reaper.reap_expired_tasks()


@shared_task(name="conductor.purge_console_tokens")
def purge_console_tokens() -> int:
    return reaper.purge_console_tokens()


@shared_task(name="conductor.purge_failed_sign_ins")
def purge_failed_sign_ins() -> int:
    return sign_in_throttle.failed_sign_ins_purge()


@shared_task(name=rpc.VOLUME_ATTACHED)
def volume_attached(message: dict) -> None:
    volumes.volume_attached(report=rpc.VolumeResult.from_dict(message))


@shared_task(name=rpc.VOLUME_DETACHED)
def volume_detached(message: dict) -> None:
    volumes.volume_detached(report=rpc.VolumeResult.from_dict(message))


@shared_task(name=rpc.RELEASE_VOLUMES)
def release_volumes(message: dict) -> None:
    volumes.instance_volumes_release(instance_uuid=rpc.VolumeRelease.from_dict(message).instance_uuid)


@shared_task(name="conductor.sweep_volumes")
def sweep_volumes() -> int:
    return volumes.sweep_block_devices()
