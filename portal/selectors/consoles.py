from __future__ import annotations

from django.utils import timezone

from portal.models import ConsoleToken
from portal.states import VmState


def console_target(token: str) -> ConsoleToken | None:
    """The live console a token opens, or None if unknown, expired, or the instance is not running."""
    if not token or len(token) > 256:
        return None
    return (
        ConsoleToken.objects.select_related("instance")
        .filter(
            token_hash=ConsoleToken.hash(token),
            expires_at__gt=timezone.now(),
            instance__vm_state=VmState.ACTIVE,
        )
        .first()
    )
