"""An operator's changes to a compute service: enable, disable (with a reason), force down or up.

A disabled host takes no new servers (the scheduler's ComputeFilter skips it) but keeps running the ones
it has; a host forced down counts as down whatever its heartbeats say, until it is forced up again.
"""

from __future__ import annotations

from django.db import transaction

from portal.models import ComputeHost

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
        locked = ComputeHost.objects.select_for_update().get(pk=host.pk)
        for name, value in fields.items():
            setattr(locked, name, value)
        if fields:
            locked.save(update_fields=list(fields))
    return locked
