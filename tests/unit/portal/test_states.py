import pytest

from portal.states import (
    ALLOWED,
    BUILD_STEPS,
    LOCKED_ACTIONS,
    RESULT_VM_STATE,
    TaskState,
    VmState,
    api_status,
    available_actions,
    can,
    server_progress,
    states_for_status,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("vm_state", "task_state", "status"),
    [
        (VmState.BUILDING, TaskState.SCHEDULING, "BUILD"),
        (VmState.BUILDING, TaskState.SPAWNING, "BUILD"),
        (VmState.ACTIVE, None, "ACTIVE"),
        (VmState.ACTIVE, TaskState.REBOOTING, "REBOOT"),
        (VmState.ACTIVE, TaskState.REBOOTING_HARD, "HARD_REBOOT"),
        (VmState.ACTIVE, TaskState.POWERING_OFF, "ACTIVE"),
        (VmState.ACTIVE, TaskState.DELETING, "ACTIVE"),
        (VmState.STOPPED, None, "SHUTOFF"),
        (VmState.STOPPED, TaskState.REBOOTING_HARD, "HARD_REBOOT"),
        (VmState.ERROR, None, "ERROR"),
        (VmState.DELETED, None, "DELETED"),
        (VmState.PAUSED, None, "PAUSED"),
        (VmState.PAUSED, TaskState.UNPAUSING, "PAUSED"),
        (VmState.SUSPENDED, TaskState.RESUMING, "SUSPENDED"),
        (VmState.SUSPENDED, TaskState.REBOOTING_HARD, "HARD_REBOOT"),
        (VmState.ACTIVE, TaskState.PAUSING, "ACTIVE"),
        (VmState.ACTIVE, TaskState.IMAGE_SNAPSHOT, "ACTIVE"),
        (VmState.ACTIVE, TaskState.REBUILDING, "REBUILD"),
        (VmState.STOPPED, TaskState.REBUILDING, "REBUILD"),
        (VmState.ERROR, TaskState.REBUILDING, "REBUILD"),
        ("nonsense", None, "UNKNOWN"),
    ],
)
def test_api_status_follows_vm_and_task_state(vm_state, task_state, status):
    assert api_status(vm_state, task_state) == status


def test_start_only_from_stopped_and_idle():
    assert can("start", VmState.STOPPED, None)
    assert not can("start", VmState.ACTIVE, None)
    assert not can("start", VmState.STOPPED, TaskState.POWERING_ON)


def test_soft_reboot_needs_an_active_idle_instance_but_hard_reboot_interrupts_it():
    assert can("reboot", VmState.ACTIVE, None)
    assert not can("reboot", VmState.STOPPED, None)
    assert not can("reboot", VmState.ACTIVE, TaskState.REBOOTING)
    assert can("reboot_hard", VmState.ACTIVE, TaskState.REBOOTING)
    assert can("reboot_hard", VmState.STOPPED, None)
    assert not can("reboot_hard", VmState.ACTIVE, TaskState.POWERING_OFF)


def test_delete_interrupts_any_task_but_another_delete():
    for task in [None, TaskState.SCHEDULING, TaskState.SPAWNING, TaskState.POWERING_OFF, TaskState.REBOOTING]:
        assert can(
            "delete",
            VmState.BUILDING if task in (TaskState.SCHEDULING, TaskState.SPAWNING) else VmState.ACTIVE,
            task,
        )
    assert not can("delete", VmState.ACTIVE, TaskState.DELETING)
    assert not can("delete", VmState.DELETED, None)


def test_available_actions_are_what_the_buttons_show():
    assert available_actions(VmState.ACTIVE, None) == [
        "stop",
        "reboot",
        "reboot_hard",
        "pause",
        "suspend",
        "rebuild",
        "snapshot",
        "resize",
        "migrate",
        "shelve",
        "rescue",
        "live_migrate",
        "evacuate",
        "delete",
    ]
    assert available_actions(VmState.STOPPED, None) == [
        "start",
        "reboot_hard",
        "rebuild",
        "snapshot",
        "resize",
        "migrate",
        "shelve",
        "rescue",
        "evacuate",
        "delete",
    ]
    assert available_actions(VmState.PAUSED, None) == [
        "reboot_hard",
        "unpause",
        "snapshot",
        "shelve",
        "live_migrate",
        "delete",
    ]
    assert available_actions(VmState.SUSPENDED, None) == ["reboot_hard", "resume", "snapshot", "shelve", "delete"]
    assert available_actions(VmState.RESIZED, None) == ["confirm_resize", "revert_resize", "delete"]
    assert available_actions(VmState.SHELVED, None) == ["shelve_offload", "unshelve", "delete"]
    assert available_actions(VmState.SHELVED_OFFLOADED, None) == ["unshelve", "delete"]
    assert available_actions(VmState.RESCUED, None) == ["unrescue", "delete"]
    assert available_actions(VmState.BUILDING, TaskState.SPAWNING) == ["delete"]


