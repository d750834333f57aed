"""``/servers/{id}/os-volume_attachments``: a server's Cinder volumes, attach (POST) and detach (DELETE).

Microversions: ``tag`` in the request from 2.49 and in the answer from 2.70; ``delete_on_termination`` in
both from 2.79; ``PUT`` updates ``delete_on_termination`` from 2.85 (before, ``PUT`` is the admin's volume
swap, which this cloud does not do); from 2.89 an attachment shows ``attachment_id`` and ``bdm_uuid`` and
no longer ``id``. The attach answers 200 with the attachment once Cinder reserved the volume and the host
was asked to plug it in (from 2.101, 202 with no body, as the compute API then answers); the volume turns
``in-use`` when the host reports it done.
"""

from __future__ import annotations

import uuid

from rest_framework import serializers
from rest_framework.response import Response

from portal.ids import as_uuid
from portal.selectors.volumes import instance_volume, instance_volumes
from portal.services import volumes
from portal.services.cinder import BlockStorageError
from portal.services.lifecycle import StateConflict

from ..base import ComputeAPIView
from ..errors import BadRequest, Conflict, Forbidden, NotFound
from .boot_volumes import block_storage_error, user_token
from .params import int_param
from .serializers import VersionedSerializer, _flexible_bool
from .servers import get_instance_or_404

_TAG_FORBIDDEN = (",", "/")


def _uuid(value: str, what: str = "volumeId") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise serializers.ValidationError(f"{what} must be a UUID") from None


class AttachSerializer(VersionedSerializer):
    since = {"tag": "2.49", "delete_on_termination": "2.79"}

    volumeId = serializers.CharField(max_length=64)  # noqa: N815
    device = serializers.CharField(required=False, allow_null=True, max_length=255)
    tag = serializers.CharField(required=False, max_length=60)
    delete_on_termination = serializers.JSONField(required=False)

    def validate_volumeId(self, value: str) -> str:  # noqa: N802
        return _uuid(value)

    def validate_tag(self, value: str) -> str:
        if any(ch in value for ch in _TAG_FORBIDDEN):
            raise serializers.ValidationError("must not contain ',' or '/'")
        return value

    def validate_delete_on_termination(self, value) -> bool:
        return _flexible_bool(value)


class UpdateSerializer(VersionedSerializer):
    since = {"delete_on_termination": "2.85"}

    volumeId = serializers.CharField(max_length=64)  # noqa: N815
    delete_on_termination = serializers.JSONField(required=False)

    def validate_volumeId(self, value: str) -> str:  # noqa: N802
        return _uuid(value)

    def validate_delete_on_termination(self, value) -> bool:
        return _flexible_bool(value)


def attachment_view(mapping, instance, version) -> dict:
    body = {"device": mapping.device, "serverId": str(instance.uuid), "volumeId": mapping.volume_id}
    if version < "2.89":
        body["id"] = mapping.volume_id
    if version >= "2.70":
        body["tag"] = mapping.tag
    if version >= "2.79":
        body["delete_on_termination"] = mapping.delete_on_termination
    if version >= "2.89":
        body["attachment_id"] = mapping.attachment_id or None
        body["bdm_uuid"] = str(mapping.uuid)
    return body


def _body(request, name: str = "volumeAttachment") -> dict:
    body = request.data
    if not isinstance(body, dict) or not isinstance(body.get(name), dict):
        raise BadRequest(f"The request body must be an object with a '{name}' object.")
    return body[name]


def _volume_errors(exc: Exception):
    if isinstance(exc, StateConflict):
        return Conflict(str(exc))
    return block_storage_error(exc)


class VolumeAttachmentListView(ComputeAPIView):
    def get(self, request, server_id):
        instance = get_instance_or_404(self, server_id)
        limit = int_param(request, "limit", minimum=0)
        offset = int_param(request, "offset", minimum=0) or 0
        mappings = instance_volumes(instance)[offset:]
        if limit is not None:
            mappings = mappings[:limit]
        version = request.api_version
        return Response({"volumeAttachments": [attachment_view(m, instance, version) for m in mappings]})

    def post(self, request, server_id):
        self.require_write()
        serializer = AttachSerializer(data=_body(request), context={"api_version": request.api_version})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        instance = get_instance_or_404(self, server_id)
        try:
            mapping = volumes.volume_attach(
                ctx=self.ctx,
                instance=instance,
                volume_id=data["volumeId"],
                device=data.get("device") or None,
                tag=data.get("tag"),
                delete_on_termination=data.get("delete_on_termination", False),
                user_token=user_token(request),
            )
        except (StateConflict, BlockStorageError, volumes.VolumeRequestError) as exc:
            raise _volume_errors(exc) from None
        if request.api_version >= "2.101":
            return Response(status=202)
        return Response({"volumeAttachment": attachment_view(mapping, instance, request.api_version)})


class VolumeAttachmentView(ComputeAPIView):
    def _mapping(self, instance, volume_id):
        mapping = instance_volume(instance, volume_id)
        if mapping is None:
            raise NotFound(f"Volume {str(volume_id)[:64]} is not attached to the instance {instance.uuid}.")
        return mapping

    def get(self, request, server_id, volume_id):
        instance = get_instance_or_404(self, server_id)
        mapping = self._mapping(instance, volume_id)
        return Response({"volumeAttachment": attachment_view(mapping, instance, request.api_version)})

    def put(self, request, server_id, volume_id):
        self.require_write()
        version = request.api_version
        serializer = UpdateSerializer(data=_body(request), context={"api_version": version})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        instance = get_instance_or_404(self, server_id)
        if version < "2.85" or as_uuid(data["volumeId"]) != as_uuid(volume_id):
            # A swap. As Nova's policy has it, only Cinder may ask (with the service role, while it migrates
            # the volume); no caller of this cloud holds that role.
            raise Forbidden("Policy doesn't allow os_compute_api:os-volumes-attachments:swap to be performed.")
        mapping = self._mapping(instance, volume_id)
        if "delete_on_termination" in data:
            try:
                volumes.volume_update(
                    ctx=self.ctx,
                    instance=instance,
                    volume_id=mapping.volume_id,
                    delete_on_termination=data["delete_on_termination"],
                )
            except (StateConflict, volumes.VolumeRequestError) as exc:
                raise _volume_errors(exc) from None
        return Response(status=202)

    def delete(self, request, server_id, volume_id):
        self.require_write()
        instance = get_instance_or_404(self, server_id)
        try:
            volumes.volume_detach(ctx=self.ctx, instance=instance, volume_id=str(volume_id))
        except (StateConflict, volumes.VolumeRequestError) as exc:
            raise _volume_errors(exc) from None
        return Response(status=202)
