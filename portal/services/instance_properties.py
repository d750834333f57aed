"""What a user changes about a server without its host: name, host name, description, pinned zone,
metadata and tags.

Each change locks the instance's row, so two requests editing the same metadata at once cannot lose
one another's keys. Metadata follows the compute API's rules: it changes only while the server is in a
stable state with no task running, and not while it is locked (for non-admins); tags only need the
stable state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceTag
from portal.selectors.availability_zones import default_zone
from portal.states import EDITABLE_VM_STATES

from . import quotas
from .host_requests import hostname_from
from .instances import InvalidRequest
from .lifecycle import InstanceLocked, StateConflict

_UNSET: Any = object()

MAX_TAGS = 50
MAX_TAG_LENGTH = 60
_TAG_RE = re.compile(r"^[^,/]+$")


class NotFound(Exception):
    """The metadata key or tag is not on the server (the API answers 404)."""


def validate_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not _TAG_RE.match(tag) or len(tag) > MAX_TAG_LENGTH:
        raise InvalidRequest(
            f"Tag {str(tag)[:80]!r} is invalid: it must be 1 to {MAX_TAG_LENGTH} characters without '/' or ','."
        )
    return tag


def validate_tags(tags: Iterable[Any]) -> list[str]:
    unique = list(dict.fromkeys(validate_tag(tag) for tag in tags))
    if len(unique) > MAX_TAGS:
        raise InvalidRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
    return unique


def _locked_row(instance: Instance) -> Instance:
    return Instance.objects.for_change().get(pk=instance.pk)


def _check_editable(row: Instance, what: str, *, idle: bool) -> None:
    if row.vm_state not in EDITABLE_VM_STATES:
        raise StateConflict(f"Cannot '{what}' instance {row.uuid} while it is in vm_state {row.vm_state}")
    if idle and row.task_state is not None:
        raise StateConflict(f"Cannot '{what}' instance {row.uuid} while it is in task_state {row.task_state}")


def instance_update(
    *,
    ctx: RequestContext,
    instance: Instance,
    name: str | None = None,
    description: str | None = _UNSET,
    hostname: str | None = None,
    pinned_availability_zone: str | None = _UNSET,
    access_ip_v4: str | None = None,
    access_ip_v6: str | None = None,
) -> Instance:
    """PUT /servers/{id}: a new name (and host name, unless ``hostname`` names one), description,
    access addresses, or pinned zone.

    As in Nova (2.104), a server is pinned only to the zone it is in now, and a pinned server must be
    unpinned (``None``) before it is pinned again: anything else is :class:`StateConflict`.
    """
    with transaction.atomic():
        row = _locked_row(instance)
        if name is not None:
            row.name = name
            row.hostname = hostname_from(name)
        if hostname is not None:
            row.hostname = hostname
        if description is not _UNSET:
            row.description = description
        if pinned_availability_zone is not _UNSET:
            row.pinned_availability_zone = _pinned_zone(row, pinned_availability_zone)
        if access_ip_v4 is not None:
            row.access_ip_v4 = access_ip_v4
        if access_ip_v6 is not None:
            row.access_ip_v6 = access_ip_v6
        row.save(
            update_fields=[
                "name", "hostname", "description", "pinned_availability_zone", "access_ip_v4", "access_ip_v6",
                "updated_at",
            ]
        )  # fmt: skip
    instance.refresh_from_db()
    return instance


def _pinned_zone(row: Instance, requested: str | None) -> str | None:
    if requested is None:
        return None
    if row.pinned_availability_zone is not None:
        if requested != row.pinned_availability_zone:
            raise StateConflict(
                "Cannot change pinned availability zone directly. Unpin first by setting "
                "pinned_availability_zone to null."
            )
        return requested
    current = row.availability_zone or default_zone()
    if requested != current:
        raise StateConflict(
            f"Server can only be pinned to its current availability zone '{current}', but '{requested}' was requested."
        )
    return requested


def instance_metadata_update(
    *, ctx: RequestContext, instance: Instance, metadata: dict[str, str], replace: bool = False
) -> dict[str, str]:
    """Merge ``metadata`` into the server's (or make it the whole of it, with ``replace``).

    Raises InstanceLocked/StateConflict (409) and quotas.QuotaExceeded (403).
    """
    with transaction.atomic():
        row = _locked_row(instance)
        if row.locked and not ctx.is_admin:
            raise InstanceLocked(f"Instance {row.uuid} is locked")
        _check_editable(row, "update metadata", idle=True)
        merged = dict(metadata) if replace else {**row.metadata, **metadata}
        quotas.quota_check(project=row.project, user=None, resource="metadata_items", delta=len(merged))
        row.metadata = merged
        row.save(update_fields=["metadata", "updated_at"])
    instance.refresh_from_db()
    return merged


def instance_metadata_delete(*, ctx: RequestContext, instance: Instance, key: str) -> None:
    with transaction.atomic():
        row = _locked_row(instance)
        if key not in row.metadata:
            raise NotFound("Metadata item was not found")
        if row.locked and not ctx.is_admin:
            raise InstanceLocked(f"Instance {row.uuid} is locked")
        _check_editable(row, "delete metadata", idle=True)
        del row.metadata[key]
        row.save(update_fields=["metadata", "updated_at"])
    instance.refresh_from_db()


def _touch(row: Instance) -> None:
    Instance.objects.filter(pk=row.pk).update(updated_at=timezone.now())


def instance_tags_replace(*, ctx: RequestContext, instance: Instance, tags: Iterable[Any]) -> list[str]:
    wanted = validate_tags(tags)
    with transaction.atomic():
        row = _locked_row(instance)
        _check_editable(row, "update tags", idle=False)
        InstanceTag.objects.filter(instance=row).delete()
        InstanceTag.objects.bulk_create(InstanceTag(instance=row, tag=tag) for tag in wanted)
        _touch(row)
    return sorted(wanted)


def instance_tag_add(*, ctx: RequestContext, instance: Instance, tag: str) -> bool:
    """Add one tag; False when the server already had it."""
    validate_tag(tag)
    with transaction.atomic():
        row = _locked_row(instance)
        _check_editable(row, "update tag", idle=False)
        existing = set(InstanceTag.objects.filter(instance=row).values_list("tag", flat=True))
        if tag in existing:
            return False
        if len(existing) >= MAX_TAGS:
            raise InvalidRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        InstanceTag.objects.create(instance=row, tag=tag)
        _touch(row)
    return True


def instance_tag_remove(*, ctx: RequestContext, instance: Instance, tag: str) -> None:
    with transaction.atomic():
        row = _locked_row(instance)
        _check_editable(row, "delete tag", idle=False)
        deleted, _ = InstanceTag.objects.filter(instance=row, tag=tag).delete()
        if not deleted:
            raise NotFound(f"Server {row.uuid} has no tag '{tag[:80]}'")
        _touch(row)


def instance_tags_clear(*, ctx: RequestContext, instance: Instance) -> None:
    with transaction.atomic():
        row = _locked_row(instance)
        _check_editable(row, "delete tags", idle=False)
        InstanceTag.objects.filter(instance=row).delete()
        _touch(row)