def test_every_action_sets_a_task_state_with_a_lease():
    from django.conf import settings

    for rule in ALLOWED.values():
        assert rule.task_state in settings.CLOUD["TASK_LEASES"]


def test_pause_suspend_rebuild_and_snapshot_follow_the_compute_api():
    assert can("pause", VmState.ACTIVE, None) and not can("pause", VmState.STOPPED, None)
    assert can("unpause", VmState.PAUSED, None) and not can("unpause", VmState.ACTIVE, None)
    assert can("suspend", VmState.ACTIVE, None) and not can("suspend", VmState.PAUSED, None)
    assert can("resume", VmState.SUSPENDED, None) and not can("resume", VmState.STOPPED, None)
    for vm_state in (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR):
        assert can("rebuild", vm_state, None)
    assert not can("rebuild", VmState.PAUSED, None)
    for vm_state in (VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED):
        assert can("snapshot", vm_state, None)
    assert not can("snapshot", VmState.ERROR, None)
    assert not can("snapshot", VmState.ACTIVE, TaskState.PAUSING)
    for task in (TaskState.PAUSING, TaskState.REBUILDING, TaskState.IMAGE_SNAPSHOT, TaskState.RESUMING):
        assert can("delete", VmState.ACTIVE, task)
    assert can("reboot_hard", VmState.SUSPENDED, None) and can("reboot_hard", VmState.PAUSED, None)


def test_every_action_has_a_result_and_a_lock_rule():
    # The moves are finished step by step by their own reports (portal.services.moves).
    moves = {"resize", "migrate", "confirm_resize", "revert_resize", "unshelve", "live_migrate", "evacuate"}
    assert set(RESULT_VM_STATE) | {"delete"} | moves == set(ALLOWED)
    assert "snapshot" not in LOCKED_ACTIONS and set(ALLOWED) >= LOCKED_ACTIONS


@pytest.mark.parametrize(
    "status",
    [
        "ACTIVE",
        "BUILD",
        "SHUTOFF",
        "PAUSED",
        "SUSPENDED",
        "REBUILD",
        "HARD_REBOOT",
        "ERROR",
        "RESIZE",
        "VERIFY_RESIZE",
        "REVERT_RESIZE",
        "SHELVED",
        "SHELVED_OFFLOADED",
        "RESCUE",
        "MIGRATING",
    ],
)
def test_a_status_filter_selects_exactly_what_shows_that_status(status):
    """Every (vm_state, task_state) pair the table knows is selected by its own status and no other."""
    vm_states = [value for name, value in vars(VmState).items() if not name.startswith("_")]
    task_states = [None] + [value for name, value in vars(TaskState).items() if not name.startswith("_")]
    pairs = [(vm, task) for vm in vm_states for task in task_states]
    matches = states_for_status(status)

    def selected(vm, task):
        for m in matches:
            if m.vm_state != vm:
                continue
            if m.other_tasks and task not in m.excluded_tasks:
                return True
            if task in m.task_states:
                return True
        return False

    for vm, task in pairs:
        assert selected(vm, task) == (api_status(vm, task) == status), (vm, task)


def test_unknown_and_never_shown_statuses():
    assert states_for_status("BOGUS") is None
    assert states_for_status("SOFT_DELETED") == []
    assert states_for_status("paused") == states_for_status("PAUSED")


def test_a_builds_progress_only_grows_through_its_steps():
    figures = [server_progress(VmState.BUILDING, TaskState.SCHEDULING, 0)]
    for step in BUILD_STEPS:
        figures += [server_progress(VmState.BUILDING, step, percent) for percent in (0, 50, 100)]
    figures.append(server_progress(VmState.ACTIVE, None, 0))
    assert figures == sorted(figures) and (figures[0], figures[-1]) == (0, 100)
    assert server_progress(VmState.BUILDING, TaskState.BLOCK_DEVICE_MAPPING, 50) == 50
    # A host's figure is never taken beyond its step's span.
    assert server_progress(VmState.BUILDING, TaskState.BLOCK_DEVICE_MAPPING, 500) == 90
    assert server_progress(VmState.ACTIVE, TaskState.MIGRATING, -3) == 0
