"""Server diagnostics: what the server's hypervisor says about the running guest, asked live.

Like the console log this is a request to the server's host that waits a bounded time for its signed
answer (``console_output.ask_host``); nothing is stored. Only a guest that runs has diagnostics: the
API answers 409 for a server on no host or not running, 503 when the host does not answer in time.
"""

from __future__ import annotations

from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Instance
from portal.states import VmState

from .console_output import HostUnavailable, ask_host
from .lifecycle import StateConflict

# The states in which the server has a running guest on its host (a rescued or resized one runs too).
_RUNNING_STATES = (VmState.ACTIVE, VmState.RESCUED, VmState.RESIZED)

__all__ = ["HostUnavailable", "instance_diagnostics"]


def instance_diagnostics(*, ctx: RequestContext, instance: Instance) -> tuple[rpc.Diagnostics, int | None]:
    """The host's answer and the guest's uptime in seconds (since it was launched, as Nova counts it)."""
    if instance.vm_state not in _RUNNING_STATES:
        raise StateConflict(
            f"Cannot 'get_diagnostics' instance {instance.uuid} while it is in vm_state {instance.vm_state}"
        )
    if instance.host_id is None:
        raise StateConflict(f"Cannot 'get_diagnostics' instance {instance.uuid}: it is on no host")
    request = rpc.DiagnosticsRequest(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        reply_to="",
        request_id=ctx.request_id,
    )
    reply = ask_host(instance, rpc.get_diagnostics, request, what="diagnostics")
    if reply.not_running:
        raise StateConflict(
            f"Instance {instance.uuid} in {reply.error or 'no running state'}. "
            "Cannot get_diagnostics while the instance is in this state."
        )
    if reply.error:
        raise HostUnavailable(f"The server's host could not read its diagnostics: {reply.error}")
    uptime = None
    if instance.launched_at is not None:
        uptime = max(0, int((timezone.now() - instance.launched_at).total_seconds()))
    return reply, uptime
