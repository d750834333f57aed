"""``os:scheduler_hints`` of a create request (and of the scheduler-explain extension), checked once."""

from __future__ import annotations

import json
import uuid

from portal.api.errors import BadRequest

HINT_KEYS = ("os:scheduler_hints", "OS-SCH-HNT:scheduler_hints")
MAX_HINTS_BYTES = 16384


def scheduler_hints(body: dict) -> dict:
    """The hints of a request body, with server and group references made canonical UUIDs."""
    hints: dict = {}
    for key in HINT_KEYS:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise BadRequest(f"Invalid input for field/attribute {key}: must be an object.")
        hints.update(value)
    if len(json.dumps(hints)) > MAX_HINTS_BYTES:
        raise BadRequest("The scheduler hints are too large.")
    for name in ("same_host", "different_host"):
        if name in hints:
            values = hints[name] if isinstance(hints[name], list) else [hints[name]]
            try:
                hints[name] = [str(uuid.UUID(str(v))) for v in values]
            except ValueError:
                raise BadRequest(f"Invalid input for field/attribute {name}: expected server UUIDs.") from None
    if "group" in hints:
        group = hints["group"][0] if isinstance(hints["group"], list) and len(hints["group"]) == 1 else hints["group"]
        try:
            hints["group"] = str(uuid.UUID(str(group)))
        except ValueError:
            raise BadRequest(f"Invalid server group {str(group)[:64]}: expected a server group UUID.") from None
    return hints
