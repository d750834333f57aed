"""``/os-networks``: the compute API's proxy of the networks a project can use, as Nova answers it until
2.35 (from 2.36, 404). Here that is the one network every server's NIC is on (QEMU user-mode networking),
labelled ``CLOUD["NETWORK"]["label"]``; clients that find no network service in the catalog (the
``openstack`` CLI's ``server create --network <name>``) look networks up through it."""

from __future__ import annotations

import uuid

from django.conf import settings
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import NotFound

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


def network_body(is_admin: bool) -> dict:
    body = {"id": servers_network_id(), "label": settings.CLOUD["NETWORK"]["label"]}
    for field in _FIELDS + (_ADMIN_FIELDS if is_admin else ()):
        body[field] = None
    return body


class _NetworksView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")


class NetworkListView(_NetworksView):
    def get(self, request):
        return Response({"networks": [network_body(self.ctx.is_admin)]})


class NetworkView(_NetworksView):
    def get(self, request, network_id: str):
        if network_id != servers_network_id():
            raise NotFound("Network not found")
        return Response({"network": network_body(self.ctx.is_admin)})
