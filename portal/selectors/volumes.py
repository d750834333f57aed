"""Reads of instances' volumes (their block device mappings)."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.models import BlockDeviceMapping, Instance

Status = BlockDeviceMapping.Status

# What the compute API shows as a server's volumes: everything reserved for it that the guest has or is
# getting; a volume already unplugged whose Cinder attachment is still being deleted is no longer shown.
SHOWN_STATUSES = (Status.RESERVING, Status.ATTACHING, Status.ATTACHED, Status.DETACHING, Status.ROLLING_BACK)


def shown_mappings() -> QuerySet:
    return BlockDeviceMapping.objects.filter(status__in=SHOWN_STATUSES).exclude(volume_id="").order_by("id")


def instance_volumes(instance: Instance) -> list[BlockDeviceMapping]:
    """The server's volumes in attach order; uses the list prefetched as ``volume_list`` when there is one."""
    prefetched = getattr(instance, "volume_list", None)
    if prefetched is not None:
        return list(prefetched)
    return list(shown_mappings().filter(instance=instance))


def instance_volume(instance: Instance, volume_id: str) -> BlockDeviceMapping | None:
    return shown_mappings().filter(instance=instance, volume_id=str(volume_id)).first()


def volume_users(volume_id: str, *, excluding: Instance | None = None) -> QuerySet:
    """Live instances that hold ``volume_id`` (a mapping in any state but released)."""
    rows = BlockDeviceMapping.objects.filter(volume_id=str(volume_id)).exclude(instance__vm_state="deleted")
    if excluding is not None:
        rows = rows.exclude(instance=excluding)
    return rows
