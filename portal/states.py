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
    RESIZED = "resized"  # moved (resized or migrated) and waiting for the user to confirm or revert
    RESCUED = "rescued"  # booted from a rescue image, its own disk attached second
    SHELVED = "shelved"  # powered off, its disk saved as an image, still on its host
    SHELVED_OFFLOADED = "shelved_offloaded"  # only the image is left; no host holds anything of it
    ERROR = "error"
    DELETED = "deleted"


class TaskState:
    SCHEDULING = "scheduling"
    # A build on its host, in Nova's steps: the claim binds the server's networks to the host
    # (networking), the host makes its disks, fetching the image into its cache (block_device_mapping),
    # then defines and starts the guest (spawning). The host reports each step as it begins.
    NETWORKING = "networking"
    BLOCK_DEVICE_MAPPING = "block_device_mapping"
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
    # A move: the destination is chosen and claimed, then the source uploads the disk, then the
    # destination builds the guest from it; confirming or reverting ends it.
    RESIZE_PREP = "resize_prep"
    RESIZE_MIGRATING = "resize_migrating"
    RESIZE_MIGRATED = "resize_migrated"
    RESIZE_FINISH = "resize_finish"
    RESIZE_CONFIRMING = "resize_confirming"
    RESIZE_REVERTING = "resize_reverting"
    SHELVING = "shelving"
    SHELVING_OFFLOADING = "shelving_offloading"
    UNSHELVING = "unshelving"
    RESCUING = "rescuing"
    UNRESCUING = "unrescuing"
    MIGRATING = "migrating"  # a live migration: the guest keeps running while it moves
    DELETING = "deleting"


# A boot's steps on its host, in order: a step is only ever followed by a later one.
BUILD_STEPS = (TaskState.NETWORKING, TaskState.BLOCK_DEVICE_MAPPING, TaskState.SPAWNING)


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
    VmState.RESIZED: "VERIFY_RESIZE",
    VmState.RESCUED: "RESCUE",
    VmState.SHELVED: "SHELVED",
    VmState.SHELVED_OFFLOADED: "SHELVED_OFFLOADED",
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
    **{
        (vm_state, task): "RESIZE"
        for vm_state in (VmState.ACTIVE, VmState.STOPPED)
        for task in (
            TaskState.RESIZE_PREP,
            TaskState.RESIZE_MIGRATING,
            TaskState.RESIZE_MIGRATED,
            TaskState.RESIZE_FINISH,
        )
    },
    (VmState.RESIZED, TaskState.RESIZE_REVERTING): "REVERT_RESIZE",
    (VmState.ACTIVE, TaskState.MIGRATING): "MIGRATING",
    (VmState.PAUSED, TaskState.MIGRATING): "MIGRATING",
}

# Statuses of the compute API that this cloud never produces: valid in a ``status`` filter, where they
# simply match nothing.
OTHER_API_STATUSES = frozenset({"PASSWORD", "SOFT_DELETED", "UNKNOWN"})


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


# What a finished action leaves as vm_state: a state, ``KEEP`` (what it was), or ``REPORTED`` (the host's
# report decides: a rebuilt or moved server comes back running or stopped as its guest is).
KEEP = "keep"
REPORTED = "reported"


@dataclass(frozen=True)
class Transition:
    """One action of the state table: where it may start, what it sets while a host works on it, what it
    ends in, and how the action log names it."""

    vm_states: frozenset[str]
    task_state: str  # set when the action is accepted
    # Task states the action may interrupt. Empty: the instance must be idle (task_state None).
    interrupts: frozenset[str] = frozenset()
    result: str | None = None  # the vm_state on success (KEEP, REPORTED); None: not finished by a report
    locked: bool = True  # a lock stops it, unless the caller is an admin (Nova's ``check_instance_lock``)
    record_as: str = ""  # the name in the action log when it differs (``createImage`` for ``snapshot``)
    # The task states a host's report about this action may finish (the action's own by default).
    finishes: frozenset[str] = frozenset()

    def reported_task_states(self) -> frozenset[str]:
        return self.finishes or frozenset({self.task_state})


