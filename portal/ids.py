"""Ids as callers send them: text that may or may not be a UUID."""

from __future__ import annotations

import uuid


def as_uuid(value) -> uuid.UUID | None:
    """``value`` as a UUID, None when it is not one (so a lookup by it finds nothing instead of failing)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def is_uuid(value) -> bool:
    return as_uuid(value) is not None
