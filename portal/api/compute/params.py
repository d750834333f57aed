"""Query-parameter parsing with errors in the API's envelope."""

from __future__ import annotations

from portal.api.errors import BadRequest

MAX_LIMIT = 1000

_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


def bool_param(request, name: str, *, default: bool | None = None, allow_none: bool = False) -> bool | None:
    value = request.GET.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if allow_none and lowered == "none":
        return None
    raise BadRequest(f"Invalid value {value[:40]!r} for {name}: expected a boolean.")


def int_param(request, name: str, *, minimum: int = 0, maximum: int = 2**31 - 1) -> int | None:
    value = request.GET.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid value {value[:40]!r} for {name}: expected an integer.") from None
    if not minimum <= number <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}.")
    return number


def paginate(request, query, *, marker_field: str, marker_lookup=None):
    """A page after ``marker`` of at most ``limit`` rows; returns (rows, limit, whether more follow).

    ``query`` must already be ordered; the marker row's position in that order is where the page starts.
    """
    limit = int_param(request, "limit", minimum=0, maximum=MAX_LIMIT)
    limit = MAX_LIMIT if limit is None else limit
    marker = request.GET.get("marker")
    rows = list(query)
    if marker is not None:
        keys = [str(getattr(row, marker_field)) for row in rows]
        if marker not in keys:
            raise BadRequest(f"marker [{marker[:64]}] not found")
        rows = rows[keys.index(marker) + 1 :]
    return rows[:limit], limit, len(rows) > limit
