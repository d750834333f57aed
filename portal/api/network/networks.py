"""``/v2.0/networks``."""

from __future__ import annotations

from rest_framework import status as http
from rest_framework.response import Response

from portal.selectors import networks as selectors
from portal.services import networks as services
from portal.services.network_errors import (
    NetworkNotFound,
    PolicyNotAuthorized,
)

from . import shapes
from .resources import ResourceView, only_empty, unrecognized

NETWORK_CREATE = {
    "name",
    "description",
    "admin_state_up",
    "shared",
    "router:external",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "mtu",
    "port_security_enabled",
    "project_id",
    "tenant_id",
    "availability_zone_hints",
    "qos_policy_id",
    "dns_domain",
}


class _NetworkView(ResourceView):
    collection, member, attrs = "networks", "network", shapes.NETWORK_ATTRS

    def visible(self):
        return selectors.networks_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.network_body(row, self.is_admin)

    def get_network(self, network_id: str):
        network = selectors.network_get(self.ctx, network_id)
        if network is None:
            raise NetworkNotFound(network_id[:64])
        return network

    def require_owner(self, network, action: str) -> None:
        if not self.is_admin and network.project_id != self.ctx.project.pk:
            raise PolicyNotAuthorized(f"(rule:{action}_network) is disallowed by policy")


class NetworksView(_NetworkView):
    def get(self, request):
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, NETWORK_CREATE)
        only_empty(attrs, ("availability_zone_hints", "qos_policy_id", "dns_domain"))
        project = self.target_project(attrs)
        return services.network_create(
            project=project,
            user_is_admin=self.is_admin,
            name=attrs.get("name", ""),
            description=attrs.get("description", ""),
            admin_state_up=attrs.get("admin_state_up", True),
            shared=attrs.get("shared", False),
            external=attrs.get("router:external", False),
            network_type=attrs.get("provider:network_type"),
            physical_network=attrs.get("provider:physical_network"),
            segmentation_id=attrs.get("provider:segmentation_id"),
            mtu=attrs.get("mtu"),
            port_security_enabled=attrs.get("port_security_enabled", True),
        )


class NetworkView(_NetworkView):
    def get(self, request, network_id: str):
        return self.show_response(self.get_network(network_id))

    def put(self, request, network_id: str):
        self.require_write()
        network = self.get_network(network_id)
        self.require_owner(network, "update")
        network = services.network_update(network=network, user_is_admin=self.is_admin, changes=self.body_of("network"))
        return self.show_response(network)

    def delete(self, request, network_id: str):
        self.require_write()
        network = self.get_network(network_id)
        self.require_owner(network, "delete")
        services.network_delete(network=network)
        return Response(status=http.HTTP_204_NO_CONTENT)
