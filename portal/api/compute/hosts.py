"""``/os-hosts`` (admins, until 2.42; 404 from 2.43): the compute API's older view of the hosts, beside
``/os-hypervisors`` and ``/os-services``.

Only compute hosts are services here (no conductor or scheduler rows in ``internal``). ``PUT`` ``status``
disables or enables scheduling to the host as ``/os-services`` does; ``maintenance_mode`` and the power
actions (``startup``, ``shutdown``, ``reboot``) are what the compute API answers with the libvirt driver:
501, for a host that exists and is up.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import APIError, BadRequest, NotFound
from portal.selectors.availability_zones import host_zone_names
from portal.selectors.compute_hosts import compute_host_get, compute_hosts, host_usage_by_project, host_usages
from portal.selectors.hosts import host_is_up
from portal.services.compute_hosts import compute_host_update

from . import validation

_LAST_VERSION = "2.42"
_SWITCH = ("enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE")
POWER_ACTIONS = ("startup", "shutdown", "reboot")


class NotSupported(APIError):
    status_code = 501
    default_detail = "The requested functionality is not supported."


class _HostsView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")
        self.require_admin()

    @staticmethod
    def host(name: str, *, must_be_up: bool = False):
        host = compute_host_get(name=name)
        if host is None:
            raise NotFound(f"Compute host {name[:255]} could not be found.")
        if must_be_up and not host_is_up(host):
            raise BadRequest(f"Compute service of {host.name} is unavailable at this time.")
        return host


def _resource(host_name: str, project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict:
    return {"resource": {"host": host_name, "project": project, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}}


class HostListView(_HostsView):
    def get(self, request):
        hosts = list(compute_hosts().filter(enabled=True))
        zones = host_zone_names([h.pk for h in hosts])
        zone = request.GET.get("zone")
        rows = [{"host_name": h.name, "service": "compute", "zone": zones[h.pk]} for h in hosts]
        if zone:
            rows = [row for row in rows if row["zone"] == zone]
        return Response({"hosts": rows})


class HostView(_HostsView):
    def get(self, request, host_name: str):
        host = self.host(host_name)
        usage = host_usages([host.pk])[host.pk]
        projects = host_usage_by_project(host.pk)
        rows = [
            _resource(host.name, "(total)", host.vcpus, host.memory_mb, host.disk_gb),
            _resource(host.name, "(used_now)", usage.vcpus_used, usage.memory_mb_used, usage.local_gb_used),
            _resource(
                host.name,
                "(used_max)",
                sum(p.vcpus for p in projects),
                sum(p.memory_mb for p in projects),
                sum(p.disk_gb for p in projects),
            ),
        ]
        rows += [_resource(host.name, p.project_id, p.vcpus, p.memory_mb, p.disk_gb) for p in projects]
        return Response({"host": rows})

    def put(self, request, host_name: str):
        body = request.data
        if not isinstance(body, dict):
            raise BadRequest("The request body must be an object.")
        validation.reject_unknown(body, {"status", "maintenance_mode"}, "the request body")
        for field in ("status", "maintenance_mode"):
            value = body.get(field)
            if field in body and value not in _SWITCH:
                raise BadRequest(f"Invalid input for field/attribute {field}: must be 'enable' or 'disable'.")
        if not body:
            raise BadRequest("Invalid input: 'status' or 'maintenance_mode' is required.")
        host = self.host(host_name, must_be_up=True)
        if "maintenance_mode" in body:
            # Checked before anything changes, so a refused request changes nothing.
            raise NotSupported()
        enabled = body["status"].lower() == "enable"
        compute_host_update(host=host, enabled=enabled, **({} if enabled else {"disabled_reason": None}))
        return Response({"host": host.name, "status": "enabled" if enabled else "disabled"})


class HostPowerActionView(_HostsView):
    def get(self, request, host_name: str, action: str):
        self.host(host_name, must_be_up=True)
        raise NotSupported()
