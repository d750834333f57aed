"""os-getConsoleOutput: the tail of the serial log the server's host keeps.

The log lives on the compute host (``instances/<uuid>/console.log``, written by QEMU), which has no
database and no API credentials. So this is the one request that waits for a host: it is sent to the
host's queue with a private reply queue, and the API waits at most ``CLOUD['CONSOLE_OUTPUT_TIMEOUT']``
seconds for the answer (``compute_tasks.rpc.get_console_output``). Nothing is stored on the way.
"""

from __future__ import annotations

import logging
import re

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


class ConsoleUnavailable(Exception):
    """The host could not be asked or did not answer in time (the API answers 503)."""


class NoConsole(Exception):
    """The host has no console for the server (the API answers 404)."""


def instance_console_output(*, ctx: RequestContext, instance: Instance, length: int | None = None) -> str:
    if instance.host_id is None:
        raise StateConflict(f"Instance {instance.uuid} is not ready")
    host = instance.host
    if not host_is_up(host):
        raise ConsoleUnavailable(f"The compute service of server {instance.uuid} is down; try again later.")
    request = rpc.ConsoleOutputRequest(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        reply_to="",
        request_id=ctx.request_id,
        length=length,
    )
    timeout = settings.CLOUD["CONSOLE_OUTPUT_TIMEOUT"]
    try:
        reply = rpc.get_console_output(host.name, request, timeout=timeout)
    except rpc.NoReply:
        log.warning("Host %s sent no console output for %s within %ss", host.name, instance.uuid, timeout)
        raise ConsoleUnavailable(f"The server's host did not answer within {timeout}s; try again later.") from None
    except (KombuError, OSError) as exc:
        log.error("Cannot ask host %s for console output: %s", host.name, exc)
        raise ConsoleUnavailable("The message broker cannot be reached; try again later.") from None
    if reply.error:
        raise NoConsole(f"Guest does not have a console available: {reply.error}")
    return _CONTROL.sub("", reply.output)
