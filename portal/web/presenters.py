"""How an instance is shown on the portal's pages: its status, addresses and the buttons it has now."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def uuid(self) -> str:
        return str(self.instance.uuid)

    @property
    def busy(self) -> bool:
        return bool(self.task_state)


def present(instance: Instance, ctx: RequestContext) -> InstanceView:
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
