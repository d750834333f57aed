"""Request-body checks shared by the admin resources, with the compute API's rules and 400 messages.

Names follow the compute API's ``name`` format: printable characters, no leading or trailing whitespace,
1 to 255 of them. Booleans accept what the compute API accepts (``true``, ``"True"``, ``"on"``, ``"1"``…).
"""

from __future__ import annotations

import re
import unicodedata
from contextvars import ContextVar

from portal.api.errors import BadRequest

MAX_INT = 2**31 - 1

_TRUE = {"true", "1", "on", "yes", "y", "t"}
_FALSE = {"false", "0", "off", "no", "n", "f"}
_DIGITS = re.compile(r"^[0-9]+$")


def body_object(request, key: str) -> dict:
    """``request.data[key]``, which must be an object inside an object."""
    body = request.data
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f"The request body must be an object with a '{key}' object.")
    return body[key]


def action_args(serializer_class, args, request, *, required: bool = True):
    """A server action's argument object, validated by ``serializer_class``; ``null`` counts as an empty
    object where the argument is optional."""
    if args is None and not required:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest("The action's argument must be an object.")
    serializer = serializer_class(data=args, context={"api_version": request.api_version})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def single_action(request) -> tuple[str, object]:
    body = request.data
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("The request body must be an object with exactly one action.")
    return next(iter(body.items()))


# Set for each request to the legacy v2.0 API, which, as the compute API's v2.0, ignores what it does not
# know in a request body instead of refusing it (``ComputeAPIView`` sets and resets it).
lenient_bodies: ContextVar[bool] = ContextVar("lenient_bodies", default=False)


def reject_unknown(data: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra and not lenient_bodies.get():
        raise BadRequest(f"Additional properties are not allowed in {where} ({', '.join(map(repr, extra))}).")


def _printable(char: str) -> bool:
    category = unicodedata.category(char)
    return not category.startswith("C") and (not category.startswith("Z") or category == "Zs")


def name(value, field: str = "name", *, forbid: str = "") -> str:
    """A name: a string of 1-255 printable characters that neither starts nor ends with whitespace."""
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise BadRequest(f"Invalid input for field/attribute {field}: must be a string of 1 to 255 characters.")
    if value != value.strip() or not all(_printable(ch) for ch in value):
        raise BadRequest(
            f"Invalid input for field/attribute {field}: printable characters only; "
            "cannot start or end with whitespace."
        )
    bad = sorted({ch for ch in value if ch in forbid})
    if bad:
        raise BadRequest(f"Invalid input for field/attribute {field}: {''.join(bad)!r} is not allowed.")
    return value


def description(value, field: str = "description", max_length: int = 65535) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise BadRequest(f"Invalid input for field/attribute {field}: must be a string of at most {max_length}.")
    if not all(_printable(ch) or ch in "\t\n\r" for ch in value):
        raise BadRequest(f"Invalid input for field/attribute {field}: printable characters only.")
    return value


def boolean(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise BadRequest(f"Invalid input for field/attribute {field}: {str(value)[:40]!r} is not a boolean.")


def integer(value, field: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """An integer, or a string of digits, within ``minimum``..``maximum``."""
    if isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {field}: {value!r} is not an integer.")
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise BadRequest(f"Invalid input for field/attribute {field}: {str(value)[:40]!r} is not an integer.")
    if not minimum <= value <= maximum:
        raise BadRequest(f"Invalid input for field/attribute {field}: must be between {minimum} and {maximum}.")
    return value


def metadata(value, field: str = "metadata", *, allow_null: bool = False, numbers: bool = False) -> dict:
    """A flat object of ``[a-zA-Z0-9-_:. ]{1,255}`` keys and string values of at most 255 characters."""
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid input for field/attribute {field}: must be an object.")
    clean = {}
    for key, item in value.items():
        if not METADATA_KEY.match(key):
            raise BadRequest(
                f"Invalid input for field/attribute {field}: key {key[:64]!r} must be 1 to 255 of "
                "letters, digits, spaces and -_:."
            )
        if item is None and allow_null:
            clean[key] = None
            continue
        if numbers and isinstance(item, int | float) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or len(item) > 255:
            raise BadRequest(
                f"Invalid input for field/attribute {field}: value of {key[:64]!r} must be a string of at "
                "most 255 characters."
            )
        clean[key] = item
    return clean


METADATA_KEY = re.compile(r"^[a-zA-Z0-9\-_:. ]{1,255}$")


def known_query(request, allowed: set[str], *, since: str) -> None:
    """From microversion ``since`` on, an unknown query parameter is a 400 (as the compute API does)."""
    if request.api_version < since:
        return
    extra = sorted(set(request.GET) - allowed)
    if extra:
        raise BadRequest(
            f"Invalid input for query parameters: additional properties are not allowed ({', '.join(extra)})."
        )
