"""``GET /os-orphan-domains`` (admins): domains on the hypervisors that no instance accounts for.

An extension of this cloud (Nova only logs them): what each host's last heartbeat reported that the
cloud did not make, and domains of instances that are deleted or live elsewhere, which the conductor
asks the host to remove. ``?host=`` narrows it to one host.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.selectors.orphans import orphan_domains

from .times import iso_z


class OrphanDomainsView(ComputeAPIView):
    def get(self, request):
        self.require_admin()
        rows = orphan_domains(host=request.GET.get("host"))
        return Response({"orphan_domains": [{**row, "reported_at": iso_z(row["reported_at"])} for row in rows]})
