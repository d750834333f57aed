"""`openstack server …` with the real CLI, the cloud's built-in identity (and a real Keystone for a server's
create, list, show and delete), the live API, the conductor and a compute host on libvirt's test driver: every
server command of the issue that needs no real guest, its output checked."""

from __future__ import annotations

import pytest

from portal.models import Instance
from tests.openstack_cli import rows_by, with_identities

# Nova's power states, as `-f json` prints them.
RUNNING, PAUSED, SHUTDOWN, SUSPENDED = 1, 3, 4, 7

pytestmark = pytest.mark.integration


@pytest.fixture
def vm1(cli, host_up, tiny_flavor, demo_image):
    """``vm1``, booted by the member with the command the issue names, and ACTIVE."""
    server = cli.member.json("server", "create", "--image", "demo", "--flavor", "m1.tiny", "--wait", "vm1")
    assert server["status"] == "ACTIVE", server
    return server


@with_identities("keystone", "builtin")
def test_server_create_wait_list_show_delete(cli, vm1, demo_image):
    assert vm1["name"] == "vm1"
    assert vm1["image"].startswith("demo (") and str(demo_image.id) in vm1["image"]
    assert "m1.tiny" in str(vm1["flavor"])
    instance = Instance.objects.get(uuid=vm1["id"])
    assert instance.project_id == cli.member_project_id  # the Keystone project is the portal project
    assert instance.host.name == "testhost1"

    (row,) = cli.member.json("server", "list")
    assert (row["ID"], row["Name"], row["Status"]) == (vm1["id"], "vm1", "ACTIVE")
    assert row["Image"] == "demo"
    assert row["Flavor"] == "m1.tiny"

    shown = cli.member.json("server", "show", "vm1")
    assert shown["id"] == vm1["id"]
    assert shown["status"] == "ACTIVE"
    assert shown["project_id"] == cli.member_project_id
    assert shown["user_id"] == cli.member_user_id  # Keystone's id for the user, as Nova shows it
    assert shown["OS-EXT-STS:vm_state"] == "active"
    assert shown["OS-EXT-STS:power_state"] == RUNNING

    # Another project's user does not see it; an admin does with --all-projects.
    assert cli.other.json("server", "list") == []
    assert "No Server found for vm1" in cli.other.fails("server", "show", "vm1")
    assert cli.admin.json("server", "list") == []
    everyone = rows_by(cli.admin.json("server", "list", "--all-projects"), "Name")
    assert everyone["vm1"]["ID"] == vm1["id"]
    # The CLI turns a user name into Keystone's id for the user_id filter.
    by_user = cli.admin.json("server", "list", "--all-projects", "--user", "cli-member", "--user-domain", "Default")
    assert [row["ID"] for row in by_user] == [vm1["id"]]
    assert cli.admin.json("server", "list", "--all-projects", "--user", "admin", "--user-domain", "Default") == []

    cli.member.ok("server", "delete", "--wait", "vm1")
    assert cli.member.json("server", "list") == []
    assert "No Server found for vm1" in cli.member.fails("server", "show", "vm1")


def test_server_stop_start(cli, vm1):
    assert cli.member.ok("server", "stop", "vm1") == ""
    stopped = cli.member.wait_for_status("vm1", "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == SHUTDOWN
    # Stopping twice is a conflict the CLI reports.
    assert "409" in cli.member.fails("server", "stop", "vm1")
    cli.member.ok("server", "start", "vm1")
    started = cli.member.wait_for_status("vm1", "ACTIVE")
    assert started["OS-EXT-STS:power_state"] == RUNNING


def test_server_reboot(cli, vm1):
    cli.member.ok("server", "reboot", "--wait", "vm1")
    shown = cli.member.json("server", "show", "vm1")
    assert shown["status"] == "ACTIVE"
    assert shown["OS-EXT-STS:task_state"] is None
    cli.member.ok("server", "reboot", "--hard", "--wait", "vm1")
    assert cli.member.value("server", "show", "vm1", "-c", "status") == "ACTIVE"


def test_server_pause_unpause(cli, vm1):
    cli.member.ok("server", "pause", "vm1")
    paused = cli.member.wait_for_status("vm1", "PAUSED")
    assert paused["OS-EXT-STS:power_state"] == PAUSED
    cli.member.ok("server", "unpause", "vm1")
    assert cli.member.wait_for_status("vm1", "ACTIVE")["OS-EXT-STS:power_state"] == RUNNING


def test_server_suspend_resume(cli, vm1):
    cli.member.ok("server", "suspend", "vm1")
    assert cli.member.wait_for_status("vm1", "SUSPENDED")["OS-EXT-STS:power_state"] == SUSPENDED
    cli.member.ok("server", "resume", "vm1")
    assert cli.member.wait_for_status("vm1", "ACTIVE")["OS-EXT-STS:power_state"] == RUNNING


def test_server_lock_unlock(cli, vm1):
    cli.member.ok("server", "lock", "--reason", "maintenance window", "vm1")
    shown = cli.member.json("server", "show", "vm1")
    assert shown["locked"] is True
    assert shown["locked_reason"] == "maintenance window"
    assert rows_by(cli.member.json("server", "list", "--locked"), "Name").keys() == {"vm1"}
    # A locked server refuses its owner's actions.
    assert "locked" in cli.member.fails("server", "stop", "vm1").lower()
    assert cli.member.value("server", "show", "vm1", "-c", "status") == "ACTIVE"

    cli.member.ok("server", "unlock", "vm1")
    assert cli.member.json("server", "show", "vm1")["locked"] is False
    cli.member.ok("server", "stop", "vm1")
    cli.member.wait_for_status("vm1", "SHUTOFF")


def test_server_image_create(cli, vm1):
    snapshot = cli.member.json("server", "image", "create", "--name", "vm1-snap", "--wait", "vm1")
    assert snapshot["name"] == "vm1-snap"
    assert snapshot["status"] == "active"
    shown = cli.member.json("image", "show", "vm1-snap")
    assert shown["id"] == snapshot["id"]
    assert shown["status"] == "active"
    assert shown["disk_format"] == "qcow2"
    assert shown["size"] > 0
    assert shown["owner"] == cli.member_project_id
    assert "vm1-snap" in cli.member.value("image", "list", "-c", "Name")
    # The snapshot boots like any image.
    again = cli.member.json("server", "create", "--image", "vm1-snap", "--flavor", "m1.tiny", "--wait", "vm2")
    assert again["status"] == "ACTIVE"


def test_server_event_list(cli, vm1):
    cli.member.ok("server", "stop", "vm1")
    cli.member.wait_for_status("vm1", "SHUTOFF")
    cli.member.ok("server", "start", "vm1")
    cli.member.wait_for_status("vm1", "ACTIVE")
    events = cli.member.json("server", "event", "list", "vm1")
    assert sorted(e["Action"] for e in events) == ["create", "start", "stop"]
    assert all(e["Request ID"].startswith("req-") for e in events)
    assert all(e["Server ID"] == vm1["id"] for e in events)
    create = next(e for e in events if e["Action"] == "create")
    detail = cli.member.json("server", "event", "show", "vm1", create["Request ID"])
    assert detail["action"] == "create"
    assert [event["event"] for event in detail["events"]][0] == "api_create" or any(
        event["event"] == "compute_build_and_run_instance" for event in detail["events"]
    )
