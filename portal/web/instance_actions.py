"""The portal's instance buttons and the service each one calls (the same services as the API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from portal.auth.context import RequestContext
from portal.models import Instance
from portal.selectors.flavors import flavor_get
from portal.services import actions as action_services
from portal.services import instances as instance_services
from portal.services import live_migrations, shelving
from portal.services import moves as move_services


@dataclass(frozen=True)
class ButtonSpec:
    label: str
    danger: bool = False
    confirm: str = ""
    admin_only: bool = False


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
    "confirm_resize": ButtonSpec("Confirm resize"),
    "revert_resize": ButtonSpec("Revert resize"),
    "migrate": ButtonSpec("Migrate", admin_only=True, confirm="Move this instance to another host? It is shut down."),
    "live_migrate": ButtonSpec("Live migrate", admin_only=True),
    "evacuate": ButtonSpec("Evacuate", admin_only=True, confirm="Rebuild this server on another host from its image?"),
    "shelve": ButtonSpec("Shelve", confirm="Shelve this instance? It is shut down and its disk saved as an image."),
    "shelve_offload": ButtonSpec("Shelve offload"),
    "unshelve": ButtonSpec("Unshelve"),
    "rescue": ButtonSpec("Rescue", confirm="Boot this instance from its image with its own disk attached second?"),
    "unrescue": ButtonSpec("Unrescue"),
    "delete": ButtonSpec("Delete", danger=True, confirm="Delete this instance? Its disk is removed."),
}

_MOVES: dict[str, Callable[..., object]] = {
    "confirm_resize": move_services.instance_confirm_resize,
    "revert_resize": move_services.instance_revert_resize,
    "migrate": move_services.instance_migrate,
    "live_migrate": live_migrations.instance_live_migrate,
    "evacuate": live_migrations.instance_evacuate,
    "shelve": shelving.instance_shelve,
    "shelve_offload": shelving.instance_shelve_offload,
    "unshelve": shelving.instance_unshelve,
    "rescue": action_services.instance_rescue,
    "unrescue": action_services.instance_unrescue,
}


def perform(*, ctx: RequestContext, instance: Instance, action: str) -> None:
    """Run a button's action; raises StateConflict (or the service's own refusal) as the API sees them."""
    if action == "delete":
        instance_services.instance_delete(ctx=ctx, instance=instance)
    elif action in action_services.SIMPLE_ACTIONS:
        action_services.instance_action(ctx=ctx, instance=instance, action=action)
    elif action in _MOVES:
        _MOVES[action](ctx=ctx, instance=instance)
    else:
        raise ValueError(f"There is no such action: {action[:40]}")


def resize(*, ctx: RequestContext, instance: Instance, flavor_id: str) -> None:
    """The resize form: to the flavor chosen among those the project may use."""
    flavor = flavor_get(ctx, flavor_id)
    if flavor is None:
        raise ValueError("There is no such flavor.")
    move_services.instance_resize(ctx=ctx, instance=instance, flavor=flavor)
