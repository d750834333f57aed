"""createBackup: a snapshot kept in a rotation.

The backup is made exactly as createImage makes a snapshot (the same host task, the same image), with
the image properties ``image_type: backup`` and ``backup_type``. Once it is active, the oldest active
backups of the same server and backup type beyond ``rotation`` are deleted, the new one counted: as in
Nova, a rotation of 0 keeps none, not even the backup just made.
"""

from __future__ import annotations

import logging

from portal.auth.context import RequestContext
from portal.models import Image, Instance

from .actions import snapshot_into_image
from .images import ImageError, image_delete
from .instances import InvalidRequest

log = logging.getLogger(__name__)


def instance_backup(
    *,
    ctx: RequestContext,
    instance: Instance,
    name: str,
    backup_type: str,
    rotation: int,
    metadata: dict[str, str] | None = None,
) -> Image:
    if instance.image_ref is None:
        raise InvalidRequest("Backup is not supported for volume-backed instances.")
    # As in Nova, the caller's metadata may say what kind of image this is; the backup type is the call's.
    properties = {"image_type": "backup", **(metadata or {}), "backup_type": backup_type}
    return snapshot_into_image(
        ctx=ctx, instance=instance, name=name, properties=properties, record_as="createBackup", backup_rotation=rotation
    )


def backups_rotate(*, image: Image) -> list[str]:
    """Delete the oldest active backups of ``image``'s server and backup type beyond its rotation.

    Returns the ids deleted. A backup that cannot be deleted (protected) is kept and logged."""
    properties = image.properties or {}
    backups = Image.objects.filter(
        status=Image.Status.ACTIVE,
        properties__image_type="backup",
        properties__backup_type=properties.get("backup_type"),
        properties__instance_uuid=properties.get("instance_uuid"),
    ).order_by("-created_at", "-pk")
    deleted = []
    for old in list(backups)[image.backup_rotation :]:
        try:
            image_delete(ctx=None, image=old)
        except ImageError as exc:
            log.warning("Could not delete the backup %s beyond its rotation: %s", old.id, exc)
            continue
        deleted.append(str(old.id))
    if deleted:
        log.info("Backups %s of instance %s rotated out", ", ".join(deleted), properties.get("instance_uuid"))
    return deleted
