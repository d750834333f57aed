"""``/v2.0/routers``, with ``add_router_interface`` and ``remove_router_interface``."""

from __future__ import annotations

from rest_framework import status as http
from rest_framework.response import Response

from portal.selectors import routers as selectors
from portal.services import routers as services
from portal.services.network_errors import BadRequest, PolicyNotAuthorized, RouterNotFound

from . import shapes
from .resources import ResourceView, only_empty, unrecognized

ROUTER_CREATE = {
    *("name", "description", "admin_state_up", "external_gateway_info", "project_id", "tenant_id"),
    *("tags", "routes", "distributed", "ha", "availability_zone_hints", "flavor_id", "enable_ndp_proxy"),
}
# What this cloud's routers do not have: accepted only empty (a centralised router, no HA, no routes).
ROUTER_UNSUPPORTED = ("tags", "routes", "distributed", "ha", "availability_zone_hints", "flavor_id", "enable_ndp_proxy")
ADMIN_ONLY = ("distributed", "ha")


class _RouterView(ResourceView):
    collection, member, attrs = "routers", "router", shapes.ROUTER_ATTRS

    def visible(self):
        return selectors.routers_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.router_body(row, self.is_admin)

    def prefetch(self, rows: list) -> None:
        shapes.attach_gateway_ips(rows)

    def get_router(self, router_id: str):
        router = selectors.router_get(self.ctx, router_id)
        if router is None:
            raise RouterNotFound(router_id[:64])
        return router

    def unsupported(self, attrs: dict, action: str) -> None:
        for name in ADMIN_ONLY:
            if name in attrs and not self.is_admin:
                raise PolicyNotAuthorized(f"(rule:{action}_router:{name}) is disallowed by policy")
        only_empty(attrs, ROUTER_UNSUPPORTED)


class RoutersView(_RouterView):
    def get(self, request):
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, ROUTER_CREATE)
        self.unsupported(attrs, "create")
        project = self.target_project(attrs)
        return services.router_create(
            project=project,
            user_is_admin=self.is_admin,
            name=attrs.get("name", ""),
            description=attrs.get("description", ""),
            admin_state_up=attrs.get("admin_state_up", True),
            external_gateway_info=attrs.get("external_gateway_info"),
        )


class RouterView(_RouterView):
    def get(self, request, router_id: str):
        return self.show_response(self.get_router(router_id))

    def put(self, request, router_id: str):
        self.require_write()
        router = self.get_router(router_id)
        changes = dict(self.body_of("router"))
        self.unsupported(changes, "update")
        router = services.router_update(
            router=router, project=router.project, user_is_admin=self.is_admin, changes=changes
        )
        return self.show_response(router)

    def delete(self, request, router_id: str):
        self.require_write()
        services.router_delete(router=self.get_router(router_id))
        return Response(status=http.HTTP_204_NO_CONTENT)


class _InterfaceView(_RouterView):
    def interface_args(self) -> dict:
        data = self.request.data
        if not isinstance(data, dict):
            raise BadRequest("Resource body required: expected an object with subnet_id or port_id.")
        unrecognized(data, {"subnet_id", "port_id"})
        return {"subnet_id": data.get("subnet_id"), "port_id": data.get("port_id")}


class RouterAddInterfaceView(_InterfaceView):
    def put(self, request, router_id: str):
        self.require_write()
        router = self.get_router(router_id)
        body = services.router_add_interface(
            router=router, project=self.ctx.project, user_is_admin=self.is_admin, **self.interface_args()
        )
        return Response(body)


class RouterRemoveInterfaceView(_InterfaceView):
    def put(self, request, router_id: str):
        self.require_write()
        router = self.get_router(router_id)
        body = services.router_remove_interface(
            router=router, project=self.ctx.project, user_is_admin=self.is_admin, **self.interface_args()
        )
        return Response(body)
