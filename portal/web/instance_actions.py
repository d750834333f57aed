"""The portal's instance buttons and the service each one calls (the same services as the API)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.auth.context import RequestContext
from portal.models import Instance
from portal.services import actions as action_services
from portal.services import instances as instance_services


@dataclass(frozen=True)
class ButtonSpec:
    label: str
    danger: bool = False
    confirm: str = ""


# Every action of the state table that needs no further input: what its button says, what it calls.
BUTTONS: dict[str, ButtonSpec] = {
    "start": ButtonSpec("Start"),
    "stop": ButtonSpec("Stop"),
    "reboot": ButtonSpec("Reboot"),
    "reboot_hard": ButtonSpec("Hard reboot", danger=True),
    "pause": ButtonSpec("Pause"),
    "unpause": ButtonSpec("Unpause"),
    "suspend": ButtonSpec("Suspend"),
    "resume": ButtonSpec("Resume"),
    "delete": ButtonSpec("Delete", danger=True, confirm="Delete this instance? Its disk is removed."),
}


def perform(*, ctx: RequestContext, instance: Instance, action: str) -> None:
    """Run a button's action; raises StateConflict (or the service's own refusal) as the API sees them."""
    if action == "delete":
        instance_services.instance_delete(ctx=ctx, instance=instance)
    elif action in action_services.SIMPLE_ACTIONS:
        action_services.instance_action(ctx=ctx, instance=instance, action=action)
    else:
        raise ValueError(f"There is no such action: {action[:40]}")
