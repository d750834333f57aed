"""The server actions that make images of a server's disk: ``createImage`` and ``createBackup``.

Both answer 202: from 2.45 with ``{"image_id"}``, before with a ``Location`` header naming the image
(a backup with rotation 0 has none, as it is not kept). A server booted from a volume is 400; the state
rules are createImage's (409).
"""

from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from rest_framework.response import Response

from portal.api.errors import BadRequest, Forbidden
from portal.services import actions as action_services
from portal.services import backups
from portal.services.images import ImageError, ImageForbidden, ImageQuotaExceeded

from . import validation
from .serializers import CreateBackupSerializer, CreateImageSerializer


def _image_location(image_id) -> str:
    return f"{settings.CLOUD['PUBLIC_URL']}/image/v2/images/{image_id}"


@contextmanager
def _image_errors():
    """The image services' refusals in the compute API's codes: its quota refusals are 403."""
    try:
        yield
    except (ImageForbidden, ImageQuotaExceeded) as exc:
        raise Forbidden(str(exc)) from None
    except ImageError as exc:
        raise BadRequest(str(exc)) from None


def _accepted(request, image, *, located: bool = True) -> Response:
    if request.api_version >= "2.45":
        return Response({"image_id": str(image.id)}, status=202)
    response = Response(status=202)
    if located:
        response["Location"] = _image_location(image.id)
    return response


class ImageActionsMixin:
    """Handlers of ``ServerActionView`` (``action_<name>``), which maps the services' common errors."""

    def action_createImage(self, request, instance, args):  # noqa: N802
        data = validation.action_args(CreateImageSerializer, args, request)
        with _image_errors():
            image = action_services.instance_snapshot(
                ctx=self.ctx, instance=instance, name=data["name"], metadata=data.get("metadata")
            )
        return _accepted(request, image)

    def action_createBackup(self, request, instance, args):  # noqa: N802
        if isinstance(args, dict):
            validation.reject_unknown(args, {"name", "backup_type", "rotation", "metadata"}, "createBackup")
        data = validation.action_args(CreateBackupSerializer, args, request)
        with _image_errors():
            image = backups.instance_backup(
                ctx=self.ctx,
                instance=instance,
                name=data["name"],
                backup_type=data["backup_type"],
                rotation=data["rotation"],
                metadata=data.get("metadata"),
            )
        # A rotation of 0 keeps no backup, so there is nothing to point at.
        return _accepted(request, image, located=data["rotation"] > 0)
