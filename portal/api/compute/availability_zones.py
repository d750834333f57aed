"""``/os-availability-zone`` (everyone) and ``/os-availability-zone/detail`` (admins: hosts and the state
of their compute service)."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.selectors.availability_zones import zones
from portal.selectors.hosts import host_is_up

from . import validation
from .times import naive_iso

COMPUTE_BINARY = "nova-compute"


class AvailabilityZoneListView(ComputeAPIView):
    def get(self, request):
        validation.known_query(request, set(), since="2.102")
        info = [{"zoneName": z.name, "zoneState": {"available": z.available}, "hosts": None} for z in zones()]
        return Response({"availabilityZoneInfo": info})


class AvailabilityZoneDetailView(ComputeAPIView):
    def get(self, request):
        validation.known_query(request, set(), since="2.102")
        self.require_admin()
        info = []
        for zone in zones():
            hosts = None
            if zone.available:
                hosts = {
                    host.name: {
                        COMPUTE_BINARY: {
                            "available": host_is_up(host),
                            "active": host.enabled,
                            "updated_at": naive_iso(host.last_heartbeat),
                        }
                    }
                    for host in zone.hosts
                }
            info.append({"zoneName": zone.name, "zoneState": {"available": zone.available}, "hosts": hosts})
        return Response({"availabilityZoneInfo": info})