def _rule(vm_states, task_state, result=None, **kwargs) -> Transition:
    return Transition(frozenset(vm_states), task_state, result=result, **kwargs)


_ANY_LIVE = frozenset(
    {
        VmState.BUILDING,
        VmState.ACTIVE,
        VmState.STOPPED,
        VmState.PAUSED,
        VmState.SUSPENDED,
        VmState.RESIZED,
        VmState.RESCUED,
        VmState.SHELVED,
        VmState.SHELVED_OFFLOADED,
        VmState.ERROR,
    }
)
_RUNNING_OR_NOT = (VmState.ACTIVE, VmState.STOPPED)

# The task states of a server on its way between hosts (its networks must be on both meanwhile).
MOVE_TASK_STATES = frozenset(
    {
        TaskState.RESIZE_PREP,
        TaskState.RESIZE_MIGRATING,
        TaskState.RESIZE_MIGRATED,
        TaskState.RESIZE_FINISH,
        TaskState.RESIZE_CONFIRMING,
        TaskState.RESIZE_REVERTING,
        TaskState.MIGRATING,
        TaskState.REBUILDING,
        TaskState.UNSHELVING,
    }
)


ALLOWED: dict[str, Transition] = {
    "start": _rule({VmState.STOPPED}, TaskState.POWERING_ON, VmState.ACTIVE),
    "stop": _rule({VmState.ACTIVE, VmState.ERROR}, TaskState.POWERING_OFF, VmState.STOPPED),
    "reboot": _rule(
        {VmState.ACTIVE},
        TaskState.REBOOTING,
        VmState.ACTIVE,
        finishes=frozenset({TaskState.REBOOTING, TaskState.REBOOTING_HARD}),
    ),
    "reboot_hard": _rule(
        {VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED, VmState.ERROR},
        TaskState.REBOOTING_HARD,
        VmState.ACTIVE,
        interrupts=frozenset({TaskState.REBOOTING}),
        record_as="reboot",
    ),
    "pause": _rule({VmState.ACTIVE}, TaskState.PAUSING, VmState.PAUSED),
    "unpause": _rule({VmState.PAUSED}, TaskState.UNPAUSING, VmState.ACTIVE),
    "suspend": _rule({VmState.ACTIVE}, TaskState.SUSPENDING, VmState.SUSPENDED),
    "resume": _rule({VmState.SUSPENDED}, TaskState.RESUMING, VmState.ACTIVE),
    # A new disk from an image on the same host; the instance keeps its id, addresses and host.
    "rebuild": _rule({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}, TaskState.REBUILDING, REPORTED),
    # createImage: the host copies the disk (pausing a running guest meanwhile) and uploads it. It does
    # not change the server, so a lock does not stop it.
    "snapshot": _rule(
        {VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED},
        TaskState.IMAGE_SNAPSHOT,
        KEEP,
        locked=False,
        record_as="createImage",
    ),
    # Moves: the conductor places the server elsewhere (with a new flavor for a resize), the source
    # uploads the disk, the destination builds from it; the server then waits in RESIZED for the user.
    "resize": _rule(_RUNNING_OR_NOT, TaskState.RESIZE_PREP),
    "migrate": _rule(_RUNNING_OR_NOT, TaskState.RESIZE_PREP),
    "confirm_resize": _rule({VmState.RESIZED}, TaskState.RESIZE_CONFIRMING, record_as="confirmResize"),
    "revert_resize": _rule({VmState.RESIZED}, TaskState.RESIZE_REVERTING, record_as="revertResize"),
    "shelve": _rule(
        {VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED}, TaskState.SHELVING, VmState.SHELVED
    ),
    "shelve_offload": _rule(
        {VmState.SHELVED}, TaskState.SHELVING_OFFLOADING, VmState.SHELVED_OFFLOADED, record_as="shelveOffload"
    ),
    "unshelve": _rule({VmState.SHELVED, VmState.SHELVED_OFFLOADED}, TaskState.UNSHELVING),
    "rescue": _rule({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}, TaskState.RESCUING, VmState.RESCUED),
    "unrescue": _rule({VmState.RESCUED}, TaskState.UNRESCUING, VmState.ACTIVE),
    # An admin's live migration (os-migrateLive): the guest runs on while its memory and disk move.
    "live_migrate": _rule({VmState.ACTIVE, VmState.PAUSED}, TaskState.MIGRATING, record_as="live-migration"),
    # An admin's evacuate: the host is down, the server is built again elsewhere from its image.
    "evacuate": _rule({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}, TaskState.REBUILDING, record_as="evacuate"),
    # Delete wins over any task but another delete: the user must always be able to get rid of a VM.
    "delete": _rule(
        _ANY_LIVE,
        TaskState.DELETING,
        interrupts=frozenset(
            {
                TaskState.SCHEDULING,
                *BUILD_STEPS,
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
                TaskState.RESIZE_PREP,
                TaskState.RESIZE_MIGRATING,
                TaskState.RESIZE_MIGRATED,
                TaskState.RESIZE_FINISH,
                TaskState.RESIZE_CONFIRMING,
                TaskState.RESIZE_REVERTING,
                TaskState.SHELVING,
                TaskState.SHELVING_OFFLOADING,
                TaskState.UNSHELVING,
                TaskState.RESCUING,
                TaskState.UNRESCUING,
                TaskState.MIGRATING,
            }
        ),
    ),
}

