from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from portal.models import ConsoleToken, Instance
from portal.states import VmState


@dataclass(frozen=True)
class ConsoleTarget:
    """Where a live console token leads now."""

    instance: Instance
    host: str
    port: int
    expires_at: datetime


def instance_has_console(instance: Instance) -> bool:
    """Whether the instance has a screen to open now: running, idle, on the VNC port its host last reported.

    While a task runs, the port on the row may be the one QEMU is about to leave (a reboot, a rebuild), so
    a busy instance has no console until the host reports where its screen is.
    """
    return instance.vm_state == VmState.ACTIVE and instance.task_state is None and bool(instance.vnc_port)


def console_target(token: str) -> ConsoleTarget | None:
    """The console a token opens, or None if unknown, expired, its user deactivated, or the instance has none.

    The address is the instance's current one, read at connect time: a token made before a reboot moved
    QEMU to another port must never lead to whatever listens on the old one now.
    """
    if not token or len(token) > 256:
        return None
    found = (
        ConsoleToken.objects.select_related("instance")
        .filter(token_hash=ConsoleToken.hash(token), expires_at__gt=timezone.now(), user__is_active=True)
        .first()
    )
    if found is None or not instance_has_console(found.instance):
        return None
    instance = found.instance
    return ConsoleTarget(
        instance=instance, host=instance.vnc_host or "127.0.0.1", port=instance.vnc_port, expires_at=found.expires_at
    )
