"""``/os-networks``: the compute API's proxy of the networks a project can use, as Nova answers it until
2.35 (from 2.36, 404): the networks of the network controller the caller can see. When the cloud's
network mode is "user" (no network controller for servers that ask for nothing particular), the one
network every such server's NIC is on (QEMU user-mode networking), labelled ``CLOUD["NETWORK"]["label"]``,
comes first."""

from __future__ import annotations

import uuid

from django.conf import settings
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import NotFound
from portal.selectors.networks import network_get, networks_visible

# Nova shows these with a value only for nova-network, long gone: null for everyone.
_FIELDS = ("cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6", "gateway_v6", "netmask_v6")
_ADMIN_FIELDS = (
    *("created_at", "updated_at", "deleted_at", "deleted", "injected", "bridge", "vlan", "vpn_public_address"),
    *("vpn_public_port", "vpn_private_address", "dhcp_start", "project_id", "host", "bridge_interface"),
    *("multi_host", "priority", "rxtx_base", "mtu", "dhcp_server", "enable_dhcp", "share_address"),
)
_LAST_VERSION = "2.35"


def servers_network_id() -> str:
    """A stable id for the servers' network, derived from its label."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"compute-network:{settings.CLOUD['NETWORK']['label']}"))


def network_body(is_admin: bool, network=None) -> dict:
    """A network as the proxy shows it: the controller's ``network``, or the user-mode one."""
    if network is None:
        body = {"id": servers_network_id(), "label": settings.CLOUD["NETWORK"]["label"]}
    else:
        body = {"id": str(network.pk), "label": network.name}
    for field in _FIELDS + (_ADMIN_FIELDS if is_admin else ()):
        body[field] = None
    if network is not None:
        subnet = next(iter(network.subnets.all()), None)
        if subnet is not None:
            body["cidr"] = subnet.cidr
        if is_admin:
            body["mtu"] = network.mtu
            body["project_id"] = network.project_id
    return body


def _user_mode() -> bool:
    return settings.CLOUD["NETWORK"]["mode"] == "user"


class _NetworksView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")


class NetworkListView(_NetworksView):
    def get(self, request):
        bodies = [network_body(self.ctx.is_admin)] if _user_mode() else []
        bodies += [network_body(self.ctx.is_admin, n) for n in networks_visible(self.ctx).order_by("created_at")]
        return Response({"networks": bodies})


class NetworkView(_NetworksView):
    def get(self, request, network_id: str):
        if _user_mode() and network_id == servers_network_id():
            return Response({"network": network_body(self.ctx.is_admin)})
        network = network_get(self.ctx, network_id)
        if network is None:
            raise NotFound("Network not found")
        return Response({"network": network_body(self.ctx.is_admin, network)})
