"""`openstack server add/remove volume`, `server volume list` and boot from volume with the real CLI, a real
Keystone and a real Cinder that validates Keystone tokens and is found through the catalog (``volumev3``).

The users make their volumes with `openstack volume create`, so the catalog entry works for them as well as
for the cloud. The cloud's own service user (``compute``: ``admin`` and ``service`` in the project
``service``) finds Cinder in the same catalog and sends its token as ``X-Service-Token`` with every call.
The compute host runs the fake driver: libvirt's test driver cannot hot-plug disks, so the host plays the
plugging while every Cinder call of the attachment flow (reserve, connect, complete, delete) is real.
Cinder's own view of the volumes is the judge.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.test import override_settings

from tests.cinder_service import SERVICE_PROJECT
from tests.openstack_cli import CommandFailed, rows_by
from tests.processes import Cluster, purge_broker

pytestmark = pytest.mark.integration
# Cinder here validates Keystone tokens.
CLI_IDENTITIES = ("keystone",)

HOST = "testhost1"  # the name the package's ``host_up`` waits for
SERVICE_USER = "compute"
SERVICE_PASSWORD = "compute-service-secret"


@pytest.fixture(scope="module")
def volume_settings(cli_cloud, keystone, keystone_cinder):
    """The live API as a cloud with its own service user, which Cinder accepts as a service."""
    user_id = keystone.user(SERVICE_USER, SERVICE_PASSWORD)
    project_id = keystone.project(SERVICE_PROJECT)
    for role in ("admin", "service"):
        keystone.grant(user_id, project_id, role)
    config = keystone.settings(USERNAME=SERVICE_USER, PASSWORD=SERVICE_PASSWORD, PROJECT_NAME=SERVICE_PROJECT)
    override = override_settings(KEYSTONE=config, CINDER={**settings.CINDER, "ENDPOINT": "", "VOLUME_LEASE": 10})
    override.enable()
    yield config
    override.disable()


@pytest.fixture(scope="module")
def cluster(volume_settings, keystone_cinder, django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """The conductor, with the same Keystone settings as the API, and one compute host (fake driver)."""
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("cli-volume-cloud"))
    cluster.env.update(
        KEYSTONE_AUTH_URL=volume_settings["AUTH_URL"],
        KEYSTONE_USERNAME=volume_settings["USERNAME"],
        KEYSTONE_PASSWORD=volume_settings["PASSWORD"],
        KEYSTONE_PROJECT_NAME=volume_settings["PROJECT_NAME"],
        KEYSTONE_REGION_NAME=volume_settings["REGION_NAME"],
        LEASE_VOLUME="10",
    )
    cluster.env.pop("CINDER_ENDPOINT", None)
    cluster.start_conductor()
    cluster.start_compute(HOST, driver="fake")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture
def vm1(cli, host_up, tiny_flavor, demo_image):
    server = cli.member.json("server", "create", "--image", "demo", "--flavor", "m1.tiny", "--wait", "vm1")
    assert server["status"] == "ACTIVE", server
    return server


def make_volume(cli, name: str) -> dict:
    """`openstack volume create` as the member, once Cinder made it."""
    created = cli.member.json("volume", "create", "--size", "1", name)
    assert created["name"] == name
    return wait_for_volume(cli, created["id"], "available")


def wait_for_volume(cli, volume: str, status: str, timeout: float = 60) -> dict:
    """`openstack volume show` until the volume has ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        shown = cli.member.json("volume", "show", volume)
        if shown["status"] == status:
            return shown
        if shown["status"].startswith("error") or time.monotonic() > deadline:
            raise CommandFailed(f"volume {volume} is {shown['status']}, not {status}")
        time.sleep(0.5)


