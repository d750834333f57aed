"""An operator's changes to a compute service: enable, disable (with a reason), force down or up, delete.

A disabled host takes no new servers (the scheduler's ComputeFilter skips it) but keeps running the ones
it has; a host forced down counts as down whatever its heartbeats say, until it is forced up again. A
deleted host is gone from the cloud: it must run no server and be part of no move, and it must be
enrolled again to come back.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.models import Aggregate, ComputeHost, Instance, Migration, Router
from portal.services import host_trust, router_hosts
from portal.states import VmState

log = logging.getLogger(__name__)


class HostInUse(Exception):
    """The host runs servers or takes part in a move (the API answers 409)."""


_UNSET = object()


def compute_host_update(
    *, host: ComputeHost, enabled=_UNSET, disabled_reason=_UNSET, forced_down=_UNSET, runs_routers=_UNSET
) -> ComputeHost:
    """Change the given fields only (``disabled_reason`` is cleared when the host is enabled)."""
    fields = {}
    if enabled is not _UNSET:
        fields["enabled"] = bool(enabled)
        if enabled:
            fields["disabled_reason"] = ""
    if disabled_reason is not _UNSET:
        fields["disabled_reason"] = (disabled_reason or "")[:255]
    if forced_down is not _UNSET:
        fields["forced_down"] = bool(forced_down)
    if runs_routers is not _UNSET:  # the reaper moves the routers of a host no longer trusted with them
        fields["runs_routers"] = bool(runs_routers)
    with transaction.atomic():
        locked = ComputeHost.objects.for_change().get(pk=host.pk)
        for name, value in fields.items():
            setattr(locked, name, value)
        if fields:
            locked.save(update_fields=list(fields))
    return locked


def compute_host_delete(*, host: ComputeHost) -> None:
    """Take the host out of the cloud: out of its aggregates, its key revoked (nothing it signs is
    believed any more), its routers moved to other hosts. Its row stays for the history of the servers
    and moves that name it. Refused while a server is on it or a move in progress involves it; the host's
    row lock (which every claim on the host takes too) keeps a server from arriving meanwhile."""
    with transaction.atomic():
        # Aggregates before the host, in the order every aggregate change takes its locks.
        aggregates = list(Aggregate.objects.select_for_update().filter(hosts=host).order_by("pk"))
        locked = ComputeHost.objects.for_change().filter(pk=host.pk).first()
        if locked is None:
            raise ComputeHost.DoesNotExist(host.pk)
        if Instance.objects.filter(host=locked).exclude(vm_state=VmState.DELETED).exists():
            raise HostInUse(
                "Unable to delete compute service that is hosting instances. Migrate or delete the instances first."
            )
        moving = Migration.objects.filter(Q(source_host=locked) | Q(dest_host=locked))
        if moving.filter(status__in=Migration.ACTIVE_STATUSES).exists():
            raise HostInUse(
                "Unable to delete compute service that has in-progress migrations. Complete the migrations or "
                "delete the instances first."
            )
        for aggregate in aggregates:
            aggregate.hosts.remove(locked)
            aggregate.save(update_fields=["updated_at"])
        host_trust.host_credentials_revoke(host=locked)
        locked.deleted_at = timezone.now()
        locked.enabled = False
        locked.save(update_fields=["deleted_at", "enabled"])
        for router_id in Router.objects.filter(host=locked).values_list("pk", flat=True):
            router = Router.objects.select_for_update(of=("self",)).select_related("host").get(pk=router_id)
            router_hosts.place(router)
    log.info("Deleted compute host %s", locked.name)
