"""Compute API microversions: parse the request headers, refuse what we do not implement, echo back."""

from __future__ import annotations

import functools
import re
from functools import total_ordering

from .errors import BadRequest, NotAcceptable

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
SERVICE = "compute"

_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@total_ordering
class APIVersion:
    __slots__ = ("major", "minor")

    def __init__(self, text: str):
        match = _VERSION_RE.match(text.strip())
        if not match:
            raise ValueError(text)
        self.major, self.minor = int(match[1]), int(match[2])

    def __eq__(self, other) -> bool:
        other = _coerce(other)
        return (self.major, self.minor) == (other.major, other.minor)

    def __lt__(self, other) -> bool:
        other = _coerce(other)
        return (self.major, self.minor) < (other.major, other.minor)

    def __hash__(self) -> int:
        return hash((self.major, self.minor))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    __repr__ = __str__


def _coerce(value) -> APIVersion:
    return value if isinstance(value, APIVersion) else _parsed(value)


@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> APIVersion:
    # The views compare the request's version with a literal ("2.47") for every attribute of every
    # server they show: each literal is parsed once per process, not once per comparison.
    return APIVersion(text)


MIN_VERSION = APIVersion("2.1")
MAX_VERSION = APIVersion("2.80")


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


def from_request(request) -> APIVersion:
    """The microversion for this request: 2.1 when none is asked for, 406 when out of range."""
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
