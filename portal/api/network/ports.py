"""``/v2.0/ports``."""

from __future__ import annotations

import uuid

from rest_framework import status as http
from rest_framework.response import Response

from portal.models import ComputeHost, Port
from portal.selectors import networks as selectors
from portal.selectors import security_groups as group_selectors
from portal.services import ports as port_services
from portal.services.network_errors import (
    BadRequest,
    NetworkNotFound,
    PolicyNotAuthorized,
    PortNotFound,
    SecurityGroupNotFound,
    ServicePortInUse,
)

from . import shapes
from .resources import ResourceView, only_empty, unrecognized

PORT_CREATE = {
    "name",
    "description",
    "network_id",
    "admin_state_up",
    "mac_address",
    "fixed_ips",
    "device_id",
    "device_owner",
    "project_id",
    "tenant_id",
    "port_security_enabled",
    "binding:host_id",
    "binding:vnic_type",
    "binding:profile",
    "security_groups",
    "allowed_address_pairs",
    "extra_dhcp_opts",
    "qos_policy_id",
    "dns_name",
}
# The ports routers and floating IPs hold: theirs to change and delete, not the port API's.
SERVICE_OWNERS = (Port.OWNER_ROUTER_INTERFACE, Port.OWNER_ROUTER_GATEWAY, Port.OWNER_FLOATING_IP)
PORT_UNSUPPORTED = ("binding:vnic_type", "binding:profile", "allowed_address_pairs", "extra_dhcp_opts", "qos_policy_id")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _host_named(value):
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadRequest("Invalid input for binding:host_id: must be a host name.")
    host = ComputeHost.objects.filter(name=value).first()
    if host is None:
        raise BadRequest(f"Invalid input for binding:host_id: {value[:64]} is not a compute host of this cloud.")
    return host


class _PortView(ResourceView):
    collection, member, attrs = "ports", "port", shapes.PORT_ATTRS
    special_filters = {"fixed_ips": shapes.fixed_ips_filter}

    def visible(self):
        return selectors.ports_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.port_body(row, self.is_admin)

    def groups_named(self, value, project):
        """The groups a port's ``security_groups`` names (ids of groups of the port's project), or None."""
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest("Invalid input for security_groups: must be a list of security group ids.")
        groups = []
        for group_id in dict.fromkeys(value):
            if not _is_uuid(group_id):
                raise BadRequest(f"Invalid input for security_groups: '{group_id[:64]}' is not a valid UUID.")
            group = group_selectors.group_get(self.ctx, group_id)
            if group is None or (project is not None and group.project_id != project.pk):
                raise SecurityGroupNotFound(group_id[:64])
            groups.append(group)
        return groups

    def get_port(self, port_id: str):
        port = selectors.port_get(self.ctx, port_id)
        if port is None:
            raise PortNotFound(port_id[:64])
        return port


class PortsView(_PortView):
    def get(self, request):
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, PORT_CREATE)
        only_empty(attrs, PORT_UNSUPPORTED)
        only_empty(attrs, ("dns_name",))
        network_id = attrs.get("network_id")
        if not isinstance(network_id, str):
            raise BadRequest("Invalid input for network_id: a network id is required.")
        network = selectors.network_get(self.ctx, network_id)
        if network is None:
            raise NetworkNotFound(network_id[:64])
        project = self.target_project(attrs)
        if attrs.get("binding:host_id") not in (None, "") and not self.is_admin:
            raise PolicyNotAuthorized("(rule:create_port:binding:host_id) is disallowed by policy")
        return port_services.port_create(
            project=project,
            user_is_admin=self.is_admin,
            network=network,
            fixed_ips=attrs.get("fixed_ips"),
            mac_address=attrs.get("mac_address"),
            device_id=attrs.get("device_id", ""),
            device_owner=attrs.get("device_owner", ""),
            name=attrs.get("name", ""),
            description=attrs.get("description", ""),
            admin_state_up=attrs.get("admin_state_up", True),
            port_security_enabled=attrs.get("port_security_enabled"),
            host=_host_named(attrs.get("binding:host_id")),
            security_groups=self.groups_named(attrs.get("security_groups"), project),
        )


class PortView(_PortView):
    def get(self, request, port_id: str):
        return self.show_response(self.get_port(port_id))

    def put(self, request, port_id: str):
        self.require_write()
        port = self.get_port(port_id)
        changes = dict(self.body_of("port"))
        held = {"device_id", "device_owner", "fixed_ips", "mac_address", "binding:host_id"} & set(changes)
        if port.device_owner in SERVICE_OWNERS and held:
            raise BadRequest(
                f"Cannot update {', '.join(sorted(held))} of port {port.pk}: it belongs to its {port.device_owner}."
            )
        only_empty(changes, PORT_UNSUPPORTED)
        only_empty(changes, ("dns_name",))
        if "security_groups" in changes:
            changes["security_groups"] = self.groups_named(changes["security_groups"], port.project)
        if "binding:host_id" in changes:
            if not self.is_admin:
                raise PolicyNotAuthorized("(rule:update_port:binding:host_id) is disallowed by policy")
            changes["binding:host_id"] = _host_named(changes["binding:host_id"])
        port = port_services.port_update(
            port=port, user_is_admin=self.is_admin, project=self.ctx.project, changes=changes
        )
        return self.show_response(port)

    def delete(self, request, port_id: str):
        self.require_write()
        port = self.get_port(port_id)
        if port.device_owner == Port.OWNER_DHCP and not self.is_admin:
            raise PolicyNotAuthorized("(rule:delete_port) is disallowed by policy: the network's DHCP port")
        if port.device_owner in SERVICE_OWNERS:
            raise ServicePortInUse(port.pk, port.device_owner)  # its router or floating IP removes it
        port_services.port_delete(port=port)
        return Response(status=http.HTTP_204_NO_CONTENT)
