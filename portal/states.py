"""The one vocabulary of instance state, and the table of what each action is allowed from.

``vm_state`` is what the instance *is* (stable), ``task_state`` is what is being done to it right now
(transient, ``None`` when idle), ``power_state`` is what the hypervisor last reported. The API's
``status`` is derived from the first two, as in the OpenStack compute API. The API, the portal's
buttons and the admin all read ``ALLOWED``; only ``portal.services.lifecycle`` writes the states.
"""

from __future__ import annotations

from dataclasses import dataclass


class VmState:
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    PAUSED = "paused"  # vCPUs halted, memory kept in the running QEMU
    SUSPENDED = "suspended"  # memory saved to disk, no QEMU process (libvirt managed save)
    ERROR = "error"
    DELETED = "deleted"


class TaskState:
    SCHEDULING = "scheduling"
    SPAWNING = "spawning"
    POWERING_ON = "powering-on"
    POWERING_OFF = "powering-off"
    REBOOTING = "rebooting"
    REBOOTING_HARD = "rebooting_hard"
    PAUSING = "pausing"
    UNPAUSING = "unpausing"
    SUSPENDING = "suspending"
    RESUMING = "resuming"
    REBUILDING = "rebuilding"
    IMAGE_SNAPSHOT = "image_snapshot"
    DELETING = "deleting"


class PowerState:
    """Numbered as the compute API reports them in ``OS-EXT-STS:power_state``."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7

    CHOICES = [
        (0, "no state"),
        (1, "running"),
        (3, "paused"),
        (4, "shutdown"),
        (6, "crashed"),
        (7, "suspended"),
    ]


_STATUS_BY_VM_STATE = {
    VmState.BUILDING: "BUILD",
    VmState.ACTIVE: "ACTIVE",
    VmState.STOPPED: "SHUTOFF",
    VmState.PAUSED: "PAUSED",
    VmState.SUSPENDED: "SUSPENDED",
    VmState.ERROR: "ERROR",
    VmState.DELETED: "DELETED",
}

# A task that changes what the user sees while it runs.
_STATUS_BY_TASK = {
    (VmState.ACTIVE, TaskState.REBOOTING): "REBOOT",
    (VmState.ACTIVE, TaskState.REBOOTING_HARD): "HARD_REBOOT",
    (VmState.STOPPED, TaskState.REBOOTING_HARD): "HARD_REBOOT",
    (VmState.ERROR, TaskState.REBOOTING_HARD): "HARD_REBOOT",
    (VmState.PAUSED, TaskState.REBOOTING_HARD): "HARD_REBOOT",
    (VmState.SUSPENDED, TaskState.REBOOTING_HARD): "HARD_REBOOT",
    (VmState.ACTIVE, TaskState.REBUILDING): "REBUILD",
    (VmState.STOPPED, TaskState.REBUILDING): "REBUILD",
    (VmState.ERROR, TaskState.REBUILDING): "REBUILD",
}

# Statuses of the compute API that this cloud never produces (no resize, rescue, shelve, …): valid in a
# ``status`` filter, where they simply match nothing.
OTHER_API_STATUSES = frozenset(
    {
        "MIGRATING",
        "PASSWORD",
        "RESCUE",
        "RESIZE",
        "REVERT_RESIZE",
        "SHELVED",
        "SHELVED_OFFLOADED",
        "SOFT_DELETED",
        "UNKNOWN",
        "VERIFY_RESIZE",
    }
)


def api_status(vm_state: str, task_state: str | None) -> str:
    """The compute API's ``status`` for a pair of states."""
    return _STATUS_BY_TASK.get((vm_state, task_state)) or _STATUS_BY_VM_STATE.get(vm_state, "UNKNOWN")


@dataclass(frozen=True)
class StatusMatch:
    """The states one API ``status`` stands for: ``vm_state`` with one of ``task_states``, or, when
    ``other_tasks`` is set, with any task state but ``excluded_tasks`` (which show another status)."""

    vm_state: str
    task_states: frozenset[str] = frozenset()
    other_tasks: bool = False
    excluded_tasks: frozenset[str] = frozenset()


def states_for_status(status: str) -> list[StatusMatch] | None:
    """What a ``status`` filter selects, exactly the instances ``api_status`` shows with that status.

    None for a status the compute API does not know; an empty list for one this cloud never shows.
    """
    status = status.upper()
    matches = []
    for vm_state, shown in _STATUS_BY_VM_STATE.items():
        special = {task for (vm, task), name in _STATUS_BY_TASK.items() if vm == vm_state}
        tasks = frozenset(task for task in special if _STATUS_BY_TASK[(vm_state, task)] == status)
        if shown == status:
            matches.append(StatusMatch(vm_state, other_tasks=True, excluded_tasks=frozenset(special - tasks)))
        elif tasks:
            matches.append(StatusMatch(vm_state, task_states=tasks))
    if matches or status in OTHER_API_STATUSES:
        return matches
    return None


