"""``/os-hypervisors`` (admins): one hypervisor per compute host.

Shapes per microversion: ``cpu_info`` a JSON string until 2.27 and an object from 2.28; ``limit``/
``marker`` paging with ``hypervisors_links`` from 2.33; from 2.53 ids are UUIDs, the
``hypervisor_hostname_pattern`` and ``with_servers`` query parameters replace the ``search`` and
``servers`` routes (404 from 2.53); from 2.88 ``uptime`` is part of the detailed view, the resource
fields and ``/statistics`` are gone and ``/uptime`` is 404.
"""

from __future__ import annotations

import json

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import APIError, BadRequest, NotFound
from portal.ids import is_uuid
from portal.selectors.compute_hosts import compute_host_get, compute_hosts, host_servers, host_usages
from portal.selectors.hosts import host_is_up

from . import validation
from .links import collection_next
from .params import bool_param, paginate


class NotImplementedByHost(APIError):
    status_code = 501
    default_detail = "Action is not supported."


def _id(host, version):
    return str(host.uuid) if version >= "2.53" else host.pk


def _cpu_info(host, version):
    info = {"arch": host.cpu_arch} if host.cpu_arch else {}
    return info if version >= "2.28" else json.dumps(info)


def hypervisor_body(host, request, *, detail: bool, usage=None, servers=None, with_servers: bool = False) -> dict:
    version = request.api_version
    body = {
        "id": _id(host, version),
        "hypervisor_hostname": host.name,
        "state": "up" if host_is_up(host) else "down",
        "status": "enabled" if host.enabled else "disabled",
    }
    if detail:
        body["hypervisor_type"] = host.hypervisor_type
        body["hypervisor_version"] = host.hypervisor_version
        body["host_ip"] = host.host_ip
        body["service"] = {"id": _id(host, version), "host": host.name, "disabled_reason": host.disabled_reason or None}
        if version < "2.88":
            body.update(_resources(host, usage))
            body["cpu_info"] = _cpu_info(host, version)
        else:
            body["uptime"] = host.uptime or None
    if servers:
        body["servers"] = [{"name": s.name, "uuid": str(s.uuid)} for s in servers]
    elif with_servers and version >= "2.75":
        body["servers"] = []
    return body


def _resources(host, usage) -> dict:
    free_disk = host.disk_gb - usage.local_gb_used
    return {
        "vcpus": host.vcpus,
        "memory_mb": host.memory_mb,
        "local_gb": host.disk_gb,
        "vcpus_used": usage.vcpus_used,
        "memory_mb_used": usage.memory_mb_used,
        "local_gb_used": usage.local_gb_used,
        "free_ram_mb": host.memory_mb - usage.memory_mb_used,
        "free_disk_gb": free_disk,
        "current_workload": usage.current_workload,
        "running_vms": usage.running_vms,
        "disk_available_least": free_disk,
    }


class _HypervisorView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.require_admin()

    def host(self, request, hypervisor_id: str):
        """The host a hypervisor id names: a UUID from 2.53 (400 otherwise), an integer before (404 otherwise)."""
        if request.api_version >= "2.53":
            if not is_uuid(hypervisor_id):
                raise BadRequest(f"Invalid uuid {hypervisor_id[:64]}")
            host = compute_host_get(uuid=hypervisor_id)
        else:
            host = None
            if hypervisor_id.isdigit() and int(hypervisor_id) <= validation.MAX_INT:
                host = compute_host_get(pk=int(hypervisor_id))
        if host is None:
            raise NotFound(f"Hypervisor with ID '{hypervisor_id[:64]}' could not be found.")
        return host

    def render(self, request, hosts, *, detail: bool, servers: bool = False, with_servers: bool = False) -> list:
        ids = [h.pk for h in hosts]
        usages = host_usages(ids) if detail and request.api_version < "2.88" else {}
        held = host_servers(ids) if servers or with_servers else {}
        return [
            hypervisor_body(
                h, request, detail=detail, usage=usages.get(h.pk), servers=held.get(h.pk), with_servers=with_servers
            )
            for h in hosts
        ]


def _matching(pattern: str) -> list:
    hosts = list(compute_hosts().filter(name__icontains=pattern))
    if not hosts:
        raise NotFound(f"No hypervisor matching '{pattern[:64]}' could be found.")
    return hosts


class HypervisorListView(_HypervisorView):
    detail = False

    def get(self, request):
        version = request.api_version
        validation.known_query(
            request, {"limit", "marker", "hypervisor_hostname_pattern", "with_servers"}, since="2.53"
        )
        pattern = request.GET.get("hypervisor_hostname_pattern") if version >= "2.53" else None
        with_servers = bool(bool_param(request, "with_servers", default=False)) if version >= "2.53" else False
        body = {}
        if pattern is not None:
            if "limit" in request.GET or "marker" in request.GET:
                raise BadRequest(
                    "Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported."
                )
            hosts = _matching(pattern)
        elif version >= "2.33":
            query = compute_hosts()
            hosts, limit, more = paginate(request, query, marker_field="uuid" if version >= "2.53" else "pk")
            if more:
                kind = "os-hypervisors/detail" if self.detail else "os-hypervisors"
                body["hypervisors_links"] = collection_next(kind, _id(hosts[-1], version), limit, request)
        else:
            hosts = list(compute_hosts())
        body = {"hypervisors": self.render(request, hosts, detail=self.detail, with_servers=with_servers), **body}
        return Response(body)


class HypervisorDetailListView(HypervisorListView):
    detail = True


class HypervisorView(_HypervisorView):
    def get(self, request, hypervisor_id):
        with_servers = False
        validation.known_query(request, {"with_servers"}, since="2.53")
        if request.api_version >= "2.53":
            with_servers = bool(bool_param(request, "with_servers", default=False))
        host = self.host(request, hypervisor_id)
        return Response({"hypervisor": self.render(request, [host], detail=True, with_servers=with_servers)[0]})


class HypervisorUptimeView(_HypervisorView):
    def get(self, request, hypervisor_id):
        if request.api_version >= "2.88":
            raise NotFound()
        host = self.host(request, hypervisor_id)
        if not host_is_up(host):
            raise BadRequest(f"Compute service of {host.name} is unavailable at this time.")
        if not host.uptime:
            raise NotImplementedByHost(f"Host {host.name} does not report its uptime.")
        body = hypervisor_body(host, request, detail=False)
        body["uptime"] = host.uptime
        return Response({"hypervisor": body})


class HypervisorSearchView(_HypervisorView):
    servers = False

    def get(self, request, pattern):
        if request.api_version >= "2.53":
            raise NotFound()
        hosts = _matching(pattern)
        return Response({"hypervisors": self.render(request, hosts, detail=False, servers=self.servers)})


class HypervisorServersView(HypervisorSearchView):
    servers = True


class HypervisorStatisticsView(_HypervisorView):
    def get(self, request):
        if request.api_version >= "2.88":
            raise NotFound()
        hosts = list(compute_hosts().filter(enabled=True))
        usages = host_usages([h.pk for h in hosts])
        totals = {
            "count": len(hosts),
            "vcpus": 0,
            "memory_mb": 0,
            "local_gb": 0,
            "vcpus_used": 0,
            "memory_mb_used": 0,
            "local_gb_used": 0,
            "free_ram_mb": 0,
            "free_disk_gb": 0,
            "current_workload": 0,
            "running_vms": 0,
            "disk_available_least": 0,
        }
        for host in hosts:
            for key, value in _resources(host, usages[host.pk]).items():
                totals[key] += value
        return Response({"hypervisor_statistics": totals})
