"""The image API's shapes: the flat image object, the create body, JSON-patch documents, list queries."""

from __future__ import annotations

import csv
import uuid
from datetime import datetime

from django.conf import settings
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from portal.api.errors import BadRequest
from portal.models import Image
from portal.selectors.images import SORT_KEYS, VISIBILITY_FILTERS, ImageQuery
from portal.services.images import CONTAINER_FORMATS, DISK_FORMATS, ImageChange

ISO_8601 = "%Y-%m-%dT%H:%M:%SZ"
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


def image_href(image: Image, subresource: str = "") -> str:
    """The path the image API reports for an image, relative to the service root as Glance does."""
    href = f"/v2/images/{image.id}"
    return f"{href}/{subresource}" if subresource else href


def service_url() -> str:
    return settings.CLOUD["PUBLIC_URL"] + "/image"


# --- output --------------------------------------------------------------------------------------------


class ImageSerializer(serializers.ModelSerializer):
    """The flat image object: base attributes, links, and the free-form properties merged in."""

    owner = serializers.CharField(source="owner_id", allow_null=True)
    created_at = serializers.DateTimeField(format=ISO_8601)
    updated_at = serializers.DateTimeField(format=ISO_8601)
    os_hidden = serializers.SerializerMethodField()
    self = serializers.SerializerMethodField()
    file = serializers.SerializerMethodField()
    schema = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "name",
            "status",
            "visibility",
            "protected",
            "os_hidden",
            "checksum",
            "os_hash_algo",
            "os_hash_value",
            "size",
            "virtual_size",
            "min_disk",
            "min_ram",
            "disk_format",
            "container_format",
            "owner",
            "created_at",
            "updated_at",
            "tags",
            "self",
            "file",
            "schema",
        ]
        read_only_fields = fields

    def get_os_hidden(self, image: Image) -> bool:
        return False

    def get_self(self, image: Image) -> str:
        return image_href(image)

    def get_file(self, image: Image) -> str:
        return image_href(image, "file")

    def get_schema(self, image: Image) -> str:
        return "/v2/schemas/image"

    def to_representation(self, image: Image) -> dict:
        data = super().to_representation(image)
        # Properties never shadow base attributes (the service refuses such keys); guard anyway.
        properties = {key: value for key, value in (image.properties or {}).items() if key not in data}
        return {**properties, **data}


# --- create --------------------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A string, and only a string: JSON numbers or lists are refused rather than converted."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=str(data)[:64])
        return super().to_internal_value(data)


class ImageCreateSerializer(serializers.Serializer):
    """The base attributes ``POST /v2/images`` accepts; every other key is a string property."""

    id = StrictUUIDField(required=False)
    name = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=255)
    disk_format = serializers.ChoiceField(choices=DISK_FORMATS, required=False, allow_null=True)
    container_format = serializers.ChoiceField(choices=CONTAINER_FORMATS, required=False, allow_null=True)
    visibility = serializers.ChoiceField(choices=Image.Visibility.values, required=False)
    min_disk = StrictIntegerField(required=False, min_value=0, max_value=2**31 - 1)
    min_ram = StrictIntegerField(required=False, min_value=0, max_value=2**31 - 1)
    protected = StrictBooleanField(required=False)
    os_hidden = StrictBooleanField(required=False)
    tags = serializers.ListField(child=StrictCharField(min_length=1, max_length=255), required=False, max_length=128)
    owner = StrictCharField(required=False, allow_null=True, max_length=255)

    def split(self, body: dict) -> tuple[dict, dict]:
        """The validated base attributes, as ``image_create`` keywords, and the remaining properties."""
        attributes = dict(self.validated_data)
        if "id" in attributes:
            attributes["image_id"] = attributes.pop("id")
        if "owner" in attributes:
            attributes["owner_id"] = attributes.pop("owner")
        properties = {key: value for key, value in body.items() if key not in self.fields}
        return attributes, properties


# --- update --------------------------------------------------------------------------------------------

PATCH_MEDIA_TYPE = "application/openstack-images-v2.1-json-patch"
_PATCH_OPS = ("add", "replace", "remove")


