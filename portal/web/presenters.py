"""How an instance is shown on the portal's pages: its status, addresses and the buttons it has now."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from django.middleware.csrf import get_token
from django.template import engines
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from markupsafe import Markup

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


class Button(NamedTuple):  # a tuple: a row's set of buttons is a key of _row_buttons, hashed for every row
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
    buttons: tuple[Button, ...]
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
    def row_buttons(self) -> Markup:
        """The buttons of the instance's row on the list."""
        return _row_buttons(self.buttons).replace(_NAME, self.instance.name)  # Markup: the name is escaped

    @property
    def progress_html(self) -> SafeString:
        return render_to_string("portal/_progress.html", {"view": self})

    @property
    def busy(self) -> bool:
        return bool(self.task_state)


class _Link(NamedTuple):
    """An instance's URL, as ``reverse`` writes it, cut where its uuid goes."""

    head: str
    tail: str

    def __call__(self, uuid) -> str:
        return f"{self.head}{uuid}{self.tail}"


class _Links(NamedTuple):
    page: _Link
    console: _Link
    action: _Link


_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


@functools.lru_cache(maxsize=8)
def _links(_script_prefix: str) -> _Links:
    """An instance's links, reversed once for the script prefix (which ``reverse`` puts in front): a list
    of 1,000 rows would otherwise reverse 3,000 URLs."""
    names = ("portal:instance", "portal:console", "portal:instance-action")
    return _Links(*(_Link(*reverse(name, args=[_PLACEHOLDER]).split(_PLACEHOLDER)) for name in names))


def csrf_input(request) -> SafeString:
    """What ``{% csrf_token %}`` writes, made once for a page that has a form in each of many rows."""
    return format_html('<input type="hidden" name="csrfmiddlewaretoken" value="{}">', get_token(request))


def render_rows(request, views: list[InstanceView]) -> SafeString:
    """The instance list's rows (``templates/jinja2/portal/_instance_rows.html``): the list page's, or one
    for its live stream. A Jinja2 template, which writes a thousand rows in a fraction of the time
    Django's template language takes."""
    zone = timezone.get_current_timezone()
    context = {
        "views": views,
        "links": _links(get_script_prefix()),
        "minute": lambda moment: moment.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "csrf_input": csrf_input(request),
    }
    return mark_safe(_rows_template().render(context))  # noqa: S308 - the template escapes what it writes


def present(instance: Instance, ctx: RequestContext) -> InstanceView:
    buttons, can_resize = (
        _buttons(instance.vm_state, instance.task_state, ctx.is_admin) if ctx.can_write else ((), False)
    )
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
        can_resize=can_resize,
        **_progress(instance),
    )


@functools.lru_cache(maxsize=1024)
def _buttons(vm_state: str, task_state: str | None, is_admin: bool) -> tuple[tuple[Button, ...], bool]:
    """The buttons of an instance in this state for a viewer who may change it, and whether it may be
    resized: the same for every instance in the state."""
    actions = available_actions(vm_state, task_state)
    buttons = tuple(
        Button(action=action, label=spec.label, danger=spec.danger, confirm=spec.confirm)
        for action, spec in ((action, BUTTONS.get(action)) for action in actions)
        if spec is not None and (is_admin or not spec.admin_only)
    )
    return buttons, "resize" in actions


@functools.lru_cache(maxsize=1024)
def _row_buttons(buttons: tuple[Button, ...]) -> Markup:
    """A list row's ``buttons`` (``templates/jinja2/portal/_instance_buttons.html``) with a placeholder for
    the instance's name: written once per set of buttons, not once per row."""
    template = engines["jinja2"].env.get_template("portal/_instance_buttons.html")
    return template.module.buttons(buttons, _NAME)


_NAME = "\x00name\x00"  # what no escaping changes and no label holds


def _rows_template():
    return engines["jinja2"].env.get_template("portal/_instance_rows.html")


def _progress(instance: Instance) -> dict:
    label = _STEP_LABELS.get(instance.task_state or "")
    if label is None:
        return {}
    return {
        "progress": server_progress(instance.vm_state, instance.task_state, instance.step_progress),
        "step": label.format(percent=instance.step_progress),
    }