def wait_for_volume_gone(cli, volume_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        result = cli.member.run("volume", "show", volume_id)
        if result.returncode != 0:
            return result.stderr
        if time.monotonic() > deadline:
            raise CommandFailed(f"volume {volume_id} is still there after {timeout}s:\n{result.stdout}")
        time.sleep(0.5)


def attached_ids(shown: dict) -> list[str]:
    """The volume ids `server show -f json` lists as attached."""
    return [volume["id"] for volume in shown["volumes_attached"]]


def test_volume_create_add_list_show_remove(cli, vm1, keystone_cinder):
    volume = make_volume(cli, "v1")
    assert volume["size"] == 1
    assert rows_by(cli.member.json("volume", "list"), "Name")["v1"]["Status"] == "available"
    # Another project sees none of it.
    assert cli.other.json("volume", "list") == []

    added = cli.member.json("server", "add", "volume", "--device", "/dev/vdb", "vm1", "v1")
    assert added["Volume ID"] == volume["id"]
    assert added["Server ID"] == vm1["id"]
    assert added["Device"] == "/dev/vdb"

    in_use = wait_for_volume(cli, "v1", "in-use")
    (attachment,) = in_use["attachments"]
    assert attachment["server_id"] == vm1["id"]
    assert attachment["device"] == "/dev/vdb"
    # Only an admin sees the host: the one whose connector went to Cinder.
    assert keystone_cinder.volume(cli.member_project_id, volume["id"])["attachments"][0]["host_name"] == HOST
    (row,) = cli.member.json("server", "volume", "list", "vm1")
    assert (row["Volume ID"], row["Device"], row["Server ID"]) == (volume["id"], "/dev/vdb", vm1["id"])
    assert attached_ids(cli.member.json("server", "show", "vm1")) == [volume["id"]]
    # Cinder's own record: one attachment, completed, for the server.
    (record,) = keystone_cinder.attachments(cli.member_project_id, volume["id"])
    assert record["instance"] == vm1["id"]
    assert record["status"] == "attached"

    assert cli.member.ok("server", "remove", "volume", "vm1", "v1") == ""

    available = wait_for_volume(cli, "v1", "available")
    assert available["attachments"] == []
    assert keystone_cinder.attachments(cli.member_project_id, volume["id"]) == []
    assert cli.member.json("server", "volume", "list", "vm1") == []
    assert attached_ids(cli.member.json("server", "show", "vm1")) == []
    cli.member.ok("volume", "delete", "v1")
    wait_for_volume_gone(cli, volume["id"])


def test_a_volume_in_use_cannot_be_added_to_a_second_server(cli, vm1, keystone_cinder):
    vm2 = cli.member.json("server", "create", "--image", "demo", "--flavor", "m1.tiny", "--wait", "vm2")
    volume = make_volume(cli, "shared")
    cli.member.ok("server", "add", "volume", "vm1", "shared")
    wait_for_volume(cli, "shared", "in-use")

    error = cli.member.fails("server", "add", "volume", "vm2", "shared")

    # Nova's answer for a volume that is not available (InvalidVolume): 400, with the reason.
    assert error.startswith("BadRequestException: 400: "), error
    assert f"Invalid volume: volume {volume['id']} is already attached to a server." in error
    assert cli.member.json("server", "volume", "list", "vm2") == []
    (attachment,) = wait_for_volume(cli, "shared", "in-use")["attachments"]
    assert attachment["server_id"] == vm1["id"]
    assert len(keystone_cinder.attachments(cli.member_project_id, volume["id"])) == 1
    assert vm2["status"] == "ACTIVE"


def test_server_create_from_an_existing_volume(cli, host_up, tiny_flavor, keystone_cinder):
    volume = make_volume(cli, "root")

    server = cli.member.json("server", "create", "--volume", "root", "--flavor", "m1.tiny", "--wait", "bfv")

    assert server["status"] == "ACTIVE", server
    assert attached_ids(server) == [volume["id"]]
    (attachment,) = wait_for_volume(cli, "root", "in-use")["attachments"]
    assert (attachment["server_id"], attachment["device"]) == (server["id"], "/dev/vda")
    (row,) = cli.member.json("server", "volume", "list", "bfv")
    assert (row["Volume ID"], row["Device"]) == (volume["id"], "/dev/vda")
    # The root volume stays with its server.
    assert "root device" in cli.member.fails("server", "remove", "volume", "bfv", "root")

    cli.member.ok("server", "delete", "--wait", "bfv")

    # Not delete_on_termination: the volume outlives the server, free again.
    assert wait_for_volume(cli, "root", "available")["attachments"] == []
    assert keystone_cinder.attachments(cli.member_project_id, volume["id"]) == []


def test_server_create_from_an_image_onto_a_new_volume(cli, host_up, tiny_flavor, demo_image, keystone_cinder):
    mapping = f"source_type=image,uuid={demo_image.id},destination_type=volume,volume_size=1,delete_on_termination=true"

    server = cli.member.json(
        "server", "create", "--block-device", f"{mapping},boot_index=0", "--flavor", "m1.tiny", "--wait", "bfi"
    )

    assert server["status"] == "ACTIVE", server
    (volume_id,) = attached_ids(server)
    # The new volume is the user's own, in their project.
    volume = wait_for_volume(cli, volume_id, "in-use")
    assert volume["size"] == 1
    assert volume["attachments"][0]["server_id"] == server["id"]
    assert volume["attachments"][0]["device"] == "/dev/vda"
    assert volume_id in rows_by(cli.member.json("volume", "list"), "ID")

    cli.member.ok("server", "delete", "--wait", "bfi")

    assert f"No Volume found for {volume_id}" in wait_for_volume_gone(cli, volume_id)
    assert keystone_cinder.volume(cli.member_project_id, volume_id) is None  # gone, not merely out of sight


def test_a_service_user_without_the_service_role_is_refused_by_cinder(cli, vm1, keystone, volume_settings):
    """Cinder takes ``X-Service-Token`` only from a user with the ``service`` role: without it every call
    is refused, and the CLI says so instead of showing a server error."""
    volume = make_volume(cli, "v-norole")
    user_id = keystone.user("compute-norole", "compute-norole-secret")
    keystone.grant(user_id, keystone.project(SERVICE_PROJECT), "admin")
    config = {**volume_settings, "USERNAME": "compute-norole", "PASSWORD": "compute-norole-secret"}

    with override_settings(KEYSTONE=config):  # the API's service user; the conductor keeps its own
        error = cli.member.fails("server", "add", "volume", "vm1", "v-norole")

    assert error.startswith("ConflictException: 409: "), error
    assert "The block storage service refused the cloud's credentials." in error
    assert wait_for_volume(cli, "v-norole", "available")["attachments"] == []
    assert cli.member.json("server", "volume", "list", "vm1") == []
    # With the role, the same user is a service Cinder accepts.
    keystone.grant(user_id, keystone.project(SERVICE_PROJECT), "service")
    with override_settings(KEYSTONE=config):
        cli.member.ok("server", "add", "volume", "vm1", "v-norole")
    assert wait_for_volume(cli, "v-norole", "in-use")["attachments"][0]["server_id"] == vm1["id"]
    assert volume["id"] in attached_ids(cli.member.json("server", "show", "vm1"))