def parse_patch(document) -> list[ImageChange]:
    """The operations of an ``openstack-images-v2.1-json-patch`` document (RFC 6902, top-level paths)."""
    if not isinstance(document, list):
        raise BadRequest("Request body must be a JSON array of operation objects.")
    changes = []
    for raw in document:
        if not isinstance(raw, dict):
            raise BadRequest("Operations must be JSON objects.")
        op = raw.get("op")
        if op not in _PATCH_OPS:
            raise BadRequest(
                f"Invalid operation: `{str(op)[:20]}`. It must be one of the following: add, replace, remove."
            )
        path = raw.get("path")
        if not isinstance(path, str):
            raise BadRequest("Unable to find 'path' in JSON Schema change")
        attribute = _decode_pointer(path)
        if op != "remove" and "value" not in raw:
            raise BadRequest(f'Operation "{op}" requires a member named "value".')
        changes.append(ImageChange(op=op, attribute=attribute, value=raw.get("value")))
    return changes


def _decode_pointer(pointer: str) -> str:
    if not pointer.startswith("/"):
        raise BadRequest(f'Pointer `{pointer[:64]}` does not start with "/".')
    token = pointer[1:]
    if not token or "/" in token:
        raise BadRequest(f"Invalid JSON pointer for this resource: '{pointer[:64]}'")
    if "~" in token.replace("~0", "").replace("~1", ""):
        raise BadRequest(f'Pointer `{pointer[:64]}` contains "~" not part of a recognized escape sequence.')
    return token.replace("~1", "/").replace("~0", "~")


# --- list queries --------------------------------------------------------------------------------------

