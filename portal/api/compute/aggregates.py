"""``/os-aggregates`` (admins): CRUD and the ``add_host``, ``remove_host`` and ``set_metadata`` actions,
and from microversion 2.81 ``POST /os-aggregates/{id}/images``, which has the aggregate's hosts pre-cache
images.

The aggregate's ``uuid`` appears from microversion 2.41; the id in URLs is always the integer id.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.ids import is_uuid
from portal.models import AVAILABILITY_ZONE_KEY, ComputeHost
from portal.selectors.aggregates import aggregate_get, aggregate_host_names, aggregates_all
from portal.selectors.images import image_get
from portal.services import aggregates as aggregate_services

from . import validation
from .times import naive_iso

_HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def aggregate_body(aggregate, request, *, full: bool = True) -> dict:
    body = {
        "id": aggregate.pk,
        "name": aggregate.name,
        "availability_zone": aggregate.availability_zone,
        "created_at": naive_iso(aggregate.created_at),
        "updated_at": naive_iso(aggregate.updated_at),
        "deleted_at": None,
        "deleted": False,
    }
    if full:
        body["hosts"] = aggregate_host_names(aggregate)
        body["metadata"] = dict(aggregate.metadata)
    if request.api_version >= "2.41":
        body["uuid"] = str(aggregate.uuid)
    return body


def _zone(value, field: str = "availability_zone") -> str | None:
    if value is None:
        return None
    return validation.name(value, field, forbid=":")


def _host_name(args, action: str) -> str:
    if not isinstance(args, dict):
        raise BadRequest(f"Invalid input for field/attribute {action}: must be an object.")
    validation.reject_unknown(args, {"host"}, action)
    host = args.get("host")
    if not isinstance(host, str) or not 1 <= len(host) <= 255 or not set(host) <= _HOST_CHARS:
        raise BadRequest(f"Invalid input for field/attribute host in {action}: must be a host name.")
    return host


class AggregateListView(ComputeAPIView):
    def get(self, request):
        validation.known_query(request, set(), since="2.102")
        self.require_admin()
        return Response({"aggregates": [aggregate_body(a, request) for a in aggregates_all()]})

    def post(self, request):
        self.require_admin()
        data = validation.body_object(request, "aggregate")
        validation.reject_unknown(data, {"name", "availability_zone"}, "aggregate")
        if "name" not in data:
            raise BadRequest("Invalid input for field/attribute aggregate: 'name' is a required property.")
        name = validation.name(data["name"])
        zone = _zone(data.get("availability_zone"))
        try:
            aggregate = aggregate_services.aggregate_create(name=name, availability_zone=zone)
        except aggregate_services.AggregateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response({"aggregate": aggregate_body(aggregate, request, full=False)})


class _AggregateView(ComputeAPIView):
    def aggregate(self, aggregate_id: str):
        if not aggregate_id.lstrip("-").isdigit():
            raise BadRequest("id must be an integer")
        # An integer no aggregate has (-1, or one past the column's range) is not found, as in Nova.
        number = int(aggregate_id)
        aggregate = aggregate_get(number) if 0 < number <= validation.MAX_INT else None
        if aggregate is None:
            raise NotFound(f"Aggregate {aggregate_id} could not be found.")
        return aggregate

    def render(self, request, aggregate):
        return Response({"aggregate": aggregate_body(aggregate_get(aggregate.pk), request)})


class AggregateView(_AggregateView):
    def get(self, request, aggregate_id):
        validation.known_query(request, set(), since="2.102")
        self.require_admin()
        return Response({"aggregate": aggregate_body(self.aggregate(aggregate_id), request)})

    def put(self, request, aggregate_id):
        self.require_admin()
        data = validation.body_object(request, "aggregate")
        validation.reject_unknown(data, {"name", "availability_zone"}, "aggregate")
        if not data:
            raise BadRequest("Invalid input for field/attribute aggregate: give 'name' or 'availability_zone'.")
        kwargs = {}
        if "name" in data:
            kwargs["name"] = validation.name(data["name"].strip() if isinstance(data["name"], str) else data["name"])
        if "availability_zone" in data:
            kwargs["availability_zone"] = _zone(data["availability_zone"])
        aggregate = self.aggregate(aggregate_id)
        try:
            aggregate = aggregate_services.aggregate_update(aggregate=aggregate, **kwargs)
        except aggregate_services.AggregateConflict as exc:
            raise Conflict(str(exc)) from None
        except aggregate_services.InvalidAggregateAction as exc:
            raise BadRequest(str(exc)) from None
        return self.render(request, aggregate)

    def delete(self, request, aggregate_id):
        self.require_admin()
        try:
            aggregate_services.aggregate_delete(aggregate=self.aggregate(aggregate_id))
        except aggregate_services.InvalidAggregateAction as exc:
            raise BadRequest(str(exc)) from None
        return Response(status=200)


class AggregateActionView(_AggregateView):
    def post(self, request, aggregate_id):
        name, args = validation.single_action(request)
        handler = {
            "add_host": self.add_host,
            "remove_host": self.remove_host,
            "set_metadata": self.set_metadata,
        }.get(name)
        if handler is None:
            raise BadRequest(f"There is no such action: {name[:64]}")
        self.require_admin()
        return handler(request, aggregate_id, args)

    def add_host(self, request, aggregate_id, args):
        host_name = _host_name(args, "add_host")
        aggregate = self.aggregate(aggregate_id)
        host = ComputeHost.objects.filter(name=host_name).first()
        if host is None:
            raise NotFound(f"Compute host {host_name} could not be found.")
        try:
            aggregate = aggregate_services.aggregate_add_host(aggregate=aggregate, host=host)
        except aggregate_services.AggregateConflict as exc:
            raise Conflict(str(exc)) from None
        return self.render(request, aggregate)

    def remove_host(self, request, aggregate_id, args):
        host_name = _host_name(args, "remove_host")
        aggregate = self.aggregate(aggregate_id)
        host = ComputeHost.objects.filter(name=host_name).first()
        if host is None:
            raise NotFound(f"Cannot remove host {host_name} in aggregate {aggregate_id}")
        try:
            aggregate = aggregate_services.aggregate_remove_host(aggregate=aggregate, host=host)
        except aggregate_services.AggregateHostNotFound as exc:
            raise NotFound(str(exc)) from None
        except aggregate_services.AggregateConflict as exc:
            raise Conflict(str(exc)) from None
        return self.render(request, aggregate)

    def set_metadata(self, request, aggregate_id, args):
        if not isinstance(args, dict):
            raise BadRequest("Invalid input for field/attribute set_metadata: must be an object.")
        validation.reject_unknown(args, {"metadata"}, "set_metadata")
        if "metadata" not in args:
            raise BadRequest("Invalid input for field/attribute set_metadata: 'metadata' is a required property.")
        metadata = validation.metadata(args["metadata"], allow_null=True)
        zone = metadata.get(AVAILABILITY_ZONE_KEY)
        if zone:
            _zone(zone)
        aggregate = self.aggregate(aggregate_id)
        try:
            aggregate = aggregate_services.aggregate_set_metadata(aggregate=aggregate, metadata=metadata)
        except aggregate_services.InvalidAggregateAction as exc:
            raise BadRequest(str(exc)) from None
        return self.render(request, aggregate)


class AggregateImagesView(_AggregateView):
    def post(self, request, aggregate_id):
        """``{"cache": [{"id": <image uuid>}, ...]}``: 202 with no body once every host that is up was asked."""
        if request.api_version < "2.81":
            raise NotFound("The resource could not be found.")
        self.require_admin()
        data = request.data
        if not isinstance(data, dict):
            raise BadRequest("Invalid input for field/attribute body: must be an object.")
        validation.reject_unknown(data, {"cache"}, "body")
        cache = data.get("cache")
        if not isinstance(cache, list) or not cache:
            raise BadRequest("Invalid input for field/attribute cache: a non-empty list of images is required.")
        image_ids = []
        for entry in cache:
            if not isinstance(entry, dict):
                raise BadRequest("Invalid input for field/attribute cache: each item must be an object.")
            validation.reject_unknown(entry, {"id"}, "cache")
            image_id = entry.get("id")
            if not isinstance(image_id, str) or not is_uuid(image_id):
                raise BadRequest("Invalid input for field/attribute id: each image id must be a UUID.")
            image_ids.append(image_id)
        if len(set(image_ids)) != len(image_ids):
            raise BadRequest("Duplicate images in request")
        aggregate = self.aggregate(aggregate_id)
        images = []
        for image_id in image_ids:
            image = image_get(ctx=self.ctx, image_id=image_id)
            if image is None:
                raise BadRequest(f"Image {image_id} could not be found.")
            images.append(image)
        try:
            aggregate_services.aggregate_cache_images(aggregate=aggregate, images=images)
        except aggregate_services.InvalidAggregateAction as exc:
            raise BadRequest(str(exc)) from None
        return Response(status=202)
