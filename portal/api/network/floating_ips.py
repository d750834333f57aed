"""``/v2.0/floatingips``."""

from __future__ import annotations

from rest_framework import status as http
from rest_framework.response import Response

from portal.selectors import networks as network_selectors
from portal.selectors import routers as selectors
from portal.services import floating_ips as services
from portal.services.network_errors import BadRequest, FloatingIPNotFound, NetworkNotFound, PortNotFound

from . import shapes
from .resources import ResourceView, only_empty, unrecognized

FLOATING_IP_CREATE = {
    *("floating_network_id", "floating_ip_address", "subnet_id", "port_id", "fixed_ip_address", "description"),
    *("project_id", "tenant_id", "tags", "qos_policy_id", "dns_name", "dns_domain"),
}
FLOATING_IP_UNSUPPORTED = ("tags", "qos_policy_id", "dns_name", "dns_domain")


class _FloatingIPView(ResourceView):
    collection, member, attrs = "floatingips", "floatingip", shapes.FLOATING_IP_ATTRS

    def visible(self):
        return selectors.floating_ips_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.floating_ip_body(row, self.is_admin)

    def get_floating_ip(self, floating_ip_id: str):
        floating_ip = selectors.floating_ip_get(self.ctx, floating_ip_id)
        if floating_ip is None:
            raise FloatingIPNotFound(floating_ip_id[:64])
        return floating_ip

    def port_named(self, port_id):
        if port_id is None:
            return None
        if not isinstance(port_id, str):
            raise BadRequest("Invalid input for port_id: must be a port id or null.")
        port = network_selectors.port_get(self.ctx, port_id)
        if port is None:
            raise PortNotFound(port_id[:64])
        return port


class FloatingIPsView(_FloatingIPView):
    def get(self, request):
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, FLOATING_IP_CREATE)
        only_empty(attrs, FLOATING_IP_UNSUPPORTED)
        network_id = attrs.get("floating_network_id")
        if not isinstance(network_id, str):
            raise BadRequest("Invalid input for floating_network_id: a network id is required.")
        network = network_selectors.network_get(self.ctx, network_id)
        if network is None:
            raise NetworkNotFound(network_id[:64])
        project = self.target_project(attrs)
        return services.floating_ip_create(
            project=project,
            user_is_admin=self.is_admin,
            floating_network=network,
            floating_ip_address=attrs.get("floating_ip_address"),
            subnet_id=attrs.get("subnet_id"),
            port=self.port_named(attrs.get("port_id")),
            fixed_ip_address=attrs.get("fixed_ip_address"),
            description=attrs.get("description", ""),
        )


class FloatingIPView(_FloatingIPView):
    def get(self, request, floating_ip_id: str):
        return self.show_response(self.get_floating_ip(floating_ip_id))

    def put(self, request, floating_ip_id: str):
        self.require_write()
        floating_ip = self.get_floating_ip(floating_ip_id)
        changes = dict(self.body_of("floatingip"))
        only_empty(changes, FLOATING_IP_UNSUPPORTED)
        if "port_id" in changes:
            changes["port_id"] = self.port_named(changes["port_id"])
        floating_ip = services.floating_ip_update(
            floating_ip=floating_ip, project=floating_ip.project, user_is_admin=self.is_admin, changes=changes
        )
        return self.show_response(floating_ip)

    def delete(self, request, floating_ip_id: str):
        self.require_write()
        services.floating_ip_delete(floating_ip=self.get_floating_ip(floating_ip_id))
        return Response(status=http.HTTP_204_NO_CONTENT)
