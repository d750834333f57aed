"""``GET /servers/{id}/diagnostics``: admins only by default, as in Nova.

From 2.48 the standard form (``state``, ``driver``, ``hypervisor``, ``hypervisor_os``, ``uptime``,
``config_drive``, ``num_cpus``/``num_disks``/``num_nics``, ``cpu_details``, ``memory_details``,
``disk_details``, ``nic_details``); before, the driver's free-form dict (libvirt: ``cpu0_time``,
``memory``, ``vda_read``, ...).
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import APIError, Conflict
from portal.services import diagnostics
from portal.services.lifecycle import StateConflict

from . import validation
from .servers import get_instance_or_404


class ServiceUnavailable(APIError):
    status_code = 503
    default_detail = "The service is unavailable; try again later."


class ServerDiagnosticsView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        self.require_admin()
        instance = get_instance_or_404(self, server_id)
        try:
            reply, uptime = diagnostics.instance_diagnostics(ctx=self.ctx, instance=instance)
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        except diagnostics.HostUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None
        if request.api_version < "2.48":
            return Response(reply.legacy)
        return Response(
            {
                "state": reply.state,
                "driver": reply.driver,
                "hypervisor": reply.hypervisor,
                "hypervisor_os": reply.hypervisor_os,
                "uptime": uptime,
                "config_drive": instance.config_drive,
                "num_cpus": reply.num_cpus,
                "num_disks": reply.num_disks,
                "num_nics": reply.num_nics,
                "cpu_details": reply.cpu_details,
                "memory_details": reply.memory_details,
                "disk_details": reply.disk_details,
                "nic_details": reply.nic_details,
            }
        )
