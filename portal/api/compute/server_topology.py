"""``GET /servers/{id}/topology`` (2.78): the server's NUMA topology. The hosts here report none for
their guests (no NUMA placement, no CPU pinning, no huge pages), so the answer is the one Nova gives for
a server without a NUMA topology."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import NotFound

from . import validation
from .servers import get_instance_or_404


class ServerTopologyView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        if request.api_version < "2.78":
            raise NotFound("The resource could not be found.")
        get_instance_or_404(self, server_id)
        return Response({"nodes": [], "pagesize_kb": None})
