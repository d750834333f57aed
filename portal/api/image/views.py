"""The image API v2: version discovery, images, their data and tags, and the JSON schemas."""

from __future__ import annotations

import io
import logging

from django.http import FileResponse
from rest_framework import status as http
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from portal.api.base import ProjectAPIView, PublicAPIView
from portal.api.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    envelope,
)
from portal.models import Image
from portal.selectors import images as selectors
from portal.services import images as services

from .serializers import (
    PATCH_MEDIA_TYPE,
    ImageCreateSerializer,
    ImageSerializer,
    image_href,
    image_query,
    image_schema,
    images_schema,
    parse_patch,
    service_url,
)

log = logging.getLogger(__name__)

# The versions this service speaks, newest first. 2.5 brought community visibility, 2.6 image import
# (optional: this cloud offers no import methods), 2.7 multihash and hidden images.
API_VERSIONS = ("2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")
UPLOAD_MEDIA_TYPE = "application/octet-stream"

_SERVICE_ERRORS = {
    services.InvalidImage: BadRequest,
    services.ImageForbidden: Forbidden,
    services.ImageNotFound: NotFound,
    services.ImageConflict: Conflict,
    services.ImageTooLarge: PayloadTooLarge,
    services.DownloadDenied: Forbidden,
    selectors.InvalidQuery: BadRequest,
}


class NotImplementedHere(APIError):
    status_code = 501
    default_detail = "This part of the image API is not implemented by this cloud."


class UnsupportedUploadMediaType(APIError):
    status_code = 415
    default_detail = f"Image data must be sent with Content-Type {UPLOAD_MEDIA_TYPE}."