@dataclass(frozen=True)
class Transition:
    """What an action needs and what it sets while the host works on it."""

    vm_states: frozenset[str]
    task_state: str  # set by the API when the action is accepted
    # Task states the action may interrupt. Empty: the instance must be idle (task_state None).
    interrupts: frozenset[str] = frozenset()


_ANY_LIVE = frozenset(
    {VmState.BUILDING, VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED, VmState.ERROR}
)

ALLOWED: dict[str, Transition] = {
    "start": Transition(frozenset({VmState.STOPPED}), TaskState.POWERING_ON),
    "stop": Transition(frozenset({VmState.ACTIVE, VmState.ERROR}), TaskState.POWERING_OFF),
    "reboot": Transition(frozenset({VmState.ACTIVE}), TaskState.REBOOTING),
    "reboot_hard": Transition(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED, VmState.ERROR}),
        TaskState.REBOOTING_HARD,
        interrupts=frozenset({TaskState.REBOOTING}),
    ),
    "pause": Transition(frozenset({VmState.ACTIVE}), TaskState.PAUSING),
    "unpause": Transition(frozenset({VmState.PAUSED}), TaskState.UNPAUSING),
    "suspend": Transition(frozenset({VmState.ACTIVE}), TaskState.SUSPENDING),
    "resume": Transition(frozenset({VmState.SUSPENDED}), TaskState.RESUMING),
    # A new disk from an image on the same host; the instance keeps its id, addresses and host.
    "rebuild": Transition(frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), TaskState.REBUILDING),
    # createImage: the host copies the disk (pausing a running guest meanwhile) and uploads it.
    "snapshot": Transition(
        frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED}), TaskState.IMAGE_SNAPSHOT
    ),
    # Delete wins over any task but another delete: the user must always be able to get rid of a VM.
    "delete": Transition(
        _ANY_LIVE,
        TaskState.DELETING,
        interrupts=frozenset(
            {
                TaskState.SCHEDULING,
                TaskState.SPAWNING,
                TaskState.POWERING_ON,
                TaskState.POWERING_OFF,
                TaskState.REBOOTING,
                TaskState.REBOOTING_HARD,
                TaskState.PAUSING,
                TaskState.UNPAUSING,
                TaskState.SUSPENDING,
                TaskState.RESUMING,
                TaskState.REBUILDING,
                TaskState.IMAGE_SNAPSHOT,
            }
        ),
    ),
}

# What a finished task leaves behind: the vm_state each action ends in when the host reports success.
# ``None`` keeps the vm_state the instance had (a snapshot changes nothing; a rebuilt stopped server
# stays stopped, which the conductor decides from the host's report).
RESULT_VM_STATE: dict[str, str | None] = {
    "start": VmState.ACTIVE,
    "stop": VmState.STOPPED,
    "reboot": VmState.ACTIVE,
    "reboot_hard": VmState.ACTIVE,
    "pause": VmState.PAUSED,
    "unpause": VmState.ACTIVE,
    "suspend": VmState.SUSPENDED,
    "resume": VmState.ACTIVE,
    "rebuild": None,
    "snapshot": None,
}

# Actions a lock stops, unless the caller is an admin (as Nova's ``check_instance_lock``). A snapshot is
# not one of them: it does not change the server.
LOCKED_ACTIONS = frozenset(
    {"start", "stop", "reboot", "reboot_hard", "pause", "unpause", "suspend", "resume", "rebuild", "delete"}
)

# Where a server's metadata and tags may change: a stable state and no task running.
EDITABLE_VM_STATES = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.SUSPENDED, VmState.STOPPED})


def allowed_task_states(action: str) -> set[str | None]:
    """The task states from which ``action`` may start (``None`` is idle)."""
    return {None, *ALLOWED[action].interrupts}


def can(action: str, vm_state: str, task_state: str | None) -> bool:
    rule = ALLOWED[action]
    return vm_state in rule.vm_states and task_state in allowed_task_states(action)


def available_actions(vm_state: str, task_state: str | None) -> list[str]:
    """Every action the table allows now, for the portal's buttons."""
    return [action for action in ALLOWED if can(action, vm_state, task_state)]
