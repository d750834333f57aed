"""The metadata service for hosts' metadata agents: a guest's request, signed by the host it runs on."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from compute_tasks import metadata_content
from portal.services.metadata import MetadataRefused, metadata_answer


@csrf_exempt
def metadata(request: HttpRequest, path: str = "") -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _error(405, "the metadata service is read only")
    guest_path = "/" + path
    if len(guest_path) > metadata_content.MAX_PATH:
        return _error(404, "no such path")
    try:
        answer = metadata_answer(
            method=request.method,
            path=guest_path,
            network_id=request.headers.get(metadata_content.NETWORK_HEADER, ""),
            address=request.headers.get(metadata_content.ADDRESS_HEADER, ""),
            auth_header=request.headers.get(metadata_content.AUTH_HEADER, ""),
        )
    except MetadataRefused as exc:
        return _error(exc.status, exc.message)
    response = HttpResponse(answer.body, content_type=answer.content_type)
    response["Cache-Control"] = "private, no-store"
    return response


def _error(status: int, message: str) -> JsonResponse:
    name = {403: "forbidden", 404: "itemNotFound"}.get(status, "badRequest")
    response = JsonResponse({name: {"code": status, "message": message}}, status=status)
    if status == 405:
        response["Allow"] = "GET, HEAD"
    return response
