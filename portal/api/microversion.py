"""Compute API microversions: parse the request headers, refuse what we do not implement, echo back."""

from __future__ import annotations

import re

from .errors import BadRequest, NotAcceptable

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
SERVICE = "compute"

_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


class APIVersion:
    __slots__ = ("major", "minor", "key")

    def __init__(self, text: str):
        match = _VERSION_RE.match(text.strip())
        if not match:
            raise ValueError(text)
        self.major, self.minor = int(match[1]), int(match[2])
        self.key = (self.major, self.minor)

    # The views compare the request's version with a literal ("2.47") for every attribute of every server
    # they show: each comparison is one dictionary lookup and one tuple comparison.
    def __eq__(self, other) -> bool:
        return self.key == _key(other)

    def __lt__(self, other) -> bool:
        return self.key < _key(other)

    def __le__(self, other) -> bool:
        return self.key <= _key(other)

    def __gt__(self, other) -> bool:
        return self.key > _key(other)

    def __ge__(self, other) -> bool:
        return self.key >= _key(other)

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    __repr__ = __str__


# Each literal a view compares with is parsed once per process.
_LITERAL_KEYS: dict[str, tuple[int, int]] = {}


def _key(value) -> tuple[int, int]:
    if isinstance(value, APIVersion):
        return value.key
    key = _LITERAL_KEYS.get(value)
    if key is None:
        key = APIVersion(value).key
        if len(_LITERAL_KEYS) < 512:
            _LITERAL_KEYS[value] = key
    return key


MIN_VERSION = APIVersion("2.1")
MAX_VERSION = APIVersion("2.104")


def requested_text(meta) -> str | None:
    """The version asked for, from the preferred header (``compute X.Y``) or the legacy one."""
    header = meta.get("HTTP_OPENSTACK_API_VERSION")
    if header:
        for item in header.split(","):
            parts = item.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == SERVICE:
                return parts[1].strip()
    legacy = (meta.get("HTTP_X_OPENSTACK_NOVA_API_VERSION") or "").strip()
    return legacy or None


def is_legacy_v2(request) -> bool:
    """A request to the legacy v2.0 API (``/compute/v2/``), which knows no microversions."""
    path = getattr(request, "path_info", "")
    return path.startswith("/compute/v2/") or path == "/compute/v2"


def from_request(request) -> APIVersion:
    """The microversion for this request: 2.1 when none is asked for (and always on the legacy v2.0 API),
    406 when out of range."""
    if is_legacy_v2(request):
        return MIN_VERSION
    text = requested_text(request.META)
    if text is None:
        return MIN_VERSION
    if text.lower() == "latest":
        return MAX_VERSION
    try:
        version = APIVersion(text)
    except ValueError:
        raise BadRequest(
            f"API Version String {text[:40]!r} is of invalid format. Must be of format MajorNum.MinorNum."
        ) from None
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NotAcceptable(
            f"Version {version} is not supported by the API. Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}."
        )
    return version


def echo_headers(response, version: APIVersion) -> None:
    response[HEADER] = f"{SERVICE} {version}"
    response[LEGACY_HEADER] = str(version)
    response["Vary"] = f"{HEADER}, {LEGACY_HEADER}"
