"""Live migration, its progress and abort, and evacuation with the real `openstack` CLI, against the live
API, the conductor and two real hypervisor hosts: each its own private libvirtd (127.0.0.43 and .44) and
instance directory, the demo image under TCG. libvirt's test driver runs no migration job and the fake
driver moves guests only between drivers of one process, so these are real guests (the system tier)."""

from __future__ import annotations

import libvirt
import pytest

from portal.api import microversion
from portal.models import Instance, Project
from tests.images import public_image
from tests.libvirt_hosts import LibvirtHosts, start_compute_on
from tests.openstack_cli import rows_by
from tests.processes import Cluster, purge_broker, wait_for_host, wait_until
from tests.system.test_host_moves import DEMO_IMAGE

pytestmark = pytest.mark.system

# The CLI's side is the same with either identity; real guests are slow: the built-in one only.
CLI_IDENTITIES = ("builtin",)
HOSTS = {"cli-live-1": "127.0.0.43", "cli-live-2": "127.0.0.44"}


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    if not DEMO_IMAGE.is_file():
        pytest.skip(f"{DEMO_IMAGE} is missing: run scripts/build_demo_image.sh")
    purge_broker()
    work_dir = tmp_path_factory.mktemp("cli-live")
    cluster = Cluster(live_server.url, work_dir)
    cluster.libvirt_hosts = LibvirtHosts(work_dir / "libvirt")
    try:
        cluster.start_conductor()
        for name, address in HOSTS.items():
            start_compute_on(cluster, name, cluster.libvirt_hosts.start(name, address))
        yield cluster
    finally:
        with django_db_blocker.unblock():
            cluster.stop()
        cluster.libvirt_hosts.stop()


@pytest.fixture
def demo_image(cluster, transactional_db, cli):
    """The real demo image (the directory's ``demo_image`` is an empty disk, enough for the test driver)."""
    for name in HOSTS:
        wait_for_host(name)
    return public_image(project=Project.objects.order_by("pk").first(), path=DEMO_IMAGE, name="demo")


@pytest.fixture
def vm1(cli, demo_image, tiny_flavor):
    server = cli.member.json("server", "create", "--image", "demo", "--flavor", "m1.tiny", "--wait", "vm1")
    assert server["status"] == "ACTIVE", server
    return server


def host_of(server_id: str) -> str:
    return Instance.objects.select_related("host").get(uuid=server_id).host.name


def shown_on(cli, server_id: str, host: str, status: str = "ACTIVE") -> dict:
    """``server show`` of a server that must be ACTIVE (or ``status``) on ``host`` with no task running."""
    shown = cli.admin.json("server", "show", server_id)
    assert (shown["status"], shown["OS-EXT-STS:task_state"], shown["OS-EXT-SRV-ATTR:host"]) == (
        status,
        None,
        host,
    ), shown
    # Running, or shut down (the JSON output keeps the number).
    assert shown["OS-EXT-STS:power_state"] == (1 if status == "ACTIVE" else 4)
    return shown


def live_rows(cli, server_id: str) -> list[dict]:
    return [
        row
        for row in cli.admin.json("server", "migration", "list", "--server", server_id)
        if row["Type"] == "live-migration"
    ]


def test_live_migration_there_and_back_and_what_the_cli_shows_of_it(cli, cluster, vm1):
    server = vm1["id"]
    source = host_of(server)
    (target,) = set(HOSTS) - {source}
    shown_on(cli, server, source)
    # Live migration is for admins.
    assert "Exception: 403:" in cli.member.fails("server", "migrate", "--live-migration", "vm1")

    cli.admin.ok("server", "migrate", "--live-migration", "--host", target, "--wait", server)
    shown_on(cli, server, target)
    assert host_of(server) == target
    assert server in cluster.libvirt_hosts.domain_uuids(target)
    assert server not in cluster.libvirt_hosts.domain_uuids(source)
    assert not cluster.instance_dir(source, server).exists()  # block migration: nothing left behind

    (row,) = live_rows(cli, server)
    assert (row["Status"], row["Source Compute"], row["Dest Compute"]) == ("completed", source, target), row
    assert row["Server UUID"] == server and row["UUID"]
    assert row["Old Flavor"] == row["New Flavor"]  # a live migration keeps the flavor
    migration_id = str(row["Id"])

    # A finished migration is no longer shown, aborted or forced: nothing is in progress. (`server migration
    # show` is given the migration's UUID: with a numeric id, python-openstackclient 10.5 passes the server
    # and the migration to the SDK the wrong way round; with a UUID it finds the migration in the server's
    # in-progress list, `GET /servers/{id}/migrations`.)
    refused = cli.admin.fails("server", "migration", "show", server, row["UUID"])
    assert "In-progress live migration" in refused and "is not found" in refused, refused
    # Neither is there anything to abort or force: the server's state's conflict, as in Nova.
    refused = cli.admin.fails("server", "migration", "abort", server, migration_id)
    assert "Exception: 409:" in refused and "while it is in task_state None" in refused, refused
    refused = cli.admin.fails("server", "migration", "force", "complete", server, migration_id)
    assert "Exception: 409:" in refused and "while it is in task_state None" in refused, refused
    # The member may not touch migrations at all.
    assert "Exception: 403:" in cli.member.fails("server", "migration", "abort", server, migration_id)
    shown_on(cli, server, target)

    # Back, the scheduler choosing (the only other host).
    cli.admin.ok("server", "migrate", "--live-migration", "--wait", server)
    shown_on(cli, server, source)
    rows = live_rows(cli, server)
    assert sorted((r["Status"], r["Source Compute"], r["Dest Compute"]) for r in rows) == [
        ("completed", source, target),
        ("completed", target, source),
    ]
    actions = [event["Action"] for event in cli.admin.json("server", "event", "list", server)]
    assert sorted(actions) == ["create", "live-migration", "live-migration"], actions


