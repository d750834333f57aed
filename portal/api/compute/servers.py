"""``/servers``: create, list (filters, sorting, keyset pages), show, update, delete.

The representation of a server per microversion is in ``server_views``.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, Forbidden, NotFound
from portal.selectors import security_groups as group_selectors
from portal.selectors.availability_zones import available_zone_names, default_zone
from portal.selectors.flavors import flavor_get
from portal.selectors.images import image_get
from portal.selectors.instances import instance_get, instance_shown
from portal.selectors.keypairs import keypair_get
from portal.selectors.server_groups import server_group_get
from portal.selectors.server_list import ForbiddenQuery, InvalidQuery, server_page
from portal.services import instance_ports, instance_properties
from portal.services import instances as instance_services
from portal.services.instance_ports import NetworkRequestError
from portal.services.lifecycle import StateConflict
from portal.services.quotas import QuotaExceeded

from . import validation
from .boot_volumes import resolve_boot_volumes, user_token
from .links import collection_next
from .requested_hosts import host_request, split_availability_zone
from .scheduler_hints import scheduler_hints
from .serializers import ServerCreateSerializer, ServerUpdateSerializer
from .server_filters import server_query
from .server_views import ServerViews, server_brief, server_detail, server_summary


class ServerListView(ComputeAPIView):
    detail = False

    def get(self, request):
        query = server_query(request, self.ctx)
        try:
            page, more = server_page(self.ctx, query)
        except InvalidQuery as exc:
            raise BadRequest(str(exc)) from None
        except ForbiddenQuery as exc:
            raise Forbidden(str(exc)) from None
        if self.detail:
            request.server_list = True
            group_selectors.attach_server_group_names(page)
            views = ServerViews(request, self.ctx)
            servers = [views.detail(i) for i in page]
        else:
            servers = [server_summary(i) for i in page]
        body = {"servers": servers}
        if more and page:
            body["servers_links"] = collection_next(
                "servers/detail" if self.detail else "servers", page[-1].uuid, query.limit, request
            )
        return Response(body)

    def post(self, request):
        self.require_write()
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise BadRequest("The request body must be an object with a 'server' object.")
        serializer = ServerCreateSerializer(data=body["server"], context={"api_version": request.api_version})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        hints = scheduler_hints(body)
        # Policy first, as in Nova: naming a host is an admin's privilege whatever else the request holds.
        zone, forced_host, forced_node = split_availability_zone(data.get("availability_zone"))
        requested = host_request(
            self.ctx,
            forced_host=forced_host,
            forced_node=forced_node,
            host=data.get("host"),
            node=data.get("hypervisor_hostname"),
        )
        flavor = flavor_get(self.ctx, data["flavorRef"])
        if flavor is None:
            raise BadRequest(f"Flavor {data['flavorRef'][:64]} could not be found.")
        image = None
        if data["imageRef"]:  # empty when the root disk is a volume
            image = image_get(ctx=self.ctx, image_id=data["imageRef"])
            if image is None:
                raise BadRequest(f"Image {data['imageRef'][:64]} could not be found.")
        keypair = None
        if data.get("key_name"):
            keypair = keypair_get(self.ctx.user, data["key_name"])
            if keypair is None:
                raise BadRequest(f"Invalid key_name provided: key pair {data['key_name'][:64]} could not be found.")
        group = None
        if "group" in hints:
            group = server_group_get(self.ctx, hints["group"])
            if group is None:
                raise BadRequest(f"Invalid server group {hints['group']}: it could not be found.")
        # As in Nova, a forced host ignores the zone part: the server takes its host's zone.
        zone = None if requested is not None and requested.forced else self._zone(zone)
        try:
            tags = instance_properties.validate_tags(data.get("tags", []))
        except instance_services.InvalidRequest as exc:
            raise BadRequest(str(exc)) from None
        security_groups = self._security_groups(data.get("security_groups"))
        max_count = data.get("max_count", data.get("min_count", 1))
        boot_volumes = resolve_boot_volumes(self, data["boot_volumes"], flavor=flavor, count=max_count)
        spec = instance_services.ServerSpec(
            name=data["name"],
            flavor=flavor,
            image=image,
            networks=data.get("networks", "auto"),
            user_data=data.get("user_data"),
            personality=data.get("personality", ()),
            keypair=keypair,
            metadata=data.get("metadata"),
            description=data.get("description"),
            availability_zone=zone,
            hostname=data.get("hostname") or "",
            access_ip_v4=data.get("accessIPv4", ""),
            access_ip_v6=data.get("accessIPv6", ""),
            tags=tags,
            scheduler_hints=hints,
            server_group=group,
            config_drive=data.get("config_drive", False),
            block_devices=boot_volumes,
            user_token=user_token(self.request),
            requested_host=requested.host if requested is not None else "",
            force_host=requested is not None and requested.forced,
            security_groups=security_groups,
        )
        try:
            created = instance_services.servers_create(
                ctx=self.ctx, spec=spec, min_count=data.get("min_count", max_count), max_count=max_count
            )
        except instance_services.InvalidRequest as exc:
            raise BadRequest(str(exc)) from None
        except QuotaExceeded as exc:
            raise Forbidden(str(exc)) from None
        except NetworkRequestError as exc:
            raise {403: Forbidden, 409: Conflict}.get(exc.status, BadRequest)(str(exc)) from None
        if data.get("return_reservation_id"):
            return Response({"reservation_id": created[0].reservation_id}, status=202)
        first = created[0]
        server = {**server_summary(first), "OS-DCF:diskConfig": "MANUAL"}
        del server["name"]
        if first.networks != "none":
            names = group_selectors.server_group_names(first) if first.networks == "ports" else ["default"]
            if names:
                server["security_groups"] = [{"name": n} for n in names]
        return Response({"server": server}, status=202)

    def _security_groups(self, requested) -> tuple:
        """``security_groups: [{"name": ...}]``: the caller's project's groups (by name or id), or 400."""
        if requested is None:
            return ()
        names = []
        for entry in requested:
            name = entry.get("name")
            if not isinstance(name, str) or not name or len(name) > 255:
                raise BadRequest("Invalid input for field/attribute security_groups: each takes a 'name'.")
            names.append(name)
        try:
            return instance_ports.security_groups_named(self.ctx, names)
        except instance_ports.SecurityGroupRequestError as exc:
            raise BadRequest(str(exc)) from None

    def _zone(self, zone: str | None) -> str | None:
        """The zone asked for, which must be the default zone or an available one; None for any."""
        if not zone:
            return None
        if zone != default_zone() and zone not in available_zone_names():
            raise BadRequest(f"The requested availability zone is not available: {zone[:64]}")
        return zone


class ServerDetailListView(ServerListView):
    detail = True

    def post(self, request):
        raise NotFound()


def get_instance_or_404(view, server_id):
    instance = instance_get(view.ctx, server_id)
    if instance is None:
        raise NotFound(f"Instance {str(server_id)[:64]} could not be found.")
    return instance


class ServerView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        instance = instance_shown(self.ctx, server_id)
        if instance is None:
            raise NotFound(f"Instance {str(server_id)[:64]} could not be found.")
        return Response({"server": server_detail(instance, request, self.ctx)})

    def put(self, request, server_id):
        self.require_write()
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise BadRequest("The request body must be an object with a 'server' object.")
        serializer = ServerUpdateSerializer(data=body["server"], context={"api_version": request.api_version})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        instance = get_instance_or_404(self, server_id)
        changes = {}
        for field in ("description", "pinned_availability_zone"):
            if field in data:
                changes[field] = data[field]
        try:
            instance = instance_properties.instance_update(
                ctx=self.ctx,
                instance=instance,
                name=data.get("name"),
                hostname=data.get("hostname"),
                access_ip_v4=data.get("accessIPv4"),
                access_ip_v6=data.get("accessIPv6"),
                **changes,
            )
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        instance = get_instance_or_404(self, server_id)
        return Response({"server": server_brief(instance, request, self.ctx)})

    def delete(self, request, server_id):
        self.require_write()
        instance = get_instance_or_404(self, server_id)
        try:
            instance_services.instance_delete(ctx=self.ctx, instance=instance)
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(status=204)
