"""``/servers/{id}/metadata`` and ``/servers/{id}/metadata/{key}``."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, Forbidden, NotFound
from portal.services import instance_properties
from portal.services.lifecycle import StateConflict
from portal.services.quotas import QuotaExceeded

from . import validation
from .serializers import MetadataBodySerializer, MetaItemSerializer
from .servers import get_instance_or_404


def _validated(serializer_class, request) -> dict:
    if not isinstance(request.data, dict):
        raise BadRequest("The request body must be an object.")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _update(view, request, server_id, metadata: dict, *, replace: bool) -> dict:
    view.require_write()
    instance = get_instance_or_404(view, server_id)
    try:
        return instance_properties.instance_metadata_update(
            ctx=view.ctx, instance=instance, metadata=metadata, replace=replace
        )
    except StateConflict as exc:
        raise Conflict(str(exc)) from None
    except QuotaExceeded as exc:
        raise Forbidden(str(exc)) from None


class ServerMetadataView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        return Response({"metadata": dict(instance.metadata)})

    def post(self, request, server_id):
        """Add or change the keys given; the others stay."""
        metadata = _validated(MetadataBodySerializer, request)["metadata"]
        return Response({"metadata": _update(self, request, server_id, metadata, replace=False)})

    def put(self, request, server_id):
        """Make the metadata exactly what is given."""
        metadata = _validated(MetadataBodySerializer, request)["metadata"]
        return Response({"metadata": _update(self, request, server_id, metadata, replace=True)})


class ServerMetadataItemView(ComputeAPIView):
    def get(self, request, server_id, key):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        if key not in instance.metadata:
            raise NotFound("Metadata item was not found")
        return Response({"meta": {key: instance.metadata[key]}})

    def put(self, request, server_id, key):
        meta = _validated(MetaItemSerializer, request)["meta"]
        if key not in meta:
            raise BadRequest("Request body and URI mismatch")
        _update(self, request, server_id, meta, replace=False)
        return Response({"meta": meta})

    def delete(self, request, server_id, key):
        self.require_write()
        instance = get_instance_or_404(self, server_id)
        try:
            instance_properties.instance_metadata_delete(ctx=self.ctx, instance=instance, key=key)
        except instance_properties.NotFound as exc:
            raise NotFound(str(exc)) from None
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(status=204)