class IgnoreAcceptNegotiation(DefaultContentNegotiation):
    """Always answer in JSON. Clients of the image API send ``Accept: ""`` or ``application/octet-stream``
    on uploads and patches and must still get an answer, as Glance gives them."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ImagePatchParser(JSONParser):
    media_type = PATCH_MEDIA_TYPE


def versions_document() -> dict:
    href = f"{service_url()}/v2/"
    return {
        "versions": [
            {
                "id": f"v{version}",
                "status": "CURRENT" if index == 0 else "SUPPORTED",
                "links": [{"rel": "self", "href": href}],
            }
            for index, version in enumerate(API_VERSIONS)
        ]
    }


class VersionsView(PublicAPIView):
    """``GET /image/`` answers 300 Multiple Choices, ``GET /image/versions`` 200, with the same list."""

    content_negotiation_class = IgnoreAcceptNegotiation
    multiple_choices = True

    def get(self, request):
        status = http.HTTP_300_MULTIPLE_CHOICES if self.multiple_choices else http.HTTP_200_OK
        return Response(versions_document(), status=status)


class ImageAPIView(ProjectAPIView):
    content_negotiation_class = IgnoreAcceptNegotiation

    def handle_exception(self, exc):
        for service_error, api_error in _SERVICE_ERRORS.items():
            if isinstance(exc, service_error):
                exc = api_error(str(exc))
                break
        return super().handle_exception(exc)

    def get_image(self, image_id) -> Image:
        image = selectors.image_get(ctx=self.ctx, image_id=image_id)
        if image is None:
            raise NotFound(f"No image found with ID {str(image_id)[:64]}")
        return image


class ImagesView(ImageAPIView):
    parser_classes = [JSONParser]

    def get(self, request):
        query = image_query(request.query_params)
        images, more = selectors.image_list(ctx=self.ctx, query=query)
        params = request.query_params.copy()
        params.pop("marker", None)
        body = {
            "images": ImageSerializer(images, many=True).data,
            "first": f"/v2/images?{params.urlencode()}" if params else "/v2/images",
            "schema": "/v2/schemas/images",
        }
        if more and images:
            params["marker"] = str(images[-1].id)
            body["next"] = f"/v2/images?{params.urlencode()}"
        return Response(body)

    def post(self, request):
        self.require_write()
        if request.stream is None:
            raise BadRequest("Body expected in request.")
        body = request.data
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        serializer = ImageCreateSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        attributes, properties = serializer.split(body)
        image = services.image_create(ctx=self.ctx, properties=properties, **attributes)
        return Response(
            ImageSerializer(image).data,
            status=http.HTTP_201_CREATED,
            headers={"Location": service_url() + image_href(image)},
        )


class ImageDetailView(ImageAPIView):
    parser_classes = [ImagePatchParser]

    def get(self, request, image_id):
        return Response(ImageSerializer(self.get_image(image_id)).data)

    def patch(self, request, image_id):
        self.require_write()
        if request.content_type.split(";")[0].strip().lower() != PATCH_MEDIA_TYPE:
            return Response(
                envelope(415, f"Image PATCH expects Content-Type {PATCH_MEDIA_TYPE}."),
                status=http.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                headers={"Accept-Patch": PATCH_MEDIA_TYPE},
            )
        if request.stream is None:
            raise BadRequest("Body expected in request.")
        changes = parse_patch(request.data)
        image = services.image_update(ctx=self.ctx, image=self.get_image(image_id), changes=changes)
        return Response(ImageSerializer(image).data)

    def delete(self, request, image_id):
        self.require_write()
        services.image_delete(ctx=self.ctx, image=self.get_image(image_id))
        return Response(status=http.HTTP_204_NO_CONTENT)


class ImageFileView(ImageAPIView):
    def put(self, request, image_id):
        self.require_write()
        if request.content_type.split(";")[0].strip().lower() != UPLOAD_MEDIA_TYPE:
            raise UnsupportedUploadMediaType()
        image = self.get_image(image_id)
        services.image_upload(
            ctx=self.ctx, image=image, stream=_body_stream(request), expected_size=_announced_size(request)
        )
        return Response(status=http.HTTP_204_NO_CONTENT)

    def get(self, request, image_id):
        image = self.get_image(image_id)
        if image.status != Image.Status.ACTIVE:
            return Response(status=http.HTTP_204_NO_CONTENT)
        try:
            data = open(services.image_file_path(image), "rb")  # noqa: SIM115 - FileResponse closes it
        except FileNotFoundError:
            log.error("Image %s is active but its file is missing", image.id)
            raise NotFound(f"The data of image {image.id} could not be found.") from None
        response = FileResponse(data, content_type=UPLOAD_MEDIA_TYPE)
        if image.checksum:
            response["Content-MD5"] = image.checksum
        return response


def _announced_size(request) -> int | None:
    """The size the client promises, from ``X-OpenStack-Image-Size`` and ``Content-Length``."""
    sizes = set()
    for header in ("X-OpenStack-Image-Size", "Content-Length"):
        value = request.headers.get(header)
        if value in (None, ""):
            continue
        try:
            size = int(value)
        except ValueError:
            raise BadRequest(f"Invalid {header} header: {value[:40]!r}") from None
        if size < 0:
            raise BadRequest(f"Invalid {header} header: {value[:40]!r}")
        sizes.add(size)
    if len(sizes) > 1:
        raise BadRequest("X-OpenStack-Image-Size does not match the request's Content-Length.")
    return sizes.pop() if sizes else None


def _body_stream(request):
    """The raw request body, read in chunks straight from the server, never buffered whole."""
    django_request = request._request
    meta = django_request.META
    if meta.get("CONTENT_LENGTH"):
        return django_request  # Django stops reading at Content-Length
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        if meta.get("wsgi.input_terminated"):
            return meta["wsgi.input"]  # the server decodes chunks and ends the stream itself
        raise BadRequest("Chunked uploads are not supported by this server: send a Content-Length.")
    return io.BytesIO(b"")


class ImageTagView(ImageAPIView):
    def put(self, request, image_id, tag):
        self.require_write()
        services.image_tag_add(ctx=self.ctx, image=self.get_image(image_id), tag=tag)
        return Response(status=http.HTTP_204_NO_CONTENT)

    def delete(self, request, image_id, tag):
        self.require_write()
        services.image_tag_remove(ctx=self.ctx, image=self.get_image(image_id), tag=tag)
        return Response(status=http.HTTP_204_NO_CONTENT)


class ImageTasksView(ImageAPIView):
    """``GET /v2/images/{id}/tasks`` (API 2.12): the image's import tasks. This cloud offers no import, so an
    image has none; an image the caller cannot see is 404."""

    def get(self, request, image_id):
        self.get_image(image_id)
        return Response({"tasks": []})


class ImageSchemaView(ImageAPIView):
    def get(self, request):
        return Response(image_schema())


class ImagesSchemaView(ImageAPIView):
    def get(self, request):
        return Response(images_schema())


class ImportInfoView(ImageAPIView):
    """Image import (API 2.6) is discoverable; this cloud offers no import method, only uploads."""

    def get(self, request):
        return Response({"import-methods": {"description": "Import methods available.", "type": "array", "value": []}})


class NotImplementedView(ImageAPIView):
    """Members, image actions, staging and import: answered honestly instead of with a bare 404."""

    def _refuse(self, request, *args, **kwargs):
        raise NotImplementedHere()

    get = post = put = patch = delete = _refuse
