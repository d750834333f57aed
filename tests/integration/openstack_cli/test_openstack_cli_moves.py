"""Server moves with the real `openstack` CLI: resize (confirm and revert), cold migration with `server
migration list`, shelve/unshelve and rescue/unrescue, against the live API, the conductor and two compute
hosts on libvirt's test driver. The CLI negotiates the compute microversion with the cloud (up to 2.75)."""

from __future__ import annotations

import pytest

from portal.models import Instance
from tests.factories import FlavorFactory
from tests.openstack_cli import rows_by
from tests.processes import Cluster, purge_broker, wait_for_host, wait_until

pytestmark = pytest.mark.integration

# The moves are the compute API's; how the CLI authenticates is tested by the other modules with both.
CLI_IDENTITIES = ("builtin",)

HOSTS = ("testhost1", "testhost2")


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """Conductor and two compute hosts on libvirt's test driver: a migration needs somewhere to go."""
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("cluster"))
    cluster.start_conductor()
    for host in HOSTS:
        cluster.start_compute(host)
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture
def hosts_up(cluster, transactional_db):
    for host in HOSTS:
        wait_for_host(host)
    return HOSTS


@pytest.fixture
def small_flavor(transactional_db):
    return FlavorFactory(flavorid="2", name="m1.small", vcpus=2, memory_mb=1024, root_gb=2)


@pytest.fixture
def vm1(cli, hosts_up, tiny_flavor, small_flavor, demo_image):
    server = cli.member.json("server", "create", "--image", "demo", "--flavor", "m1.tiny", "--wait", "vm1")
    assert server["status"] == "ACTIVE", server
    return server


def host_of(server_id: str) -> str:
    return Instance.objects.select_related("host").get(uuid=server_id).host.name


def test_server_resize_confirm(cli, vm1):
    cli.member.ok("server", "resize", "--flavor", "m1.small", "--wait", "vm1")
    shown = cli.member.json("server", "show", "vm1")
    assert shown["status"] == "VERIFY_RESIZE"
    assert shown["OS-EXT-STS:vm_state"] == "resized"
    assert "m1.small" in str(shown["flavor"])
    # The disk travels as a hidden image: the member's image list does not show it.
    assert cli.member.value("image", "list", "-c", "Name").split() == ["demo"]

    cli.member.ok("server", "resize", "confirm", "vm1")
    shown = cli.member.wait_for_status("vm1", "ACTIVE")
    assert "m1.small" in str(shown["flavor"])
    assert shown["OS-EXT-STS:task_state"] is None
    # Confirming again is a conflict: there is no resize waiting any more.
    assert "Exception: 409:" in cli.member.fails("server", "resize", "confirm", "vm1")

    (row,) = cli.admin.json("server", "migration", "list", "--server", vm1["id"])
    assert row["Type"] == "resize"
    assert row["Status"] == "confirmed"
    assert row["Server UUID"] == vm1["id"]
    assert row["Old Flavor"] != row["New Flavor"]
    assert row["UUID"]  # the CLI negotiated 2.59 or later: migrations carry their uuid
    actions = sorted(event["Action"] for event in cli.member.json("server", "event", "list", "vm1"))
    assert actions == ["confirmResize", "create", "resize"]


def test_server_resize_revert(cli, vm1):
    source = host_of(vm1["id"])
    cli.member.ok("server", "resize", "--flavor", "m1.small", "--wait", "vm1")
    assert cli.member.json("server", "show", "vm1")["status"] == "VERIFY_RESIZE"

    cli.member.ok("server", "resize", "revert", "vm1")
    shown = cli.member.wait_for_status("vm1", "ACTIVE")
    assert "m1.tiny" in str(shown["flavor"])  # the old flavor is back
    assert "m1.small" not in str(shown["flavor"])
    assert host_of(vm1["id"]) == source

    (row,) = cli.admin.json("server", "migration", "list", "--server", vm1["id"])
    assert (row["Type"], row["Status"]) == ("resize", "reverted")
    actions = sorted(event["Action"] for event in cli.member.json("server", "event", "list", "vm1"))
    assert actions == ["create", "resize", "revertResize"]


