"""Nova's proxy of the image API, until 2.35 (from 2.36, 404: clients use the image API): ``/images``
(``detail``: the full view), ``/images/{id}`` (show, delete) and the image's properties as its metadata,
``/images/{id}/metadata`` (show, merge with POST, replace with PUT) and ``/images/{id}/metadata/{key}``.

Statuses are Nova's: ``queued`` and ``saving`` are SAVING (progress 25 and 50), ``active`` ACTIVE (100),
``killed`` ERROR; a snapshot names its server (its ``instance_uuid`` property) under ``server``.
"""

from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.db.models import Q
from django.utils.dateparse import parse_datetime
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden, NotFound
from portal.models import Image
from portal.selectors.images import image_get, images_visible_to, parse_image_id
from portal.services import images as image_services
from portal.services.quotas import QuotaExceeded, quota_check

from .links import collection_next, links
from .times import iso_z

_LAST_VERSION = "2.35"
MAX_LIMIT = 1000
_STATUS = {"queued": "SAVING", "saving": "SAVING", "uploading": "SAVING", "importing": "SAVING", "active": "ACTIVE"}
_STATUS.update({"killed": "ERROR", "deleted": "DELETED", "pending_delete": "DELETED"})
_PROGRESS = {"queued": 25, "saving": 50, "uploading": 50, "importing": 50, "active": 100}
_LIST_FILTERS = {"name", "status", "changes-since", "server", "type", "minRam", "minDisk", "limit", "marker"}


def image_links(image: Image) -> list[dict]:
    image_api = f"{settings.CLOUD['PUBLIC_URL']}/image/v2/images/{image.pk}"
    return [
        *links("images", image.pk),
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": image_api},
    ]


def image_summary(image: Image) -> dict:
    return {"id": str(image.pk), "name": image.name, "links": image_links(image)}


def image_detail(image: Image) -> dict:
    body = {
        "id": str(image.pk),
        "name": image.name,
        "minRam": image.min_ram,
        "minDisk": image.min_disk,
        "metadata": dict(image.properties),
        "created": iso_z(image.created_at),
        "updated": iso_z(image.updated_at),
        "status": _STATUS.get(image.status, "UNKNOWN"),
        "progress": _PROGRESS.get(image.status, 0),
        "OS-EXT-IMG-SIZE:size": image.size,
        "links": image_links(image),
    }
    server = image.properties.get("instance_uuid")
    if server:
        body["server"] = {"id": server, "links": links("servers", server)}
    return body


class _ProxyView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")

    def image_or_404(self, image_id) -> Image:
        image = image_get(ctx=self.ctx, image_id=image_id)
        if image is None:
            raise NotFound("Image not found.")
        return image

    def listed(self, request) -> tuple[list[Image], int]:
        """The images the caller lists (admins: every one; others: public ones and their project's),
        newest first, filtered as Nova filters them; unknown filters are ignored, as Nova ignores them."""
        rows = images_visible_to(ctx=self.ctx)
        if not self.ctx.is_admin:
            rows = rows.filter(Q(visibility=Image.Visibility.PUBLIC) | Q(owner_id=self.ctx.project.pk))
        params = request.GET
        if params.get("name"):
            rows = rows.filter(name=params["name"])
        if params.get("status"):
            wanted = [raw for raw, shown in _STATUS.items() if shown == params["status"].upper()]
            rows = rows.filter(status__in=wanted)
        if params.get("server"):
            rows = rows.filter(properties__instance_uuid=params["server"].rstrip("/").rsplit("/", 1)[-1])
        if params.get("type"):
            rows = rows.filter(properties__image_type=params["type"])
        for name, field in (("minRam", "min_ram"), ("minDisk", "min_disk")):
            if params.get(name):
                rows = rows.filter(**{f"{field}__gte": _int(params[name], name)})
        if params.get("changes-since"):
            rows = rows.filter(updated_at__gte=_timestamp(params["changes-since"]))
        rows = rows.order_by("-created_at", "-id")
        limit = MAX_LIMIT if params.get("limit") in (None, "") else min(_int(params["limit"], "limit"), MAX_LIMIT)
        if params.get("marker"):
            marker = images_visible_to(ctx=self.ctx).filter(pk=parse_image_id(params["marker"])).first()
            if marker is None:
                raise BadRequest(f"marker [{params['marker'][:64]}] not found")
            rows = rows.filter(Q(created_at__lt=marker.created_at) | Q(created_at=marker.created_at, id__lt=marker.pk))
        return list(rows[: limit + 1]), limit


