"""Timestamps as the compute API writes them, always in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def naive_iso(value: datetime | None) -> str | None:
    """``2024-05-07T12:06:13.681238`` (aggregates, key pairs, services, usage)."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def iso_z(value: datetime | None) -> str | None:
    """``2024-05-07T12:06:13Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