# What each action that a host's report finishes leaves as vm_state (see ``Transition.result``).
RESULT_VM_STATE: dict[str, str] = {name: rule.result for name, rule in ALLOWED.items() if rule.result is not None}

# Actions a lock stops, unless the caller is an admin.
LOCKED_ACTIONS = frozenset(name for name, rule in ALLOWED.items() if rule.locked)

# Where a server's metadata and tags may change: a stable state and no task running.
EDITABLE_VM_STATES = frozenset(
    {
        VmState.ACTIVE,
        VmState.PAUSED,
        VmState.SUSPENDED,
        VmState.STOPPED,
        VmState.RESIZED,
        VmState.RESCUED,
        VmState.SHELVED,
        VmState.SHELVED_OFFLOADED,
    }
)

# Where nothing of the server runs on a host (its claim is released; the console has nothing to show).
OFF_HOST_VM_STATES = frozenset({VmState.SHELVED_OFFLOADED, VmState.DELETED})


def allowed_task_states(action: str) -> set[str | None]:
    """The task states from which ``action`` may start (``None`` is idle)."""
    return {None, *ALLOWED[action].interrupts}


def can(action: str, vm_state: str, task_state: str | None) -> bool:
    rule = ALLOWED[action]
    return vm_state in rule.vm_states and task_state in allowed_task_states(action)


def available_actions(vm_state: str, task_state: str | None) -> list[str]:
    """Every action the table allows now, for the portal's buttons."""
    return [action for action in ALLOWED if can(action, vm_state, task_state)]


# How far each step of a task puts a server, in the compute API's ``progress`` (0-100). A step with
# figures of its own (the image download, a live migration's transfer) fills its span as they come.
STEP_SPANS = {
    TaskState.SCHEDULING: (0, 0),
    TaskState.NETWORKING: (5, 5),
    TaskState.BLOCK_DEVICE_MAPPING: (10, 90),
    TaskState.SPAWNING: (90, 90),
    TaskState.RESIZE_PREP: (0, 0),
    TaskState.RESIZE_MIGRATING: (25, 25),
    TaskState.RESIZE_MIGRATED: (50, 50),
    TaskState.RESIZE_FINISH: (75, 75),
    TaskState.MIGRATING: (0, 100),
}


def server_progress(vm_state: str, task_state: str | None, step_percent: int) -> int:
    """The compute API's ``progress`` of a server: how far its build or move is, from the step it is in
    and that step's own percent (``Instance.step_progress``); 100 once it is up, or moved and waiting
    for the user to confirm."""
    if task_state not in STEP_SPANS:  # idle, or a task that is neither a build nor a move
        return 100 if vm_state in (VmState.ACTIVE, VmState.RESIZED) else 0
    low, high = STEP_SPANS[task_state]
    return low + (high - low) * max(0, min(100, step_percent)) // 100
