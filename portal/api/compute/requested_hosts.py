"""The host a boot request names: an admin's ``zone:host`` (forced) or, from microversion 2.74, the
``host``/``hypervisor_hostname`` fields (requested: every scheduler filter still runs).

Each compute host is one hypervisor here, so a hypervisor hostname (Nova's node) names a host too.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.api.errors import BadRequest, Forbidden
from portal.auth.context import RequestContext
from portal.selectors.compute_hosts import compute_host_get

FORCED_HOST_POLICY = "os_compute_api:servers:create:forced_host"
REQUESTED_DESTINATION_POLICY = "compute:servers:create:requested_destination"


@dataclass(frozen=True)
class HostRequest:
    host: str
    forced: bool


def split_availability_zone(value: str | None) -> tuple[str | None, str | None, str | None]:
    """``zone``, ``zone:host``, ``zone::node`` or ``zone:host:node`` as ``(zone, host, node)``, parsed as
    Nova does; an empty part is None (an empty zone means any zone)."""
    if not value:
        return None, None, None
    parts = value.split(":")
    if len(parts) > 3:
        raise BadRequest("Invalid input received: Unable to parse availability_zone")
    zone, host, node = (*parts, "", "")[:3]
    return zone or None, host or None, node or None


def host_request(
    ctx: RequestContext,
    *,
    forced_host: str | None,
    forced_node: str | None,
    host: str | None,
    node: str | None,
) -> HostRequest | None:
    """The host a boot may go to, if the request names one, after Nova's policy checks (admins only,
    403) and a check that the host exists (400)."""
    forced = bool(forced_host or forced_node)
    if forced and not ctx.is_admin:
        raise Forbidden(f"Policy doesn't allow {FORCED_HOST_POLICY} to be performed.")
    if host or node:
        if not ctx.is_admin:
            raise Forbidden(f"Policy doesn't allow {REQUESTED_DESTINATION_POLICY} to be performed.")
        if forced:
            raise BadRequest(
                "One mechanism with host and/or hypervisor_hostname and another mechanism with zone:host:node "
                "are mutually exclusive."
            )
        return HostRequest(host=_existing_host(host, node), forced=False)
    if forced:
        return HostRequest(host=_existing_host(forced_host, forced_node), forced=True)
    return None


def _existing_host(host: str | None, node: str | None) -> str:
    """The compute host that ``host`` and ``node`` name (both name it when both are given)."""
    name = host or node or ""
    if (host and node and host != node) or compute_host_get(name=name) is None:
        raise BadRequest(f"Compute host {name[:255]} could not be found.")
    return name
