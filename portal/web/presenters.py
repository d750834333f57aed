"""How an instance is shown on the portal's pages: its status, addresses and the buttons it has now."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.middleware.csrf import get_token
from django.urls import get_script_prefix, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from portal.auth.context import RequestContext
from portal.models import Instance
from portal.selectors.consoles import instance_has_console
from portal.selectors.instances import latest_fault
from portal.services.consoles import console_permitted
from portal.states import PowerState, TaskState, VmState, api_status, available_actions, server_progress

from .instance_actions import BUTTONS

_POWER_LABELS = dict(PowerState.CHOICES)

# The steps of a build or a move as people read them; ``{percent}`` is the step's own figure.
_STEP_LABELS = {
    TaskState.SCHEDULING: "Scheduling",
    TaskState.NETWORKING: "Networking",
    TaskState.BLOCK_DEVICE_MAPPING: "Downloading the image: {percent} %",
    TaskState.SPAWNING: "Spawning",
    TaskState.RESIZE_PREP: "Preparing the move",
    TaskState.RESIZE_MIGRATING: "Copying the disk",
    TaskState.RESIZE_MIGRATED: "Disk copied",
    TaskState.RESIZE_FINISH: "Starting on the new host",
    TaskState.MIGRATING: "Live migration: {percent} % moved",
}


@dataclass(frozen=True)
class Button:
    action: str
    label: str
    danger: bool
    confirm: str


@dataclass(frozen=True)
class InstanceView:
    """One instance as a page shows it."""

    instance: Instance
    status: str
    task_state: str
    power: str
    addresses: list[str]
    buttons: list[Button]
    can_console: bool
    host: str | None  # None when the viewer may not see hosts
    fault: object | None
    can_resize: bool = False
    # A build's or a move's progress (the API's ``progress``) and its step in words, while it has one.
    progress: int | None = None
    step: str = ""
    # The page's CSRF field, for a list whose rows each have a form per action.
    csrf_input: str = ""

    @property
    def uuid(self) -> str:
        return str(self.instance.uuid)

    @property
    def busy(self) -> bool:
        return bool(self.task_state)

    # The instance's links, from URLs reversed once (a list of 1,000 rows would reverse some 12,000).
    @functools.cached_property
    def url(self) -> str:
        return _links(get_script_prefix())[0].replace(_PLACEHOLDER, self.uuid)

    @functools.cached_property
    def console_url(self) -> str:
        return _links(get_script_prefix())[1].replace(_PLACEHOLDER, self.uuid)

    @functools.cached_property
    def action_url(self) -> str:
        return _links(get_script_prefix())[2].replace(_PLACEHOLDER, self.uuid)


_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


@functools.lru_cache(maxsize=8)
def _links(_script_prefix: str) -> tuple[str, str, str]:
    """An instance's page, console and action URLs with a placeholder uuid, for the script prefix (which
    ``reverse`` puts in front)."""
    names = ("portal:instance", "portal:console", "portal:instance-action")
    return tuple(reverse(name, args=[_PLACEHOLDER]) for name in names)  # type: ignore[return-value]


def csrf_input(request) -> SafeString:
    """What ``{% csrf_token %}`` writes, made once for a page that has a form in each of many rows."""
    return format_html('<input type="hidden" name="csrfmiddlewaretoken" value="{}">', get_token(request))


def present(instance: Instance, ctx: RequestContext, *, csrf: str = "") -> InstanceView:
    actions = available_actions(instance.vm_state, instance.task_state) if ctx.can_write else []
    buttons = []
    for action in actions:
        spec = BUTTONS.get(action)
        if spec is not None and (ctx.is_admin or not spec.admin_only):
            buttons.append(Button(action=action, label=spec.label, danger=spec.danger, confirm=spec.confirm))
    status = api_status(instance.vm_state, instance.task_state)
    show_fault = instance.vm_state in (VmState.ERROR, VmState.DELETED)
    return InstanceView(
        instance=instance,
        status=status,
        task_state=instance.task_state or "",
        power=_POWER_LABELS.get(instance.power_state, str(instance.power_state)),
        addresses=[
            f"{a['addr']} (floating)" if a.get("type") == "floating" else a["addr"]
            for a in instance.addresses or []
            if isinstance(a, dict) and a.get("addr")
        ],
        buttons=buttons,
        can_console=console_permitted(ctx) and instance_has_console(instance),
        host=(instance.host.name if instance.host_id else "") if ctx.is_admin else None,
        fault=latest_fault(instance) if show_fault else None,
        can_resize="resize" in actions,
        csrf_input=csrf,
        **_progress(instance),
    )


def _progress(instance: Instance) -> dict:
    label = _STEP_LABELS.get(instance.task_state or "")
    if label is None:
        return {}
    return {
        "progress": server_progress(instance.vm_state, instance.task_state, instance.step_progress),
        "step": label.format(percent=instance.step_progress),
    }