_IN_FILTERS = {
    "name": "names",
    "status": "statuses",
    "id": "ids",
    "disk_format": "disk_formats",
    "container_format": "container_formats",
}
_TIME_OPERATORS = ("gt", "gte", "eq", "neq", "lt", "lte")
_NOT_FILTERS = {"limit", "marker", "sort", "sort_key", "sort_dir", "member_status", "tag", "os_hidden"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRequest(f"Invalid value {value[:40]!r} for {name}: expected a boolean.")


def _int(name: str, value: str, *, maximum: int = 2**63 - 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} param must be an integer") from None
    if number < 0:
        raise BadRequest(f"{name} param must be positive")
    return min(number, maximum)


def _values(value: str) -> list[str]:
    """``x`` is one value; ``in:a,"b, c"`` is several (quote a value that holds a comma)."""
    if not value.startswith("in:"):
        return [value]
    try:
        row = next(csv.reader([value[3:]], skipinitialspace=True), [])
    except csv.Error:
        raise BadRequest(f"Invalid 'in' filter: {value[:64]}") from None
    return row


def _uuid(name: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"Invalid {name}: {value[:64]!r} is not a UUID.") from None


def _sort(params) -> list[tuple[str, str]]:
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise BadRequest("Old and new sorting syntax cannot be combined")
        sort = []
        for item in params["sort"].split(","):
            key, _, direction = item.partition(":")
            sort.append((key.strip(), direction.strip() or "desc"))
    else:
        keys = [key.strip() for key in params.getlist("sort_key")] or ["created_at"]
        dirs = [direction.strip() for direction in params.getlist("sort_dir")] or ["desc"]
        if len(dirs) == 1:
            dirs = dirs * len(keys)
        if len(dirs) != len(keys):
            raise BadRequest("Number of sort dirs does not match the number of sort keys")
        sort = list(zip(keys, dirs, strict=True))
    for key, direction in sort:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key: {key[:40]}. It must be one of the following: {', '.join(SORT_KEYS)}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {direction[:40]}")
    return sort


def _time_filter(name: str, value: str) -> tuple[str, str, datetime]:
    operator, sep, when = value.partition(":")
    if not sep or operator not in _TIME_OPERATORS:
        operator, when = "eq", value
    moment = parse_datetime(when.strip().replace("Z", "+00:00")) if when else None
    if moment is None:
        raise BadRequest(f"Invalid {name} filter: {value[:64]!r} (expected [op:]ISO 8601 time).")
    return name, operator, moment


def image_query(params) -> ImageQuery:
    """The list query a request's parameters describe; unknown keys filter on properties, as in Glance."""
    if "changes-since" in params:
        raise BadRequest('The "changes-since" filter is no longer available on v2.')
    fields: dict = {"sort": _sort(params), "limit": DEFAULT_LIMIT, "properties": {}, "times": []}
    if "limit" in params:
        fields["limit"] = _int("limit", params["limit"], maximum=MAX_LIMIT)
    if "marker" in params:
        fields["marker"] = _uuid("marker", params["marker"])
    member_status = params.get("member_status", "accepted")
    if member_status not in ("pending", "accepted", "rejected", "all"):
        raise BadRequest(f"Invalid status: {member_status[:40]}")
    if "os_hidden" in params:
        fields["hidden"] = _bool("os_hidden", params["os_hidden"])
    fields["tags"] = [tag.strip() for tag in params.getlist("tag")]
    for key in params:
        value = params[key]
        if key in _NOT_FILTERS:
            continue
        if key in _IN_FILTERS:
            values = _values(value)
            if key == "id":
                values = [_uuid("id", v) for v in values]
            fields[_IN_FILTERS[key]] = values
        elif key == "visibility":
            if value not in VISIBILITY_FILTERS:
                raise BadRequest(f"Invalid visibility value: {value[:40]}")
            fields["visibility"] = value
        elif key == "owner":
            fields["owner"] = value
        elif key == "protected":
            fields["protected"] = _bool("protected", value)
        elif key in ("size_min", "size_max"):
            fields[key] = _int(key, value)
        elif key in ("created_at", "updated_at"):
            fields["times"].append(_time_filter(key, value))
        else:
            fields["properties"][key] = value
    fields["times"] = tuple(fields["times"])
    return ImageQuery(**fields)


# --- JSON schemas --------------------------------------------------------------------------------------


def _nullable(kind: str) -> list[str]:
    return ["null", kind]


def image_schema() -> dict:
    """The JSON schema of one image (draft 4). Properties beyond the base ones must be strings."""
    read_only = {"readOnly": True}
    properties = {
        "id": {
            "type": "string",
            "description": "An identifier for the image",
            "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        },
        "name": {
            "type": _nullable("string"),
            "maxLength": 255,
            "description": "Descriptive name for the image",
        },
        "status": {
            "type": "string",
            "enum": list(Image.Status.values),
            "description": "Status of the image",
            **read_only,
        },
        "visibility": {
            "type": "string",
            "enum": list(Image.Visibility.values),
            "description": "Scope of image accessibility",
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list response.",
        },
        "checksum": {
            "type": _nullable("string"),
            "maxLength": 32,
            "description": "md5 hash of image contents.",
            **read_only,
        },
        "os_hash_algo": {
            "type": _nullable("string"),
            "maxLength": 64,
            "description": "Algorithm to calculate the os_hash_value",
            **read_only,
        },
        "os_hash_value": {
            "type": _nullable("string"),
            "maxLength": 128,
            "description": "Hex digest of the image contents, computed with os_hash_algo",
            **read_only,
        },
        "owner": {"type": _nullable("string"), "maxLength": 255, "description": "Owner of the image"},
        "size": {"type": _nullable("integer"), "description": "Size of image file in bytes", **read_only},
        "virtual_size": {
            "type": _nullable("integer"),
            "description": "Virtual size of image in bytes",
            **read_only,
        },
        "container_format": {
            "type": _nullable("string"),
            "enum": [None, *CONTAINER_FORMATS],
            "description": "Format of the container",
        },
        "disk_format": {
            "type": _nullable("string"),
            "enum": [None, *DISK_FORMATS],
            "description": "Format of the disk",
        },
        "created_at": {"type": "string", "description": "Date and time of image registration", **read_only},
        "updated_at": {
            "type": "string",
            "description": "Date and time of the last image modification",
            **read_only,
        },
        "tags": {
            "type": "array",
            "items": {"type": "string", "maxLength": 255},
            "description": "List of strings related to the image",
        },
        "min_ram": {
            "type": "integer",
            "minimum": 0,
            "description": "Amount of ram (in MB) required to boot image.",
        },
        "min_disk": {
            "type": "integer",
            "minimum": 0,
            "description": "Amount of disk (in GB) required to boot image.",
        },
        "self": {"type": "string", "description": "An image self url", **read_only},
        "file": {"type": "string", "description": "An image file url", **read_only},
        "schema": {"type": "string", "description": "An image schema url", **read_only},
    }
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict:
    """The JSON schema of an image list page."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }
