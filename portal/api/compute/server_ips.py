"""``GET /servers/{id}/ips`` and ``GET /servers/{id}/ips/{network}``: the server's addresses by network,
as the server's ``addresses`` shows them without the extended attributes (Nova's ``ips`` resource)."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import NotFound

from . import validation
from .server_views import server_addresses
from .servers import get_instance_or_404


class ServerIPsView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        return Response({"addresses": server_addresses(instance)})


class ServerNetworkIPsView(ComputeAPIView):
    def get(self, request, server_id, network):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        addresses = server_addresses(instance)
        if network not in addresses:
            raise NotFound("Instance is not a member of specified network")
        return Response({network: addresses[network]})
