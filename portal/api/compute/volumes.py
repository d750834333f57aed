"""``/os-volumes`` and ``/os-snapshots``: the compute API's proxies of the project's Cinder volumes and
snapshots (list, detail, show, create, delete), until 2.35 (from 2.36, 404, as the compute API answers).
Nova's shapes: camelCase names, and an unattached volume's ``attachments`` is ``[{}]``."""

from __future__ import annotations

from rest_framework.response import Response

from portal.ids import is_uuid
from portal.services import volumes
from portal.services.cinder import BlockStorageError

from ..base import ComputeAPIView
from ..errors import BadRequest, NotFound
from . import validation
from .boot_volumes import block_storage_error, user_token

_LAST_VERSION = "2.35"
_CREATE_FIELDS = {
    "size",
    "display_name",
    "display_description",
    "volume_type",
    "metadata",
    "availability_zone",
    "snapshot_id",
}


def volume_body(volume: dict) -> dict:
    attachments = [
        {
            "id": attachment.get("attachment_id") or volume["id"],
            "volumeId": volume["id"],
            "serverId": attachment.get("server_id"),
            "device": attachment.get("device"),
        }
        for attachment in volume.get("attachments") or ()
    ]
    return {
        "id": volume["id"],
        "status": volume.get("status"),
        "size": volume.get("size"),
        "availabilityZone": volume.get("availability_zone"),
        "createdAt": volume.get("created_at"),
        "attachments": attachments or [{}],
        "displayName": volume.get("name"),
        "displayDescription": volume.get("description"),
        "volumeType": volume.get("volume_type"),
        "snapshotId": volume.get("snapshot_id"),
        "metadata": volume.get("metadata") or {},
    }


class _VolumesView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")

    def cinder(self, call, **kwargs):
        """``call`` (a volume service) for the caller's project, as the caller; its refusals in the API's
        envelope."""
        try:
            return call(ctx=self.ctx, user_token=user_token(self.request), **kwargs)
        except BlockStorageError as exc:
            raise block_storage_error(exc) from None
        except volumes.VolumeRequestError as exc:
            raise BadRequest(str(exc)) from None


def _item_id(value: str, what: str) -> str:
    if not is_uuid(value):
        raise NotFound(f"{what} {value[:64]} could not be found.")
    return value


def _size(value) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= validation.MAX_INT:
        raise BadRequest("Invalid input for field/attribute size: must be a whole number of GiB, at least 1.")
    return value


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise BadRequest(f"Invalid input for field/attribute {key}: must be a string of at most 255 characters.")
    return value


def _metadata(value) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and 1 <= len(k) <= 255 and len(v) <= 255 for k, v in value.items()
    ):
        raise BadRequest("Invalid input for field/attribute metadata: must be an object of strings.")
    return value


class VolumeListView(_VolumesView):
    def get(self, request):
        return Response({"volumes": [volume_body(v) for v in self.cinder(volumes.project_volumes)]})

    def post(self, request):
        self.require_write()
        body = validation.body_object(request, "volume")
        validation.reject_unknown(body, _CREATE_FIELDS, "the volume")
        if "size" not in body:
            raise BadRequest("Invalid input for field/attribute volume: 'size' is a required property.")
        for key in ("volume_type", "availability_zone", "snapshot_id"):
            if body.get(key) is not None:
                raise BadRequest(f"Invalid input for field/attribute {key}: not offered by this cloud's volume proxy.")
        made = self.cinder(
            volumes.project_volume_create,
            size=_size(body["size"]),
            name=_text(body, "display_name"),
            description=_text(body, "display_description"),
            metadata=_metadata(body.get("metadata")),
        )
        return Response({"volume": volume_body(made)})


class VolumeDetailListView(VolumeListView):
    def post(self, request):
        raise NotFound("The resource could not be found.")


class VolumeView(_VolumesView):
    def get(self, request, volume_id):
        volume = self.cinder(volumes.project_volume, volume_id=_item_id(volume_id, "Volume"))
        return Response({"volume": volume_body(volume)})

    def delete(self, request, volume_id):
        self.require_write()
        self.cinder(volumes.project_volume_delete, volume_id=_item_id(volume_id, "Volume"))
        return Response(status=202)


# --- /os-snapshots ------------------------------------------------------------------------------------


def snapshot_body(snapshot: dict) -> dict:
    return {
        "id": snapshot["id"],
        "volumeId": snapshot.get("volume_id"),
        "status": snapshot.get("status"),
        "size": snapshot.get("size"),
        "createdAt": snapshot.get("created_at"),
        "displayName": snapshot.get("name"),
        "displayDescription": snapshot.get("description"),
    }


class SnapshotListView(_VolumesView):
    def get(self, request):
        return Response({"snapshots": [snapshot_body(s) for s in self.cinder(volumes.project_snapshots)]})

    def post(self, request):
        self.require_write()
        body = validation.body_object(request, "snapshot")
        validation.reject_unknown(body, {"volume_id", "force", "display_name", "display_description"}, "the snapshot")
        volume_id = body.get("volume_id")
        if not isinstance(volume_id, str) or not is_uuid(volume_id):
            raise BadRequest("Invalid input for field/attribute volume_id: must be a volume's UUID.")
        made = self.cinder(
            volumes.project_snapshot_create,
            volume_id=volume_id,
            force=validation.boolean(body["force"], "force") if "force" in body else False,
            name=_text(body, "display_name"),
            description=_text(body, "display_description"),
        )
        return Response({"snapshot": snapshot_body(made)})


class SnapshotDetailListView(SnapshotListView):
    def post(self, request):
        raise NotFound("The resource could not be found.")


class SnapshotView(_VolumesView):
    def get(self, request, snapshot_id):
        snapshot = self.cinder(volumes.project_snapshot, snapshot_id=_item_id(snapshot_id, "Snapshot"))
        return Response({"snapshot": snapshot_body(snapshot)})

    def delete(self, request, snapshot_id):
        self.require_write()
        self.cinder(volumes.project_snapshot_delete, snapshot_id=_item_id(snapshot_id, "Snapshot"))
        return Response(status=202)
