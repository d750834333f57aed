"""Host aggregates: create, rename, metadata, hosts in and out, delete, with the availability-zone rules.

- A host is in one availability zone at most: a host cannot join an aggregate whose zone differs from
  the zone another of its aggregates names, and an aggregate cannot take a zone that one of its hosts
  already has from another aggregate.
- A zone cannot be named empty.
- The zone of a host that runs servers cannot change under them: not by renaming its aggregate's zone,
  nor by adding it to or removing it from an aggregate with a zone.

Every change locks the aggregate's row, then the rows of the hosts involved in id order, so that two
concurrent changes cannot both pass the zone checks and together break them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compute_tasks import request_ids, rpc
from portal.models import AVAILABILITY_ZONE_KEY, Aggregate, ComputeHost, Image, Instance
from portal.selectors.availability_zones import default_zone
from portal.selectors.hosts import host_is_up
from portal.states import VmState

from .images import ImageConflict, image_build_spec


class AggregateConflict(Exception):
    """Name taken, host already a member, or a zone rule broken by a host change (the API answers 409)."""


class InvalidAggregateAction(Exception):
    """A change the zone rules forbid, or deleting an aggregate that has hosts (the API answers 400)."""


class AggregateHostNotFound(Exception):
    """The host is not in the aggregate (the API answers 404)."""


def _lock(aggregate: Aggregate, hosts: Iterable[ComputeHost] = ()) -> tuple[Aggregate, list[ComputeHost]]:
    locked = Aggregate.objects.select_for_update().get(pk=aggregate.pk)
    host_ids = sorted({h.pk for h in hosts} | set(locked.hosts.values_list("pk", flat=True)))
    rows = list(ComputeHost.objects.for_change().filter(pk__in=host_ids).order_by("pk"))
    return locked, rows


def _zones_elsewhere(host_ids: Iterable[int], aggregate: Aggregate) -> set[str]:
    """The zones other aggregates give these hosts."""
    others = (
        Aggregate.objects.filter(hosts__pk__in=list(host_ids), metadata__has_key=AVAILABILITY_ZONE_KEY)
        .exclude(pk=aggregate.pk)
        .distinct()
    )
    return {a.metadata[AVAILABILITY_ZONE_KEY] for a in others}


def _running_on(host_ids: Iterable[int]) -> int:
    return Instance.objects.filter(host_id__in=list(host_ids)).exclude(vm_state=VmState.DELETED).count()


def _check_zone_change(aggregate: Aggregate, new_metadata: Mapping[str, str | None]) -> None:
    """The checks of a metadata change that touches ``availability_zone`` (raises InvalidAggregateAction)."""
    if AVAILABILITY_ZONE_KEY not in new_metadata:
        return
    zone = new_metadata[AVAILABILITY_ZONE_KEY]
    if zone is not None and not zone:
        raise InvalidAggregateAction(f"Aggregate {aggregate.name} does not support empty named availability zone")
    host_ids = list(aggregate.hosts.values_list("pk", flat=True))
    if zone is not None:
        conflicting = sorted(_zones_elsewhere(host_ids, aggregate) - {zone})
        if conflicting:
            raise InvalidAggregateAction(f"One or more hosts already in availability zone(s) {conflicting}")
    old, new = aggregate.availability_zone or default_zone(), zone or default_zone()
    if old != new and host_ids and _running_on(host_ids):
        raise InvalidAggregateAction("One or more hosts contain instances in this zone")


def _apply_metadata(aggregate: Aggregate, updates: Mapping[str, str | None]) -> None:
    metadata = dict(aggregate.metadata)
    for key, value in updates.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    aggregate.metadata = metadata


def aggregate_create(*, name: str, availability_zone: str | None = None) -> Aggregate:
    metadata = {AVAILABILITY_ZONE_KEY: availability_zone} if availability_zone else {}
    try:
        with transaction.atomic():
            if Aggregate.objects.filter(name=name).exists():
                raise AggregateConflict(f"Aggregate {name} already exists.")
            return Aggregate.objects.create(name=name, metadata=metadata)
    except IntegrityError:
        raise AggregateConflict(f"Aggregate {name} already exists.") from None


_UNSET = object()


def aggregate_update(*, aggregate: Aggregate, name: str | None = None, availability_zone=_UNSET) -> Aggregate:
    """Rename the aggregate and/or change its zone (``None`` removes the zone)."""
    try:
        with transaction.atomic():
            locked, _ = _lock(aggregate)
            if name is not None and name != locked.name:
                if Aggregate.objects.filter(name=name).exclude(pk=locked.pk).exists():
                    raise AggregateConflict(f"Aggregate {name} already exists.")
                locked.name = name
            if availability_zone is not _UNSET:
                updates = {AVAILABILITY_ZONE_KEY: availability_zone}
                _check_zone_change(locked, updates)
                _apply_metadata(locked, updates)
            locked.save()
    except IntegrityError:
        raise AggregateConflict(f"Aggregate {name} already exists.") from None
    return locked


def aggregate_set_metadata(*, aggregate: Aggregate, metadata: Mapping[str, str | None]) -> Aggregate:
    """Add or replace metadata keys; a key set to None is removed."""
    with transaction.atomic():
        locked, _ = _lock(aggregate)
        _check_zone_change(locked, metadata)
        _apply_metadata(locked, metadata)
        locked.save()
    return locked


def aggregate_delete(*, aggregate: Aggregate) -> None:
    with transaction.atomic():
        locked, _ = _lock(aggregate)
        if locked.hosts.exists():
            raise InvalidAggregateAction(f"Cannot remove aggregate {locked.pk}. Reason: Host aggregate is not empty.")
        locked.delete()


def _zone_move_message(old: str, new: str, count: int) -> str:
    return (
        f"The host cannot be moved as the availability zone of the host would change from '{old}' to "
        f"'{new}' but the host already has {count} instance(s). Move the instances away from this host "
        "then try again."
    )


def aggregate_add_host(*, aggregate: Aggregate, host: ComputeHost) -> Aggregate:
    with transaction.atomic():
        locked, _ = _lock(aggregate, [host])
        if locked.hosts.filter(pk=host.pk).exists():
            raise AggregateConflict(f"Aggregate {locked.pk} already has host {host.name}.")
        zone = locked.availability_zone
        if zone is not None:
            elsewhere = _zones_elsewhere([host.pk], locked)
            conflicting = sorted(elsewhere - {zone})
            if conflicting:
                raise AggregateConflict(
                    f"Cannot add host {host.name} in aggregate {locked.pk}: One or more hosts already in "
                    f"availability zone(s) {conflicting}"
                )
            old = next(iter(elsewhere), default_zone())
            count = _running_on([host.pk]) if old != zone else 0
            if count:
                raise AggregateConflict(_zone_move_message(old, zone, count))
        locked.hosts.add(host)
        locked.save(update_fields=["updated_at"])
    return locked


def aggregate_remove_host(*, aggregate: Aggregate, host: ComputeHost) -> Aggregate:
    with transaction.atomic():
        locked, _ = _lock(aggregate, [host])
        if not locked.hosts.filter(pk=host.pk).exists():
            raise AggregateHostNotFound(f"Cannot remove host {host.name} in aggregate {locked.pk}")
        zone = locked.availability_zone
        if zone is not None:
            new = next(iter(_zones_elsewhere([host.pk], locked)), default_zone())
            count = _running_on([host.pk]) if new != zone else 0
            if count:
                raise AggregateConflict(_zone_move_message(zone, new, count))
        locked.hosts.remove(host)
        locked.save(update_fields=["updated_at"])
    return locked


def aggregate_cache_images(*, aggregate: Aggregate, images: Sequence[Image]) -> list[str]:
    """Ask each host of the aggregate that is up to put the images into its image cache now (compute API
    2.81), so that the first servers booted from them there do not wait for the download.

    One message per host, carrying a signed download URL per image, valid as long as such URLs are; it
    expires with them. Hosts that are down are skipped, as Nova skips them: the first build there fetches
    the image as usual. Nothing is written: a pre-cache is advice, and a host that misses it loses
    nothing. Returns the names of the hosts asked. An image without data to download is
    :class:`InvalidAggregateAction`, before any host is asked.
    """
    try:
        specs = [rpc.ImageSpec(**image_build_spec(image=image)) for image in images]
    except ImageConflict as exc:
        raise InvalidAggregateAction(str(exc)) from None
    expires = timezone.now() + timedelta(seconds=settings.CLOUD["IMAGE_URL_TTL"])
    request = rpc.CacheImagesRequest(images=specs, request_id=request_ids.current() or request_ids.new())
    asked = []
    for host in aggregate.hosts.order_by("name"):
        if host_is_up(host):
            rpc.cache_images(host.name, request, expires=expires)
            asked.append(host.name)
    return asked