def slow_down(cluster, host: str, server_id: str) -> None:
    """1 MiB/s for the guest's next migration (libvirt keeps the limit for the migration job), so that
    there is time to watch it and abort it."""
    conn = libvirt.open(cluster.libvirt_hosts.hosts[host].uri)
    try:
        conn.lookupByUUIDString(server_id).migrateSetMaxSpeed(1)
    finally:
        conn.close()


def test_a_slow_live_migration_shown_with_its_progress_then_aborted(cli, cluster, vm1):
    server = vm1["id"]
    source = host_of(server)
    (target,) = set(HOSTS) - {source}
    slow_down(cluster, source, server)
    cli.admin.ok("server", "migrate", "--live-migration", "--host", target, server)

    def running():
        rows = [row for row in live_rows(cli, server) if row["Status"] == "running"]
        if not rows:
            return None
        shown = cli.admin.json("server", "migration", "show", server, rows[0]["UUID"])
        return shown if shown["Memory Total Bytes"] else None

    shown = wait_until(running, 120, interval=0.5, message="a running migration with its progress")
    assert (shown["Status"], shown["Source Compute"], shown["Dest Compute"], shown["Server UUID"]) == (
        "running",
        source,
        target,
        server,
    ), shown
    # QEMU's own figures: what is left is part of the guest's memory, and some has gone already.
    assert 0 < shown["Memory Remaining Bytes"] <= shown["Memory Total Bytes"]
    assert shown["Memory Processed Bytes"] > 0
    assert shown["UUID"]
    during = cli.admin.json("server", "show", server)
    assert (during["status"], during["OS-EXT-STS:task_state"], during["OS-EXT-SRV-ATTR:host"]) == (
        "MIGRATING",
        "migrating",
        source,
    ), during
    # Another move while this one runs is a conflict.
    assert "Exception: 409:" in cli.admin.fails("server", "migrate", "--live-migration", server)

    cli.admin.ok("server", "migration", "abort", server, str(shown["ID"]))
    wait_until(
        lambda: cli.admin.json("server", "show", server)["OS-EXT-STS:task_state"] is None,
        120,
        interval=0.5,
        message="the aborted migration's end",
    )
    shown_on(cli, server, source)
    (row,) = live_rows(cli, server)
    assert (row["Status"], row["Dest Compute"]) == ("cancelled", target), row
    wait_until(lambda: server not in cluster.libvirt_hosts.domain_uuids(target), 30, message="nothing left there")
    assert not cluster.instance_dir(target, server).exists()
    # With nothing running, neither an abort nor a force-complete has anything to act on.
    assert "Exception: 409:" in cli.admin.fails("server", "migration", "abort", server, str(shown["ID"]))
    assert "Exception: 409:" in cli.admin.fails("server", "migration", "force", "complete", server, str(shown["ID"]))
    actions = sorted(event["Action"] for event in cli.admin.json("server", "event", "list", server))
    assert actions == ["create", "live-migration", "live_migration_abort"], actions


def test_evacuate_from_a_host_forced_down(cli, cluster, vm1):
    server = vm1["id"]
    source = host_of(server)
    (target,) = set(HOSTS) - {source}
    # While the host's service is up, evacuation is refused.
    assert "Exception: 409:" in cli.admin.fails("server", "evacuate", server)

    # The host dies: its worker and its libvirtd (with the guest) stop.
    cluster.processes[f"compute-{source}"].kill()
    cluster.libvirt_hosts.hosts[source].stop()
    try:
        cli.admin.ok("compute", "service", "set", "--down", source, "nova-compute")
        services = rows_by(cli.admin.json("compute", "service", "list", "--service", "nova-compute"), "Host")
        assert services[source]["State"] == "down"
        assert services[target]["State"] == "up"

        # Not `--wait`: python-openstackclient 10.5 waits for the status "ACTIVE" among lower-cased ones, so
        # it never sees it (against any cloud).
        cli.admin.ok("server", "evacuate", server)
        # The client speaks the newest microversion it knows; from 2.95 an evacuated server comes back stopped.
        evacuated = "SHUTOFF" if microversion.MAX_VERSION >= "2.95" else "ACTIVE"
        cli.admin.wait_for_status(server, evacuated, timeout=180)
        shown_on(cli, server, target, evacuated)
        assert host_of(server) == target
        rows = [
            r for r in cli.admin.json("server", "migration", "list", "--server", server) if r["Type"] == "evacuation"
        ]
        assert [(r["Status"], r["Source Compute"], r["Dest Compute"]) for r in rows] == [("done", source, target)]
        actions = sorted(event["Action"] for event in cli.admin.json("server", "event", "list", server))
        assert actions == ["create", "evacuate"], actions
    finally:
        cli.admin.run("compute", "service", "set", "--up", source, "nova-compute")
        cluster.libvirt_hosts.start(source, HOSTS[source])
        cluster.restart(f"compute-{source}")

    # The returning host removes what it still had of the guest, and never runs it there.
    wait_until(lambda: server not in cluster.libvirt_hosts.domain_uuids(source), 90, message="the leftover gone")
    assert host_of(server) == target
    shown_on(cli, server, target, evacuated)
