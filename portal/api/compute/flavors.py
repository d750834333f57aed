"""``/flavors``: list, detail, show; create, update (2.55) and delete for admins.

Shapes per microversion: ``description`` from 2.55, ``extra_specs`` in detailed views from 2.61,
``swap`` as a number (0 rather than "") from 2.75; from 2.102 a ``name`` filter (a regular expression, as
the compute API's), and no more ``rxtx_factor`` or ``OS-FLV-DISABLED:disabled`` (in the views, the
create body or the sort keys).
"""

from __future__ import annotations

import re

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.selectors.flavors import flavor_get, flavors_listed
from portal.services import flavors as flavor_services

from . import validation
from .links import collection_next, links
from .params import bool_param, int_param, paginate

_FLAVOR_ID = re.compile(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$")


def flavor_summary(flavor, request) -> dict:
    body = {"id": flavor.flavorid, "name": flavor.name, "links": links("flavors", flavor.flavorid)}
    if request.api_version >= "2.55":
        body["description"] = flavor.description
    return body


def flavor_detail(flavor, request) -> dict:
    version = request.api_version
    body = {
        "id": flavor.flavorid,
        "name": flavor.name,
        "ram": flavor.memory_mb,
        "vcpus": flavor.vcpus,
        "disk": flavor.root_gb,
        "swap": flavor.swap if version >= "2.75" else (flavor.swap or ""),
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": flavor.disabled,
        "os-flavor-access:is_public": flavor.is_public,
        "rxtx_factor": flavor.rxtx_factor,
        "links": links("flavors", flavor.flavorid),
    }
    if version >= "2.102":
        del body["OS-FLV-DISABLED:disabled"], body["rxtx_factor"]
    if version >= "2.55":
        body["description"] = flavor.description
    if version >= "2.61":
        body["extra_specs"] = dict(flavor.extra_specs)
    return body


_SORT_KEYS = {
    "flavorid": "flavorid",
    "id": "id",
    "name": "name",
    "memory_mb": "memory_mb",
    "vcpus": "vcpus",
    "root_gb": "root_gb",
    "swap": "swap",
    "ephemeral_gb": "ephemeral_gb",
    "created_at": "created_at",
    "description": "description",
    "disabled": "disabled",
    "is_public": "is_public",
    "rxtx_factor": "rxtx_factor",  # until 2.102
}

_LIST_QUERY = {"limit", "marker", "is_public", "minRam", "minDisk", "sort_key", "sort_dir"}
_CREATE_FIELDS = {"name", "id", "ram", "vcpus", "disk", "OS-FLV-EXT-DATA:ephemeral", "swap", "rxtx_factor"}
_CREATE_FIELDS |= {"os-flavor-access:is_public"}


def _flavor_create_args(data: dict, version) -> dict:
    allowed = _CREATE_FIELDS | ({"description"} if version >= "2.55" else set())
    if version >= "2.102":
        allowed = allowed - {"rxtx_factor"}
    validation.reject_unknown(data, allowed, "flavor")
    for required in ("name", "ram", "vcpus", "disk"):
        if required not in data:
            raise BadRequest(f"Invalid input for field/attribute flavor: '{required}' is a required property.")
    flavorid = data.get("id")
    if flavorid is not None:
        if isinstance(flavorid, bool) or not isinstance(flavorid, str | int | float):
            raise BadRequest("Invalid input for field/attribute id: must be a string, a number or null.")
        flavorid = str(flavorid)
        if not 1 <= len(flavorid) <= 255 or not _FLAVOR_ID.match(flavorid):
            raise BadRequest(
                "Invalid input for field/attribute id: 1 to 255 of letters, digits, '.', '_', '-' and inner spaces."
            )
    rxtx = data.get("rxtx_factor", 1.0)
    try:
        rxtx_value = float(rxtx) if not isinstance(rxtx, bool) else None
    except (TypeError, ValueError):
        rxtx_value = None
    # Nova's bounds: above 0, at most what its database's FLOAT holds.
    if rxtx_value is None or not 0 < rxtx_value <= 3.40282e38:
        raise BadRequest("Invalid input for field/attribute rxtx_factor: must be a number greater than 0.")
    return {
        "name": validation.name(data["name"]),
        "flavorid": flavorid,
        "memory_mb": validation.integer(data["ram"], "ram", minimum=1),
        "vcpus": validation.integer(data["vcpus"], "vcpus", minimum=1),
        "root_gb": validation.integer(data["disk"], "disk"),
        "ephemeral_gb": validation.integer(data.get("OS-FLV-EXT-DATA:ephemeral", 0), "OS-FLV-EXT-DATA:ephemeral"),
        "swap": validation.integer(data.get("swap", 0), "swap"),
        "rxtx_factor": rxtx_value,
        "is_public": validation.boolean(data.get("os-flavor-access:is_public", True), "os-flavor-access:is_public"),
        "description": validation.description(data.get("description")),
    }


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error:
        raise BadRequest("Invalid regular expression in the name filter.") from None
    return value


class FlavorListView(ComputeAPIView):
    detail = False

    def get(self, request):
        version = request.api_version
        validation.known_query(request, _LIST_QUERY | ({"name"} if version >= "2.102" else set()), since="2.75")
        is_public = bool_param(request, "is_public", default=True, allow_none=True)
        name = _regex(request.GET["name"]) if version >= "2.102" and request.GET.get("name") else None
        min_ram = int_param(request, "minRam")
        min_disk = int_param(request, "minDisk")
        sort_key = request.GET.get("sort_key", "flavorid")
        sort_dir = request.GET.get("sort_dir", "asc")
        if sort_key == "rxtx_factor" and version >= "2.102":
            raise BadRequest("Invalid sort_key or sort_dir.")
        if sort_key not in _SORT_KEYS or sort_dir not in ("asc", "desc"):
            raise BadRequest("Invalid sort_key or sort_dir.")
        order = ("-" if sort_dir == "desc" else "") + _SORT_KEYS[sort_key]
        query = flavors_listed(
            self.ctx, is_public=is_public, name=name, min_ram=min_ram, min_disk=min_disk, order_by=(order, "id")
        )
        page, limit, more = paginate(request, query, marker_field="flavorid")
        render = flavor_detail if self.detail else flavor_summary
        body = {"flavors": [render(f, request) for f in page]}
        if more:
            body["flavors_links"] = collection_next(
                "flavors/detail" if self.detail else "flavors", page[-1].flavorid, limit, request
            )
        return Response(body)

    def post(self, request):
        if self.detail:
            raise NotFound()
        self.require_admin()
        args = _flavor_create_args(validation.body_object(request, "flavor"), request.api_version)
        try:
            flavor = flavor_services.flavor_create(**args)
        except flavor_services.FlavorConflict as exc:
            raise Conflict(str(exc)) from None
        return Response({"flavor": flavor_detail(flavor, request)})


class FlavorDetailListView(FlavorListView):
    detail = True


def get_flavor_or_404(view, flavor_id):
    flavor = flavor_get(view.ctx, flavor_id)
    if flavor is None:
        raise NotFound(f"Flavor {flavor_id[:255]} could not be found.")
    return flavor


class FlavorView(ComputeAPIView):
    def get(self, request, flavor_id):
        validation.known_query(request, set(), since="2.102")
        return Response({"flavor": flavor_detail(get_flavor_or_404(self, flavor_id), request)})

    def put(self, request, flavor_id):
        if request.api_version < "2.55":
            raise NotFound()
        self.require_admin()
        data = validation.body_object(request, "flavor")
        validation.reject_unknown(data, {"description"}, "flavor")
        if "description" not in data:
            raise BadRequest("Invalid input for field/attribute flavor: 'description' is a required property.")
        description = validation.description(data["description"])
        flavor = get_flavor_or_404(self, flavor_id)
        flavor = flavor_services.flavor_update(flavor=flavor, description=description)
        return Response({"flavor": flavor_detail(flavor, request)})

    def delete(self, request, flavor_id):
        self.require_admin()
        flavor_services.flavor_delete(flavor=get_flavor_or_404(self, flavor_id))
        return Response(status=202)
