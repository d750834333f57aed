"""What a host reports while it builds a server: the step it began, and how much of the image it has.

A report is believed only from the host the server is placed on, and only while the server is being
built (``vm_state`` building, in one of ``states.BUILD_STEPS``): a host speaks for its own builds and
for nothing else. Steps only go forward and a step's percent only grows, so a late, repeated or
reordered report changes nothing. Reports are not recorded as action events: the build's end is.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.models import Instance
from portal.states import BUILD_STEPS, TaskState, VmState

from . import lifecycle

log = logging.getLogger(__name__)

_TASK_STATE_OF_STEP = {
    rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING: TaskState.BLOCK_DEVICE_MAPPING,
    rpc.BUILD_STEP_SPAWNING: TaskState.SPAWNING,
}


def build_progress(*, report: rpc.BuildProgress) -> bool:
    """Move the server to the step the host began, or raise the step's percent. Returns whether the
    report changed anything."""
    step = _TASK_STATE_OF_STEP.get(report.step) if isinstance(report.step, str) else None
    percent = report.percent
    if step is None or type(percent) is not int or not 0 <= percent <= 100:
        log.warning("host %s sent a malformed build progress report; ignored", report.host)
        return False
    try:
        instance_uuid = uuid.UUID(str(report.instance_uuid))
    except ValueError:
        log.warning("host %s sent a build progress report for a malformed instance id; ignored", report.host)
        return False
    with transaction.atomic():
        # The one check of who may say this: the host the server is placed on, while it is built.
        instance = (
            Instance.objects.for_change()
            .filter(uuid=instance_uuid, vm_state=VmState.BUILDING, task_state__in=BUILD_STEPS, host__name=report.host)
            .first()
        )
        if instance is None:
            return False  # not (or no longer) built there: a late report, or one about something else
        if _order(step) > _order(instance.task_state):
            return lifecycle.compare_and_swap(
                instance, expected_task_states=[instance.task_state], task_state=step, step_progress=percent
            )
        if step != instance.task_state or percent <= instance.step_progress:
            return False  # an earlier step's, or an older figure, arriving late
        Instance.objects.filter(pk=instance.pk).update(step_progress=percent, updated_at=timezone.now())
        return True


def _order(task_state: str | None) -> int:
    return BUILD_STEPS.index(task_state) if task_state in BUILD_STEPS else -1
