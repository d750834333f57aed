"""os-getConsoleOutput: the tail of the serial log the server's host keeps.

The log lives on the compute host (``instances/<uuid>/console.log``, written by QEMU), which has no
database and no API credentials. So this is the one request that waits for a host: it is sent to the
host's queue with a private reply queue, and the API waits at most ``CLOUD['CONSOLE_OUTPUT_TIMEOUT']``
seconds for the answer (``compute_tasks.rpc.get_console_output``). Nothing is stored on the way.
``ask_host`` is that wait, shared with the server diagnostics (``portal.services.diagnostics``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from kombu.exceptions import KombuError

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Instance
from portal.selectors.hosts import host_is_up

from .lifecycle import StateConflict

log = logging.getLogger(__name__)

# What the compute API has always removed from console output: control characters but tab, LF and CR.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class HostUnavailable(Exception):
    """The host could not be asked or did not answer in time (the API answers 503)."""


ConsoleUnavailable = HostUnavailable

R = TypeVar("R")


class NoConsole(Exception):
    """The host has no console for the server (the API answers 404)."""


def instance_console_output(*, ctx: RequestContext, instance: Instance, length: int | None = None) -> str:
    if instance.host_id is None:
        raise StateConflict(f"Instance {instance.uuid} is not ready")
    request = rpc.ConsoleOutputRequest(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        reply_to="",
        request_id=ctx.request_id,
        length=length,
    )
    reply = ask_host(instance, rpc.get_console_output, request, what="console output")
    if reply.error:
        raise NoConsole(f"Guest does not have a console available: {reply.error}")
    return _CONTROL.sub("", reply.output)


def ask_host(instance: Instance, ask: Callable[..., R], request: object, *, what: str) -> R:
    """``ask(host name, request, timeout=...)`` of the instance's host, one of ``compute_tasks.rpc``'s
    calls that wait for a signed answer, bounded by ``CLOUD['CONSOLE_OUTPUT_TIMEOUT']`` seconds.
    ``HostUnavailable`` when the host is down, does not answer in time, or the broker is unreachable."""
    host = instance.host
    if not host_is_up(host):
        raise HostUnavailable(f"The compute service of server {instance.uuid} is down; try again later.")
    timeout = settings.CLOUD["CONSOLE_OUTPUT_TIMEOUT"]
    try:
        return ask(host.name, request, timeout=timeout)
    except rpc.NoReply:
        log.warning("Host %s sent no %s for %s within %ss", host.name, what, instance.uuid, timeout)
        raise HostUnavailable(f"The server's host did not answer within {timeout}s; try again later.") from None
    except (KombuError, OSError) as exc:
        log.error("Cannot ask host %s for the %s: %s", host.name, what, exc)
        raise HostUnavailable("The message broker cannot be reached; try again later.") from None
