"""Where each router runs, and moving it when that host can no longer run it.

A router runs on one host (its ports are bound there, see ``docs/networking.md``): a host an operator
trusted with routers (``runs_routers``), up and enabled, that has a tunnel address when the router has a
VXLAN network and carries the physical network of every flat network the router is on (the external one
above all). Among those, the one running the fewest routers. The reaper moves the routers of a host that
went down or lost that trust (``rehome``); the guests' traffic through them comes back once the new host
applied its plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from portal.ids import is_uuid
from portal.models import ComputeHost, Network, Port, Router
from portal.selectors.hosts import host_is_up
from portal.services import network_sync
from portal.services.ports import VIF_TYPE_BOUND, VIF_TYPE_UNBOUND

log = logging.getLogger(__name__)

ROUTER_OWNERS = (Port.OWNER_ROUTER_INTERFACE, Port.OWNER_ROUTER_GATEWAY)


def router_ports(router: Router):
    return Port.objects.filter(device_id=str(router.pk), device_owner__in=ROUTER_OWNERS)


def can_run(host: ComputeHost, networks: Iterable[Network]) -> bool:
    """Whether ``host`` may run a router on ``networks``. What a host says of itself (its tunnel address,
    its physical networks) is believed only of a host an operator trusted with routers."""
    if not host.runs_routers or not host.enabled or not host_is_up(host):
        return False
    for network in networks:
        if network.network_type == Network.Type.VXLAN and not host.tunnel_address:
            return False
        if network.network_type == Network.Type.FLAT and network.physical_network not in (host.physical_networks or []):
            return False
    return True


def _networks(router: Router) -> list[Network]:
    ids = set(router_ports(router).values_list("network_id", flat=True))
    if router.external_network_id:
        ids.add(router.external_network_id)
    return list(Network.objects.filter(pk__in=ids))


def place(router: Router) -> ComputeHost | None:
    """Give the router a host when it has ports and none that can run it, bind its ports there, and
    replan every host its change touches. Call inside the transaction that changed the router's ports
    (holding the router's row lock); returns the router's host (None: no port, or no host can run it)."""
    ports = router_ports(router)
    networks = _networks(router)
    old_host_id = router.host_id
    if not ports.exists():
        host = None
    elif router.host is not None and can_run(router.host, networks):
        host = router.host
    else:
        candidates = [
            h
            for h in ComputeHost.objects.filter(enabled=True, forced_down=False, runs_routers=True).annotate(
                load=Count("routers")
            )
            if can_run(h, networks)
        ]
        host = min(candidates, key=lambda h: (h.load, h.name), default=None)
        if host is None and ports.exists():
            log.warning("no host can run router %s (networks %s)", router.pk, [str(n.pk) for n in networks])
    if host is not None and host.pk != old_host_id:
        log.info("router %s runs on %s (was %s)", router.pk, host.name, old_host_id)
    router.host = host
    router.save(update_fields=["host", "updated_at"])
    ports.exclude(host=host).update(
        host=host, vif_type=VIF_TYPE_BOUND if host else VIF_TYPE_UNBOUND, status=Port.Status.DOWN
    )
    replan(router, extra_hosts=[old_host_id])
    return host


def replan(router: Router, extra_hosts: Iterable[int | None] = ()) -> None:
    """Everything that shows the router changed: its host's plan, and every host on its networks (they
    pin its MACs to its host)."""
    hosts = {router.host_id, *extra_hosts}
    network_ids = set(router_ports(router).values_list("network_id", flat=True))
    hosts |= set(Port.objects.filter(network_id__in=network_ids, host__isnull=False).values_list("host_id", flat=True))
    network_sync.hosts_changed(hosts)


def rehome(*, limit: int = 100) -> int:
    """Move the routers whose host is down, disabled or no longer trusted with routers to one that can run
    them, and give a host to those
    that found none when they got their ports; returns how many found a new host."""
    moved = 0
    cutoff = timezone.now() - timedelta(seconds=settings.SCHEDULER["SERVICE_DOWN_TIME"])
    stale = Router.objects.filter(
        Q(host__enabled=False)
        | Q(host__runs_routers=False)
        | Q(host__forced_down=True)
        | Q(host__last_heartbeat__isnull=True)
        | Q(host__last_heartbeat__lt=cutoff),
        host__isnull=False,
    )
    waiting = Router.objects.filter(host__isnull=True, pk__in=_routed_router_ids())
    candidates = list(stale.values_list("pk", flat=True)[:limit]) + list(waiting.values_list("pk", flat=True)[:limit])
    for router_id in candidates[:limit]:
        with transaction.atomic():
            router = Router.objects.select_for_update(of=("self",)).select_related("host").filter(pk=router_id).first()
            if router is None or (router.host is not None and can_run(router.host, ())):
                continue
            before = router.host_id
            if place(router) is not None and router.host_id != before:
                moved += 1
    return moved


def _routed_router_ids() -> list[str]:
    """The ids of routers that have ports (a port's device_id is text, a router's id a UUID)."""
    ids = Port.objects.filter(device_owner__in=ROUTER_OWNERS).values_list("device_id", flat=True).distinct()
    return [i for i in ids if is_uuid(i)]
