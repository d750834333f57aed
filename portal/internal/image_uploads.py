"""Snapshot uploads from compute hosts: ``PUT /internal/images/<id>/upload?sig=…``, the signed URL the
host was given with its snapshot task. The signature is the whole authorisation."""

from __future__ import annotations

import logging
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from portal.services.image_uploads import image_for_snapshot_upload
from portal.services.images import (
    DownloadDenied,
    ImageConflict,
    ImageNotFound,
    ImageTooLarge,
    InvalidImage,
    image_upload,
)

log = logging.getLogger(__name__)


_FAULTS = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest", 413: "overLimit"}


def _error(status: int, message: str) -> JsonResponse:
    name = _FAULTS.get(status, "computeFault")
    return JsonResponse({name: {"code": status, "message": message}}, status=status)


@csrf_exempt
@require_http_methods(["PUT"])
def snapshot_upload(request: HttpRequest, image_id: uuid.UUID) -> HttpResponse:
    try:
        image = image_for_snapshot_upload(image_id=image_id, signature=request.GET.get("sig", ""))
    except DownloadDenied as exc:
        return _error(403, str(exc))
    except ImageNotFound as exc:
        return _error(404, str(exc))
    length = request.META.get("CONTENT_LENGTH")
    if not length or not length.isdigit():
        return _error(411, "A snapshot upload must say its Content-Length.")
    try:
        image_upload(image=image, stream=request, expected_size=int(length))
    except ImageConflict as exc:
        return _error(409, str(exc))
    except ImageTooLarge as exc:
        return _error(413, str(exc))
    except InvalidImage as exc:
        return _error(400, str(exc))
    log.info("Snapshot data for image %s received (%s bytes)", image.id, length)
    return HttpResponse(status=204)