def test_server_migrate_and_migration_list(cli, vm1):
    server = vm1["id"]  # the admin is in another project: by id
    source = host_of(server)
    (target,) = set(HOSTS) - {source}
    # Cold migration is for admins.
    assert "Exception: 403:" in cli.member.fails("server", "migrate", "vm1")

    cli.admin.ok("server", "migrate", "--wait", server)
    shown = cli.admin.json("server", "show", server)
    assert shown["status"] == "VERIFY_RESIZE"
    assert shown["OS-EXT-SRV-ATTR:host"] == target
    cli.admin.ok("server", "migrate", "confirm", server)
    shown = cli.admin.wait_for_status(server, "ACTIVE")
    assert shown["OS-EXT-SRV-ATTR:host"] == target
    assert "m1.tiny" in str(shown["flavor"])
    assert host_of(server) == target

    # A named host must exist and be another one: both are the request's fault (400), and nothing moves.
    refused = cli.admin.fails("server", "migrate", "--host", "ghost", server)
    assert "Exception: 400:" in refused and "Compute host ghost could not be found." in refused, refused
    refused = cli.admin.fails("server", "migrate", "--host", target, server)
    assert "Exception: 400:" in refused and f"to current host ({target})" in refused, refused
    assert cli.admin.json("server", "show", server)["status"] == "ACTIVE"

    # Back again, naming the host (2.56).
    cli.admin.ok("server", "migrate", "--host", source, "--wait", server)
    assert cli.admin.json("server", "show", server)["OS-EXT-SRV-ATTR:host"] == source
    cli.admin.ok("server", "migrate", "revert", server)
    assert cli.admin.wait_for_status(server, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == target

    # Each move is in the server's action log, as the CLI lists it.
    actions = [event["Action"] for event in cli.admin.json("server", "event", "list", server)]
    assert sorted(actions) == ["confirmResize", "create", "migrate", "migrate", "revertResize"]

    rows = cli.admin.json("server", "migration", "list", "--server", server)
    assert sorted((row["Type"], row["Status"], row["Source Compute"], row["Dest Compute"]) for row in rows) == [
        ("migration", "confirmed", source, target),
        ("migration", "reverted", target, source),
    ]
    assert all(row["Old Flavor"] == row["New Flavor"] for row in rows)  # a migration keeps the flavor
    by_status = rows_by(cli.admin.json("server", "migration", "list", "--status", "confirmed"), "Status")
    assert by_status["confirmed"]["Server UUID"] == vm1["id"]
    assert cli.admin.json("server", "migration", "list", "--type", "resize") == []
    # The member cannot list migrations.
    assert "Exception: 403:" in cli.member.fails("server", "migration", "list")


def test_server_shelve_unshelve(cli, vm1):
    cli.member.ok("server", "shelve", "vm1")
    shown = cli.member.wait_for_status("vm1", "SHELVED_OFFLOADED")
    assert shown["OS-EXT-STS:vm_state"] == "shelved_offloaded"
    assert Instance.objects.get(uuid=vm1["id"]).host is None
    # The disk is kept as the member's snapshot while the server is shelved.
    assert "vm1-shelved" in cli.member.value("image", "list", "-c", "Name").split()

    cli.member.ok("server", "unshelve", "vm1")
    shown = cli.member.wait_for_status("vm1", "ACTIVE")
    assert shown["OS-EXT-STS:task_state"] is None
    assert host_of(vm1["id"]) in HOSTS
    wait_until(
        lambda: "vm1-shelved" not in cli.member.value("image", "list", "-c", "Name").split(),
        30,
        message="the shelved image deleted after the unshelve",
    )
    actions = sorted(event["Action"] for event in cli.member.json("server", "event", "list", "vm1"))
    assert actions == ["create", "shelve", "unshelve"]


def test_server_rescue_unrescue(cli, vm1):
    cli.member.ok("server", "rescue", "vm1")
    shown = cli.member.wait_for_status("vm1", "RESCUE")
    assert shown["OS-EXT-STS:vm_state"] == "rescued"
    # A rescued server cannot be resized.
    assert "Exception: 409:" in cli.member.fails("server", "resize", "--flavor", "m1.small", "vm1")

    cli.member.ok("server", "unrescue", "vm1")
    shown = cli.member.wait_for_status("vm1", "ACTIVE")
    assert shown["OS-EXT-STS:vm_state"] == "active"
    actions = sorted(event["Action"] for event in cli.member.json("server", "event", "list", "vm1"))
    assert actions == ["create", "rescue", "unrescue"]
