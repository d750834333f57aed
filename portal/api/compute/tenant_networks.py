"""``/os-tenant-networks``: the compute API's proxy of the networks a project may put servers on, until 2.35
(from 2.36, 404, as the compute API answers).

Listed are the caller's usable networks of the cloud's network controller (its project's own and the shared
ones that are not external; in "user" network mode, first the one network servers that ask for nothing are
on); shown is any network the caller can see. Each has the proxy's three fields: ``id``, ``label`` (the
network's name) and ``cidr``, a string, the network's first subnet here where the compute API with Neutron
always says ``"None"``. Creating and deleting networks through the compute API ended with nova-network: both
are 410 at every version, as the compute API answers.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import APIError, NotFound
from portal.selectors.networks import network_get, networks_usable

from .networks import servers_network_id

_LAST_VERSION = "2.35"


class Gone(APIError):
    status_code = 410
    default_detail = "This resource is no longer available.  No forwarding address is given."


def tenant_network_body(network=None) -> dict:
    """The proxy's shape of the controller's ``network``, or of the user-mode one when None."""
    if network is None:
        return {"id": servers_network_id(), "cidr": "None", "label": settings.CLOUD["NETWORK"]["label"]}
    subnet = next(iter(network.subnets.all()), None)
    return {"id": str(network.pk), "cidr": str(subnet.cidr) if subnet else "None", "label": network.name}


def _user_mode() -> bool:
    return settings.CLOUD["NETWORK"]["mode"] == "user"


class TenantNetworkListView(ComputeAPIView):
    def get(self, request):
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")
        bodies = [tenant_network_body()] if _user_mode() else []
        bodies += [tenant_network_body(n) for n in networks_usable(self.ctx).prefetch_related("subnets")]
        return Response({"networks": bodies})

    def post(self, request):
        raise Gone()


class TenantNetworkView(ComputeAPIView):
    def get(self, request, network_id: str):
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")
        if _user_mode() and network_id == servers_network_id():
            return Response({"network": tenant_network_body()})
        network = network_get(self.ctx, network_id)
        if network is None:
            raise NotFound("Network not found")
        return Response({"network": tenant_network_body(network)})

    def delete(self, request, network_id: str):
        raise Gone()
