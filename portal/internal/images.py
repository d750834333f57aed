"""Image files for compute hosts, which hold no credentials: the signed URL is the whole authorisation."""

from __future__ import annotations

import logging
import uuid

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from portal.services.images import DownloadDenied, ImageNotFound, image_file_path, image_for_download

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    name = "forbidden" if status == 403 else "itemNotFound"
    return JsonResponse({name: {"code": status, "message": message}}, status=status)


@require_GET
def image_file(request: HttpRequest, image_id: uuid.UUID) -> HttpResponse:
    try:
        image = image_for_download(image_id=image_id, signature=request.GET.get("sig", ""))
    except DownloadDenied as exc:
        return _error(403, str(exc))
    except ImageNotFound as exc:
        return _error(404, str(exc))
    try:
        data = open(image_file_path(image), "rb")  # noqa: SIM115 - FileResponse closes it
    except FileNotFoundError:
        log.error("Image %s is active but its file is missing", image.id)
        return _error(404, f"The data of image {image.id} could not be found.")
    response = FileResponse(data, content_type="application/octet-stream")
    response["Content-MD5"] = image.checksum or ""
    response["Cache-Control"] = "private, no-store"
    return response
