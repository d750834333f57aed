"""An OpenAPI 3.1 description of the compute API, served at ``/compute/openapi.json`` (no authentication).

The paths and methods come from the URL resolver, so every endpoint is described the moment it is
routed; the request bodies and query parameters are written here by hand in the OpenStack shapes (a
generator cannot infer them: the views parse ``{"server": {...}}``-style bodies themselves). An endpoint
without a hand-written body is described as taking any JSON object. The description is deliberately
lenient where the API is: it says what a client may send, and the API answers anything else with a 4xx
in the OpenStack error envelope, which is what tests/integration/hostile/ checks with schemathesis.
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import get_resolver
from django.urls.resolvers import URLResolver
from rest_framework.response import Response

from portal.api.base import PublicAPIView
from portal.api.microversion import MAX_VERSION, MIN_VERSION

_METHODS = ("get", "post", "put", "patch", "delete")

STRING = {"type": "string", "maxLength": 300}
NAME = {"type": "string", "maxLength": 300}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 300}, "maxProperties": 20}


def _obj(properties: dict, required: tuple[str, ...] = ()) -> dict:
    body: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        body["required"] = list(required)
    return body


def _wrapped(key: str, properties: dict, required: tuple[str, ...] = ()) -> dict:
    return _obj({key: _obj(properties, required)}, (key,))


_QUOTA_VALUES = {
    name: {"anyOf": [INT, STRING]}
    for name in (
        "instances",
        "cores",
        "ram",
        "key_pairs",
        "metadata_items",
        "server_groups",
        "server_group_members",
        "injected_files",
        "injected_file_content_bytes",
        "injected_file_path_bytes",
        "fixed_ips",
        "floating_ips",
        "security_groups",
        "security_group_rules",
    )
}

_SERVER_ACTIONS = {
    "oneOf": [
        _obj({name: {"type": "null"}}, (name,))
        for name in ("os-start", "os-stop", "pause", "unpause", "suspend", "resume", "unlock", "confirmResize")
    ]
    + [
        _obj({"reboot": _obj({"type": {"enum": ["SOFT", "HARD", "soft", "bogus"]}})}, ("reboot",)),
        _obj({"lock": {"anyOf": [{"type": "null"}, _obj({"locked_reason": STRING})]}}, ("lock",)),
        _obj({"createImage": _obj({"name": NAME, "metadata": STR_MAP})}, ("createImage",)),
        _obj(
            {
                "createBackup": _obj(
                    {"name": NAME, "backup_type": STRING, "rotation": {"anyOf": [INT, STRING]}, "metadata": STR_MAP},
                    ("name", "backup_type", "rotation"),
                )
            },
            ("createBackup",),
        ),
        _obj(
            {"os-getConsoleOutput": _obj({"length": {"anyOf": [INT, STRING, {"type": "null"}]}})},
            ("os-getConsoleOutput",),
        ),
        _obj({"os-resetState": _obj({"state": STRING})}, ("os-resetState",)),
        _obj({"rebuild": _obj({"imageRef": STRING, "name": NAME, "metadata": STR_MAP})}, ("rebuild",)),
        _obj({"os-getVNCConsole": _obj({"type": STRING})}, ("os-getVNCConsole",)),
        ANY_OBJECT,
    ]
}

# (URL name, method) -> request body schema, in the OpenStack shapes.
REQUEST_BODIES: dict[tuple[str, str], dict] = {
    ("servers", "post"): _obj(
        {
            "server": _obj(
                {
                    "name": NAME,
                    "imageRef": STRING,
                    "flavorRef": STRING,
                    "networks": {"anyOf": [{"enum": ["auto", "none"]}, {"type": "array", "maxItems": 3}]},
                    "metadata": STR_MAP,
                    "user_data": STRING,
                    "key_name": STRING,
                    "description": {"anyOf": [STRING, {"type": "null"}]},
                    "availability_zone": STRING,
                    "min_count": {"anyOf": [INT, STRING]},
                    "max_count": {"anyOf": [INT, STRING]},
                    "return_reservation_id": BOOL,
                    "tags": {"type": "array", "items": STRING, "maxItems": 5},
                    "block_device_mapping_v2": {"type": "array", "items": ANY_OBJECT, "maxItems": 3},
                    "hostname": STRING,
                },
                ("name", "flavorRef"),
            ),
            "os:scheduler_hints": ANY_OBJECT,
        },
        ("server",),
    ),
    ("server", "put"): _wrapped(
        "server",
        {
            "name": NAME,
            "description": STRING,
            "hostname": STRING,
            "pinned_availability_zone": {"anyOf": [STRING, {"type": "null"}]},
        },
    ),
    ("server-action", "post"): _SERVER_ACTIONS,
    ("server-remote-consoles", "post"): _wrapped("remote_console", {"protocol": STRING, "type": STRING}),
    ("server-metadata", "post"): _obj({"metadata": STR_MAP}, ("metadata",)),
    ("server-metadata", "put"): _obj({"metadata": STR_MAP}, ("metadata",)),
    ("server-metadata-item", "put"): _obj({"meta": STR_MAP}, ("meta",)),
    ("server-tags", "put"): _obj({"tags": {"type": "array", "items": STRING, "maxItems": 60}}, ("tags",)),
    ("server-volume-attachments", "post"): _wrapped(
        "volumeAttachment", {"volumeId": STRING, "device": STRING, "tag": STRING, "delete_on_termination": BOOL}
    ),
    ("server-volume-attachment", "put"): _wrapped("volumeAttachment", {"volumeId": STRING}),
    ("keypairs", "post"): _wrapped("keypair", {"name": NAME, "public_key": STRING, "type": STRING}, ("name",)),
    ("server-groups", "post"): _wrapped(
        "server_group", {"name": NAME, "policy": STRING, "policies": {"type": "array"}, "rules": ANY_OBJECT}
    ),
    ("quota-set", "put"): _wrapped("quota_set", {**_QUOTA_VALUES, "force": {"anyOf": [BOOL, STRING]}}),
    ("quota-class-set", "put"): _wrapped("quota_class_set", _QUOTA_VALUES),
    ("flavors", "post"): _wrapped(
        "flavor",
        {
            "name": NAME,
            "ram": {"anyOf": [INT, STRING]},
            "vcpus": {"anyOf": [INT, STRING]},
            "disk": {"anyOf": [INT, STRING]},
            "id": {"anyOf": [STRING, {"type": "null"}]},
            "swap": {"anyOf": [INT, STRING]},
            "OS-FLV-EXT-DATA:ephemeral": INT,
            "os-flavor-access:is_public": BOOL,
            "description": {"anyOf": [STRING, {"type": "null"}]},
        },
    ),
    ("flavor", "put"): _wrapped("flavor", {"description": {"anyOf": [STRING, {"type": "null"}]}}),
    ("flavor-action", "post"): {
        "oneOf": [
            _obj({"addTenantAccess": _obj({"tenant": STRING})}, ("addTenantAccess",)),
            _obj({"removeTenantAccess": _obj({"tenant": STRING})}, ("removeTenantAccess",)),
        ]
    },
    ("flavor-specs", "post"): _obj({"extra_specs": STR_MAP}, ("extra_specs",)),
    ("flavor-spec", "put"): STR_MAP,
    ("aggregates", "post"): _wrapped("aggregate", {"name": NAME, "availability_zone": STRING}),
    ("aggregate", "put"): _wrapped("aggregate", {"name": NAME, "availability_zone": STRING}),
    ("aggregate-action", "post"): {
        "oneOf": [
            _obj({"add_host": _obj({"host": STRING})}, ("add_host",)),
            _obj({"remove_host": _obj({"host": STRING})}, ("remove_host",)),
            _obj({"set_metadata": _obj({"metadata": STR_MAP})}, ("set_metadata",)),
        ]
    },
    ("server-shares", "post"): _wrapped("share", {"share_id": STRING, "tag": STRING}, ("share_id",)),
    ("aggregate-images", "post"): _obj(
        {"cache": {"type": "array", "items": _obj({"id": STRING}, ("id",))}}, ("cache",)
    ),
    ("service", "put"): _obj({"status": STRING, "disabled_reason": STRING, "forced_down": BOOL}),
    ("host", "put"): _obj({"status": {"enum": ["enable", "disable", "DISABLE", "bogus"]}, "maintenance_mode": STRING}),
    ("tenant-networks", "post"): _wrapped("network", {"label": STRING, "cidr": STRING}),
    ("scheduler-explain", "post"): _obj({"server": ANY_OBJECT}),
}

# (URL name, method) -> query parameters (name, schema).
QUERY_PARAMETERS: dict[tuple[str, str], list[tuple[str, dict]]] = {
    ("servers", "get"): [
        ("limit", {"anyOf": [INT, STRING]}),
        ("marker", STRING),
        ("name", STRING),
        ("status", STRING),
        ("all_tenants", STRING),
        ("deleted", STRING),
        ("changes-since", STRING),
        ("sort_key", STRING),
        ("sort_dir", STRING),
        ("tags", STRING),
    ],
    ("flavors", "get"): [
        ("limit", {"anyOf": [INT, STRING]}),
        ("marker", STRING),
        ("minRam", {"anyOf": [INT, STRING]}),
        ("minDisk", {"anyOf": [INT, STRING]}),
        ("is_public", STRING),
        ("sort_key", STRING),
        ("sort_dir", STRING),
    ],
    ("limits", "get"): [("tenant_id", STRING)],
    ("quota-set", "get"): [("user_id", STRING)],
    ("quota-set", "put"): [("user_id", STRING)],
    ("quota-set", "delete"): [("user_id", STRING)],
    ("quota-set-detail", "get"): [("user_id", STRING)],
    ("keypairs", "get"): [("user_id", STRING), ("limit", {"anyOf": [INT, STRING]}), ("marker", STRING)],
    ("usages", "get"): [("start", STRING), ("end", STRING), ("detailed", STRING)],
}
QUERY_PARAMETERS[("servers-detail", "get")] = QUERY_PARAMETERS[("servers", "get")]
QUERY_PARAMETERS[("flavors-detail", "get")] = QUERY_PARAMETERS[("flavors", "get")]


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def openapi_path(route: str) -> tuple[str, list[str]]:
    """``compute/^v2(?:\\.1)?/(?:(?P<project_id>…)/)?servers/(?P<server_id>[^/]+)/?$`` ->
    (``/compute/v2.1/servers/{server_id}``, ``["server_id"]``)."""
    path = route.replace("^", "").replace("/?$", "").replace("$", "").replace("v2(?:\\.1)?", "v2\\.1")
    path = re.sub(r"\(\?:\(\?P<project_id>.*?\)/\)\?", "", path)
    names = re.findall(r"\(\?P<(\w+)>", path)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
    path = path.replace("\\.", ".").replace("\\", "")
    return "/" + path.rstrip("/"), names


def openapi_document(*, path_examples: dict[str, list[str]] | None = None) -> dict:
    """The whole description. ``path_examples`` (tests) offers real ids for path parameters besides any string."""
    paths: dict[str, dict] = {}
    for route, pattern in _walk(get_resolver().url_patterns):
        if not route.startswith("compute/v2") and not route.startswith("compute/^v2"):
            continue
        view = getattr(pattern.callback, "view_class", None)
        if view is None or pattern.name is None:
            continue
        path, names = openapi_path(route)
        if path == "/compute/v2.1":
            continue
        operations = paths.setdefault(path, {})
        for method in _METHODS:
            if not hasattr(view, method):
                continue
            operations[method] = _operation(pattern.name, method, names, path_examples or {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Compute API",
            "version": f"2.1 (microversions {MIN_VERSION} to {MAX_VERSION})",
            "description": "The OpenStack compute API v2.1 as this cloud speaks it; errors use the OpenStack "
            'envelope {"itemNotFound": {"code": 404, "message": "..."}}.',
        },
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
        "security": [{"basic": []}],
        "paths": dict(sorted(paths.items())),
    }


def _operation(name: str, method: str, path_names: list[str], examples: dict[str, list[str]]) -> dict:
    parameters = []
    for param in path_names:
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 80, "pattern": "^[^/?#]+$"}
        if examples.get(param):
            schema = {"anyOf": [{"enum": examples[param]}, schema]}
        parameters.append({"name": param, "in": "path", "required": True, "schema": schema})
    for param, schema in QUERY_PARAMETERS.get((name, method), []):
        parameters.append({"name": param, "in": "query", "required": False, "schema": schema})
    parameters.append(
        {
            "name": "OpenStack-API-Version",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^compute 2\\.[0-9]{1,3}$"},
        }
    )
    operation: dict[str, Any] = {
        "operationId": f"{name}.{method}",
        "parameters": parameters,
        "responses": {"default": {"description": "The resource, or an error in the OpenStack envelope."}},
    }
    if method in ("post", "put", "patch"):
        body = REQUEST_BODIES.get((name, method), ANY_OBJECT)
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return operation


class OpenAPIView(PublicAPIView):
    def get(self, request):
        return Response(openapi_document())