def _int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid {name} value: {value[:40]}") from None
    if number < 0:
        raise BadRequest(f"Invalid {name} value: {value[:40]}")
    return number


def _timestamp(value: str):
    parsed = parse_datetime(value.replace(" ", "+"))
    if parsed is None:
        raise BadRequest(f"Invalid changes-since value: {value[:40]}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class ImageListView(_ProxyView):
    detail = False

    def get(self, request):
        page, limit = self.listed(request)
        shown = page[:limit]
        body = {"images": [image_detail(i) if self.detail else image_summary(i) for i in shown]}
        if len(page) > limit and shown:
            body["images_links"] = collection_next(
                "images/detail" if self.detail else "images", shown[-1].pk, limit, request
            )
        return Response(body)

    def delete(self, request):
        # DELETE /images/ names no image: Nova's router finds no such resource.
        raise NotFound("The resource could not be found.")


class ImageDetailListView(ImageListView):
    detail = True


class ImageView(_ProxyView):
    def get(self, request, image_id):
        return Response({"image": image_detail(self.image_or_404(image_id))})

    def delete(self, request, image_id):
        self.require_write()
        image = self.image_or_404(image_id)
        try:
            image_services.image_delete(ctx=self.ctx, image=image)
        except image_services.ImageForbidden as exc:
            raise Forbidden(str(exc)) from None
        return Response(status=204)


def _metadata_body(data, key: str) -> dict:
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise BadRequest(f"Malformed request body: expected a '{key}' object.")
    for name, value in data[key].items():
        if not isinstance(value, str) or not name or len(name) > 255 or len(value) > 255:
            raise BadRequest(f"Invalid metadata item {str(name)[:40]!r}: keys and values are strings of 1 to 255.")
    return data[key]


class _MetadataView(_ProxyView):
    def change(self, image: Image, changes: list[image_services.ImageChange]) -> Image:
        """Write ``changes`` to the image's properties, within the project's ``metadata_items`` quota."""
        after = dict(image.properties)
        for change in changes:
            if change.op == "remove":
                after.pop(change.attribute, None)
            else:
                after[change.attribute] = change.value
        try:
            quota_check(project=self.ctx.project, user=None, resource="metadata_items", delta=len(after))
            return image_services.image_update(ctx=self.ctx, image=image, changes=changes)
        except QuotaExceeded:
            raise Forbidden("Quota exceeded for metadata_items.") from None
        except image_services.ImageForbidden as exc:
            raise Forbidden(str(exc)) from None
        except image_services.ImageError as exc:
            raise BadRequest(str(exc)) from None


class ImageMetadataView(_MetadataView):
    def get(self, request, image_id):
        return Response({"metadata": dict(self.image_or_404(image_id).properties)})

    def post(self, request, image_id):
        """Merge: the given keys are set, the others kept."""
        self.require_write()
        image = self.image_or_404(image_id)
        items = _metadata_body(request.data, "metadata")
        changes = [
            image_services.ImageChange("replace" if k in image.properties else "add", k, v) for k, v in items.items()
        ]
        return Response({"metadata": dict(self.change(image, changes).properties)})

    def put(self, request, image_id):
        """Replace: the image's properties become exactly the given ones."""
        self.require_write()
        image = self.image_or_404(image_id)
        items = _metadata_body(request.data, "metadata")
        changes = [image_services.ImageChange("remove", k) for k in image.properties if k not in items]
        changes += [
            image_services.ImageChange("replace" if k in image.properties else "add", k, v) for k, v in items.items()
        ]
        return Response({"metadata": dict(self.change(image, changes).properties)})


class ImageMetadataItemView(_MetadataView):
    def get(self, request, image_id, key):
        image = self.image_or_404(image_id)
        if key not in image.properties:
            raise NotFound(f"Metadata item was not found: {key[:255]}")
        return Response({"meta": {key: image.properties[key]}})

    def put(self, request, image_id, key):
        self.require_write()
        image = self.image_or_404(image_id)
        item = _metadata_body(request.data, "meta")
        if list(item) != [key]:
            raise BadRequest("Request body and URI mismatch: the body must have the one key the URI names.")
        op = "replace" if key in image.properties else "add"
        image = self.change(image, [image_services.ImageChange(op, key, item[key])])
        return Response({"meta": {key: image.properties[key]}})

    def delete(self, request, image_id, key):
        self.require_write()
        image = self.image_or_404(image_id)
        if key not in image.properties:
            raise NotFound(f"Metadata item was not found: {key[:255]}")
        self.change(image, [image_services.ImageChange("remove", key)])
        return Response(status=204)
