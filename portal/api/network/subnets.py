"""``/v2.0/subnets``."""

from __future__ import annotations

from rest_framework import status as http
from rest_framework.response import Response

from portal.selectors import networks as selectors
from portal.services import networks as services
from portal.services.network_errors import (
    BadRequest,
    NetworkNotFound,
    PolicyNotAuthorized,
    SubnetNotFound,
)

from . import shapes
from .resources import ResourceView, only_empty, unrecognized

SUBNET_CREATE = {
    "name",
    "description",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
    "project_id",
    "tenant_id",
    "subnetpool_id",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "service_types",
    "use_default_subnet_pool",
    "segment_id",
    "prefixlen",
}


class _SubnetView(ResourceView):
    collection, member, attrs = "subnets", "subnet", shapes.SUBNET_ATTRS

    def visible(self):
        return selectors.subnets_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.subnet_body(row, self.is_admin)

    def get_subnet(self, subnet_id: str):
        subnet = selectors.subnet_get(self.ctx, subnet_id)
        if subnet is None:
            raise SubnetNotFound(subnet_id[:64])
        return subnet

    def require_owner(self, subnet, action: str) -> None:
        mine = self.ctx.project.pk in (subnet.project_id, subnet.network.project_id)
        if not self.is_admin and not mine:
            raise PolicyNotAuthorized(f"(rule:{action}_subnet) is disallowed by policy")


class SubnetsView(_SubnetView):
    def get(self, request):
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, SUBNET_CREATE)
        only_empty(
            attrs,
            ("subnetpool_id", "ipv6_ra_mode", "ipv6_address_mode", "service_types", "use_default_subnet_pool"),
        )
        only_empty(attrs, ("segment_id", "prefixlen"))
        network_id = attrs.get("network_id")
        if not isinstance(network_id, str):
            raise BadRequest("Invalid input for network_id: a network id is required.")
        network = selectors.network_get(self.ctx, network_id)
        if network is None:
            raise NetworkNotFound(network_id[:64])
        if "cidr" not in attrs:
            raise BadRequest("Invalid input for cidr: a CIDR is required (subnet pools are not supported here).")
        project = self.target_project(attrs)
        return services.subnet_create(
            project=project,
            user_is_admin=self.is_admin,
            network=network,
            cidr=attrs["cidr"],
            ip_version=attrs.get("ip_version", 4),
            name=attrs.get("name", ""),
            description=attrs.get("description", ""),
            gateway_ip=attrs.get("gateway_ip", ...),
            allocation_pools=attrs.get("allocation_pools"),
            dns_nameservers=attrs.get("dns_nameservers"),
            host_routes=attrs.get("host_routes"),
            enable_dhcp=attrs.get("enable_dhcp", True),
        )


class SubnetView(_SubnetView):
    def get(self, request, subnet_id: str):
        return self.show_response(self.get_subnet(subnet_id))

    def put(self, request, subnet_id: str):
        self.require_write()
        subnet = self.get_subnet(subnet_id)
        self.require_owner(subnet, "update")
        return self.show_response(services.subnet_update(subnet=subnet, changes=self.body_of("subnet")))

    def delete(self, request, subnet_id: str):
        self.require_write()
        subnet = self.get_subnet(subnet_id)
        self.require_owner(subnet, "delete")
        services.subnet_delete(subnet=subnet)
        return Response(status=http.HTTP_204_NO_CONTENT)
