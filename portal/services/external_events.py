"""Events other services send about servers (``os-server-external-events``), handled as Nova's compute
service handles them with a driver that has no use for them: network and accelerator events have no
one waiting for them here (no network service plugs ports, no Cyborg binds accelerators), and the
libvirt driver reacts to neither ``power-update`` (Ironic's) nor ``volume-extended``: both are logged as
the action Nova records, with the failed step Nova's compute host records."""

from __future__ import annotations

from django.db import transaction

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceAction
from portal.states import PowerState, VmState

from . import lifecycle

_POWER_ACTIONS = {"POWER_ON": "start", "POWER_OFF": "stop"}


def _power_update_applies(instance: Instance, tag: str) -> bool:
    """Nova's test of whether a power-update is more than a no-op for the server as it is."""
    if instance.task_state is not None:
        return False
    if tag == "POWER_ON":
        return instance.vm_state == VmState.STOPPED and instance.power_state == PowerState.SHUTDOWN
    return instance.vm_state == VmState.ACTIVE and instance.power_state == PowerState.RUNNING


def external_event_accept(*, ctx: RequestContext, instance: Instance, name: str, tag: str | None) -> None:
    """Record what an accepted event does to the server's history."""
    if name == "power-update":
        action = _POWER_ACTIONS.get(tag or "")
        if action is None:
            return  # Nova skips an unknown power state
        failed = _power_update_applies(instance, tag or "")
        details = "The host's driver does not support power-update events." if failed else ""
        _record(ctx, instance, action, "compute_power_update", failed, details)
    elif name == "volume-extended":
        _record(
            ctx,
            instance,
            "extend_volume",
            "compute_extend_volume",
            True,
            f"Volume {tag}: the host's driver cannot resize an attached volume in the guest.",
        )


def _record(ctx: RequestContext, instance: Instance, action: str, event: str, failed: bool, details: str) -> None:
    with transaction.atomic():
        record = InstanceAction.objects.create(
            instance=instance, action=action, request_id=ctx.request_id, user=ctx.user, project=ctx.project
        )
        lifecycle.record_event(
            record,
            event,
            result="Error" if failed else "Success",
            host=instance.host.name if instance.host_id else "",
            details=details,
        )
