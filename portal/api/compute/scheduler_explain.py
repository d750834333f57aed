"""``POST /os-scheduler-explain`` (admins): where a boot would be placed now, and why hosts would not do.

An extension of this cloud, not part of Nova's API. The body is the one ``POST /servers`` takes
(``server.flavorRef``, ``server.imageRef``, ``server.availability_zone`` including ``zone:host``,
``server.host``, ``server.hypervisor_hostname``, ``server.max_count`` and ``os:scheduler_hints``), plus
an optional top-level ``project_id`` to ask on another project's behalf. Nothing is created or claimed.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest
from portal.selectors.flavors import flavor_get
from portal.selectors.hosts import explain_placement
from portal.selectors.images import image_get
from portal.selectors.server_groups import server_group_get

from .requested_hosts import host_request, split_availability_zone
from .scheduler_hints import scheduler_hints

MAX_COUNT = 100


def _text(value, name: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise BadRequest(f"'{name}' is a required property.")
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise BadRequest(f"Invalid input for field/attribute {name}: must be a string of at most 255 characters.")
    return value


class SchedulerExplainView(ComputeAPIView):
    def post(self, request):
        self.require_admin()
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise BadRequest("The request body must be an object with a 'server' object.")
        server = body["server"]

        flavor_ref = _text(server.get("flavorRef"), "flavorRef", required=True)
        flavor = flavor_get(self.ctx, flavor_ref)
        if flavor is None:
            raise BadRequest(f"Flavor {flavor_ref[:64]} could not be found.")
        image = None
        image_ref = _text(server.get("imageRef"), "imageRef")
        if image_ref is not None:
            image = image_get(ctx=self.ctx, image_id=image_ref.rstrip("/").rsplit("/", 1)[-1])
            if image is None:
                raise BadRequest(f"Image {image_ref[:64]} could not be found.")
        zone, forced_host, forced_node = split_availability_zone(
            _text(server.get("availability_zone"), "availability_zone")
        )
        requested = host_request(
            self.ctx,
            forced_host=forced_host,
            forced_node=forced_node,
            host=_text(server.get("host"), "host"),
            node=_text(server.get("hypervisor_hostname"), "hypervisor_hostname"),
        )
        if requested is not None and requested.forced:
            zone = None  # as a boot does: a forced host ignores the zone part
        count = server.get("max_count", server.get("min_count", 1))
        if isinstance(count, str) and count.isdigit():
            count = int(count)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
            raise BadRequest(f"Invalid input for field/attribute max_count: must be an integer from 1 to {MAX_COUNT}.")

        hints = scheduler_hints(body)
        group = None
        if hints.get("group"):
            group = server_group_get(self.ctx, hints["group"])
            if group is None:
                raise BadRequest(f"Invalid server group {hints['group']}: it could not be found.")
        project_id = _text(body.get("project_id"), "project_id") or self.ctx.project.pk

        placement = explain_placement(
            flavor=flavor,
            image=image,
            project_id=project_id,
            availability_zone=zone,
            scheduler_hints=hints,
            group=group,
            count=count,
            requested_host=requested.host if requested is not None else None,
            force_host=requested is not None and requested.forced,
        )
        return Response({"placement": placement})
