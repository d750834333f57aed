"""An instance's graphs: a window of the figures its host keeps of it, asked live.

The history lives on the instance's host (``compute_tasks.guest_graphs``: rings of fixed size per
resolution, sampled from libvirt every few seconds); this asks the host for a window with the bounded
wait of the diagnostics (``console_output.ask_host``) and stores nothing. Whatever range is asked, the
host answers at one of three resolutions with at most 360 points per series and a bounded number of
series, so an answer is never more than a few hundred kilobytes.

What a host answers is checked before anyone sees it (``_checked``): a host may be compromised, and
its answer goes to a user's browser. Only the series the hosts make, with names of their shape, at one
of the resolutions, with at most 360 numbers each, pass; anything else is refused whole.

A stopped instance keeps the graphs of its last run while its domain is on the host; an instance on no
host has none (``StateConflict``), and a host that is down or slow gives ``HostUnavailable``.
"""

from __future__ import annotations

import logging
import math
import re

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Instance

from .console_output import HostUnavailable, ask_host
from .lifecycle import StateConflict

log = logging.getLogger(__name__)

__all__ = ["RANGES", "HostUnavailable", "InvalidRange", "graph_range_seconds", "instance_graphs"]

# The ranges the graphs offer by name; any number of seconds between the ends is accepted too.
RANGES = {"hour": 3600, "day": 86400, "week": 7 * 86400}
SHORTEST_SECONDS = 60
LONGEST_SECONDS = RANGES["week"]


# What a host's rings can hold (compute_tasks.guest_graphs): the resolutions, and the series' names.
_RESOLUTIONS = {"hour": 10, "day": 300, "week": 1800}
_MAX_POINTS = 360
_MAX_SERIES = 69
_SERIES_NAME = re.compile(
    r"cpu_percent|memory_(used|available|balloon|maximum)_mib"
    r"|disk\.[a-z0-9]{1,16}\.(read|write)_(bytes|ops)"
    r"|nic\.[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\.(rx|tx)_(bytes|packets)"
)


class InvalidRange(ValueError):
    """A range that is neither a range's name nor a whole number of seconds."""


def graph_range_seconds(value: str | None) -> int:
    """``hour``, ``day``, ``week`` or a number of seconds, clamped to a minute .. a week; an hour when
    not given."""
    if value is None or value == "":
        return RANGES["hour"]
    if value in RANGES:
        return RANGES[value]
    try:
        seconds = int(value)
    except ValueError:
        raise InvalidRange(f"range must be one of {', '.join(RANGES)} or a number of seconds, not {value!r}") from None
    return max(SHORTEST_SECONDS, min(LONGEST_SECONDS, seconds))


def instance_graphs(*, ctx: RequestContext, instance: Instance, seconds: int) -> rpc.InstanceGraphs:
    """The host's window of the instance's last ``seconds``; ``no_history`` when it has none yet."""
    if instance.host_id is None:
        raise StateConflict(f"Instance {instance.uuid} is on no host: it has no graphs")
    request = rpc.GraphsRequest(
        instance_uuid=str(instance.uuid),
        reply_to="",
        seconds=max(SHORTEST_SECONDS, min(LONGEST_SECONDS, int(seconds))),
        request_id=ctx.request_id,
    )
    reply = ask_host(instance, rpc.get_instance_graphs, request, what="graphs")
    if reply.error and not reply.no_history:
        raise HostUnavailable(f"The server's host could not read its graphs: {reply.error}")
    return _checked(instance, reply)


def _checked(instance: Instance, reply: rpc.InstanceGraphs) -> rpc.InstanceGraphs:
    """The host's answer if it has the shape the hosts' rings give; ``HostUnavailable`` otherwise."""
    if not _fits(reply):
        log.warning("Host %s answered graphs of %s that do not fit: refused", reply.host, instance.uuid)
        raise HostUnavailable("The server's host answered graphs that cannot be shown.")
    return reply


def _fits(reply: rpc.InstanceGraphs) -> bool:
    series = reply.series
    if not isinstance(series, dict) or len(series) > _MAX_SERIES:
        return False
    if not reply.no_history and _RESOLUTIONS.get(reply.resolution) != reply.step:
        return False
    if not isinstance(reply.start, int) or isinstance(reply.start, bool):
        return False
    for name, values in series.items():
        if not isinstance(name, str) or not _SERIES_NAME.fullmatch(name) or not isinstance(values, list):
            return False
        if len(values) > _MAX_POINTS or not all(_is_point(value) for value in values):
            return False
    return len({len(values) for values in series.values()}) <= 1  # every series over the same slots


def _is_point(value: object) -> bool:
    return value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )
