"""``block_device_mapping_v2`` entries with a volume destination, turned into the boot's volumes.

The serializer checked each entry's shape; here the images they name are looked up (as the caller may see
them), sizes are checked against the images, and the existing volumes are checked with Cinder before the
server is accepted: a missing volume is 404, one in use or of the wrong kind 400, Cinder down 409.
"""

from __future__ import annotations

from portal.auth.keystone_authentication import TokenScope
from portal.selectors.images import image_get
from portal.services import volumes
from portal.services.cinder import BlockStorageError
from portal.services.instances import InvalidRequest, check_image_fits

from ..errors import APIError, BadRequest

GIB = 1024**3


def user_token(request) -> str | None:
    """The caller's Keystone token, when that is how they authenticated: Cinder is then asked as them."""
    if isinstance(getattr(request, "auth", None), TokenScope):
        return request.headers.get("X-Auth-Token") or None
    return None


def block_storage_error(exc: Exception) -> APIError:
    """A Cinder refusal (or our own about volumes) in the compute API's envelope, with its status."""
    error = APIError(str(exc))
    error.status_code = getattr(exc, "status", 400)
    return error


def resolve_boot_volumes(view, entries: list[dict], *, flavor, count: int) -> list[volumes.BootVolume]:
    request = view.request
    resolved = []
    for entry in entries:
        image = None
        if entry["source_type"] == "image":
            image = image_get(ctx=view.ctx, image_id=entry["uuid"])
            if image is None:
                raise BadRequest(f"Image {entry['uuid'][:64]} could not be found.")
            size = int(entry["volume_size"])
            try:
                check_image_fits(image, memory_mb=flavor.memory_mb, root_gb=size, disk="The volume")
            except InvalidRequest as exc:
                raise BadRequest(str(exc)) from None
        if entry["source_type"] == "volume" and count > 1:
            raise BadRequest("Cannot attach one or more volumes to multiple instances.")
        resolved.append(
            volumes.BootVolume(
                source_type=entry["source_type"],
                boot_index=entry["boot_index"],
                volume_id=entry["uuid"] if entry["source_type"] == "volume" else "",
                image=image,
                volume_size=entry["volume_size"],
                delete_on_termination=entry["delete_on_termination"],
                tag=entry["tag"],
            )
        )
    try:
        volumes.boot_volumes_check(project_id=view.ctx.project.pk, volumes=resolved, user_token=user_token(request))
    except (BlockStorageError, volumes.VolumeRequestError) as exc:
        raise block_storage_error(exc) from None
    return resolved
