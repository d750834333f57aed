"""``/servers/{id}/tags`` and ``/servers/{id}/tags/{tag}`` (2.26 on)."""

from __future__ import annotations

from urllib.parse import quote

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.services import instance_properties
from portal.services.instances import InvalidRequest
from portal.services.lifecycle import StateConflict

from .links import base_url
from .serializers import TagsBodySerializer
from .server_views import instance_tags
from .servers import get_instance_or_404


class _TagsAPIView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version < "2.26":
            raise NotFound()

    def change(self, work):
        self.require_write()
        try:
            return work()
        except InvalidRequest as exc:
            raise BadRequest(str(exc)) from None
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        except instance_properties.NotFound as exc:
            raise NotFound(str(exc)) from None


class ServerTagsView(_TagsAPIView):
    def get(self, request, server_id):
        return Response({"tags": instance_tags(get_instance_or_404(self, server_id))})

    def put(self, request, server_id):
        """Replace every tag with the list given."""
        if not isinstance(request.data, dict):
            raise BadRequest("The request body must be an object with a 'tags' list.")
        serializer = TagsBodySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = get_instance_or_404(self, server_id)
        tags = self.change(
            lambda: instance_properties.instance_tags_replace(
                ctx=self.ctx, instance=instance, tags=serializer.validated_data["tags"]
            )
        )
        return Response({"tags": tags})

    def delete(self, request, server_id):
        instance = get_instance_or_404(self, server_id)
        self.change(lambda: instance_properties.instance_tags_clear(ctx=self.ctx, instance=instance))
        return Response(status=204)


class ServerTagView(_TagsAPIView):
    def get(self, request, server_id, tag):
        instance = get_instance_or_404(self, server_id)
        if tag not in instance_tags(instance):
            raise NotFound(f"Server {instance.uuid} has no tag '{tag[:80]}'")
        return Response(status=204)

    def put(self, request, server_id, tag):
        instance = get_instance_or_404(self, server_id)
        added = self.change(lambda: instance_properties.instance_tag_add(ctx=self.ctx, instance=instance, tag=tag))
        if not added:
            return Response(status=204)
        response = Response(status=201)
        response["Location"] = f"{base_url()}/v2.1/servers/{instance.uuid}/tags/{quote(tag, safe='')}"
        return response

    def delete(self, request, server_id, tag):
        instance = get_instance_or_404(self, server_id)
        self.change(lambda: instance_properties.instance_tag_remove(ctx=self.ctx, instance=instance, tag=tag))
        return Response(status=204)
