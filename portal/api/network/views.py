"""Networks, subnets and ports at ``/networking/v2.0``, plus version discovery and the extensions list."""

from __future__ import annotations

from django.db import transaction
from rest_framework import status as http
from rest_framework.response import Response

from portal.api.base import PublicAPIView
from portal.models import ComputeHost, Port
from portal.selectors import networks as selectors
from portal.services import networks as services
from portal.services import ports as port_services
from portal.services.network_errors import (
    BadRequest,
    NetworkNotFound,
    NotFound,
    PolicyNotAuthorized,
    PortNotFound,
    SubnetNotFound,
)
from portal.services.projects import project_by_id

from . import shapes
from .base import AlwaysJSON, NetworkingAPIView, service_url
from .extensions import EXTENSIONS
from .query import apply_filters, apply_sort, paginate, select_fields

MAX_BULK = 100


def _unrecognized(attrs: dict, allowed: set[str]) -> None:
    unknown = sorted(k for k in attrs if k not in allowed)
    if unknown:
        raise BadRequest(f"Unrecognized attribute(s) '{', '.join(u[:64] for u in unknown)}'")


def _only_empty(attrs: dict, names: tuple[str, ...]) -> None:
    """Attributes the API knows but this cloud does not implement: accepted only with their empty value."""
    for name in names:
        value = attrs.pop(name, None)
        if value not in (None, [], {}, "", "normal", False):
            raise BadRequest(f"Invalid input for {name}: this cloud does not support setting it.")


class VersionsView(PublicAPIView):
    """``GET /networking/``: the one version, as Neutron answers at its root."""

    content_negotiation_class = AlwaysJSON

    def get(self, request):
        return Response(
            {
                "versions": [
                    {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{service_url()}/v2.0/"}]}
                ]
            }
        )


class V2RootView(NetworkingAPIView):
    """``GET /networking/v2.0/``: the collections this version has."""

    def get(self, request):
        resources = [("network", "networks"), ("subnet", "subnets"), ("port", "ports"), ("quota", "quotas")]
        return Response(
            {
                "resources": [
                    {
                        "name": name,
                        "collection": collection,
                        "links": [{"rel": "self", "href": f"{service_url()}/v2.0/{collection}"}],
                    }
                    for name, collection in resources
                ]
            }
        )


class ExtensionsView(NetworkingAPIView):
    def get(self, request):
        return Response({"extensions": list(EXTENSIONS.values())})


class ExtensionView(NetworkingAPIView):
    def get(self, request, alias: str):
        extension = EXTENSIONS.get(alias)
        if extension is None:
            raise NotFound(f"Extension with alias {alias[:64]} does not exist")
        return Response({"extension": extension})


class _ResourceView(NetworkingAPIView):
    """A collection (``member`` = None) or one member of networks, subnets or ports."""

    collection = ""
    member = ""
    attrs: dict = {}
    special_filters: dict = {}

    def visible(self):
        raise NotImplementedError

    def body(self, row) -> dict:
        raise NotImplementedError

    def list_response(self, request) -> Response:
        params = request.query_params
        rows = apply_filters(self.visible(), params, self.attrs, is_admin=self.is_admin, special=self.special_filters)
        rows = apply_sort(rows, params, self.attrs, is_admin=self.is_admin)
        page, links = paginate(rows, params, self.collection_url(self.collection), self.collection)
        body = {self.collection: [select_fields(self.body(row), params) for row in page]}
        if links:
            body[f"{self.collection}_links"] = links
        return Response(body)

    def show_response(self, row, status=http.HTTP_200_OK) -> Response:
        fresh = self.visible().get(pk=row.pk)
        return Response({self.member: select_fields(self.body(fresh), self.request.query_params)}, status=status)

    def create_response(self, request, create_one) -> Response:
        """One member under ``<member>``, or several under ``<collection>`` (all or none)."""
        self.require_write()
        data = request.data
        if isinstance(data, dict) and isinstance(data.get(self.collection), list):
            items = data[self.collection]
            if not items or len(items) > MAX_BULK or not all(isinstance(i, dict) for i in items):
                raise BadRequest(f"Bulk create takes 1 to {MAX_BULK} objects under '{self.collection}'.")
            with transaction.atomic():
                rows = [create_one(dict(item)) for item in items]
            bodies = [self.body(self.visible().get(pk=row.pk)) for row in rows]
            return Response({self.collection: bodies}, status=http.HTTP_201_CREATED)
        row = create_one(dict(self.body_of(self.member)))
        return self.show_response(row, status=http.HTTP_201_CREATED)

    def target_project(self, attrs: dict):
        """The project a new resource belongs to: the caller's, or (admins only) the one the body names."""
        named = {attrs.pop(k) for k in ("project_id", "tenant_id") if k in attrs}
        if len(named) > 1:
            raise BadRequest("'project_id' and 'tenant_id' do not match")
        if not named or named == {self.ctx.project.pk}:
            return self.ctx.project
        if not self.is_admin:
            raise BadRequest(
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires "
                "admin privileges"
            )
        project_id = named.pop()
        project = project_by_id(project_id) if isinstance(project_id, str) else None
        if project is None:
            raise BadRequest(f"Project {str(project_id)[:64]} is not a project of this cloud.")
        return project


# --- networks -----------------------------------------------------------------------------------------

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


class _NetworkView(_ResourceView):
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
        _unrecognized(attrs, NETWORK_CREATE)
        _only_empty(attrs, ("availability_zone_hints", "qos_policy_id", "dns_domain"))
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


# --- subnets ------------------------------------------------------------------------------------------

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


class _SubnetView(_ResourceView):
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
        _unrecognized(attrs, SUBNET_CREATE)
        _only_empty(
            attrs,
            ("subnetpool_id", "ipv6_ra_mode", "ipv6_address_mode", "service_types", "use_default_subnet_pool"),
        )
        _only_empty(attrs, ("segment_id", "prefixlen"))
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


# --- ports --------------------------------------------------------------------------------------------

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
PORT_UNSUPPORTED = ("binding:vnic_type", "binding:profile", "allowed_address_pairs", "extra_dhcp_opts", "qos_policy_id")


def _host_named(value):
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadRequest("Invalid input for binding:host_id: must be a host name.")
    host = ComputeHost.objects.filter(name=value).first()
    if host is None:
        raise BadRequest(f"Invalid input for binding:host_id: {value[:64]} is not a compute host of this cloud.")
    return host


class _PortView(_ResourceView):
    collection, member, attrs = "ports", "port", shapes.PORT_ATTRS
    special_filters = {"fixed_ips": shapes.fixed_ips_filter}

    def visible(self):
        return selectors.ports_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.port_body(row, self.is_admin)

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
        _unrecognized(attrs, PORT_CREATE)
        _only_empty(attrs, PORT_UNSUPPORTED)
        _only_empty(attrs, ("security_groups", "dns_name"))
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
        )


class PortView(_PortView):
    def get(self, request, port_id: str):
        return self.show_response(self.get_port(port_id))

    def put(self, request, port_id: str):
        self.require_write()
        port = self.get_port(port_id)
        changes = dict(self.body_of("port"))
        _only_empty(changes, PORT_UNSUPPORTED)
        _only_empty(changes, ("security_groups", "dns_name"))
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
        port_services.port_delete(port=port)
        return Response(status=http.HTTP_204_NO_CONTENT)
