"""The server's representation per microversion: GET, PUT and rebuild answers, 2.1 to 2.104."""

import pytest

from portal.models import InstanceTag, ServerGroup
from portal.states import VmState

from .helpers import BASE, action, booted, on_host, v

pytestmark = pytest.mark.integration

# Every GET /servers/{id} has these, whatever the version and role.
COMMON = {
    "id",
    "name",
    "links",
    "status",
    "tenant_id",
    "user_id",
    "metadata",
    "hostId",
    "image",
    "flavor",
    "created",
    "updated",
    "addresses",
    "accessIPv4",
    "accessIPv6",
    "OS-DCF:diskConfig",
    "progress",
    "OS-EXT-AZ:availability_zone",
    "config_drive",
    "key_name",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:power_state",
    "os-extended-volumes:volumes_attached",
    "security_groups",
}
ADMIN_2_1 = {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname", "OS-EXT-SRV-ATTR:instance_name"}
ADMIN_2_3 = {
    "OS-EXT-SRV-ATTR:reservation_id",
    "OS-EXT-SRV-ATTR:launch_index",
    "OS-EXT-SRV-ATTR:hostname",
    "OS-EXT-SRV-ATTR:kernel_id",
    "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:root_device_name",
    "OS-EXT-SRV-ATTR:user_data",
}

# What each microversion adds to a member's view.
ADDED = [
    ("2.1", set()),
    ("2.9", {"locked"}),
    ("2.19", {"description"}),
    ("2.26", {"tags"}),
    ("2.63", {"trusted_image_certificates"}),
    ("2.71", {"server_groups"}),
    ("2.73", {"locked_reason"}),
    ("2.90", {"OS-EXT-SRV-ATTR:hostname"}),
    ("2.96", {"pinned_availability_zone"}),
    ("2.100", {"scheduler_hints"}),
]


def expected_keys(version):
    keys = set(COMMON)
    for since, added in ADDED:
        if tuple(map(int, version.split("."))) >= tuple(map(int, since.split("."))):
            keys |= added
    return keys


@pytest.fixture
def server(member, flavor, image):
    instance = on_host(booted(member, flavor, image, name="shape", metadata={"k": "v"}, description="about"))
    InstanceTag.objects.create(instance=instance, tag="t1")
    return instance


@pytest.mark.parametrize(
    "version",
    ["2.1", "2.8", "2.9", "2.18", "2.19", "2.26", "2.47", "2.62", "2.63", "2.71", "2.73"]
    + ["2.89", "2.90", "2.95", "2.96", "2.99", "2.100", "2.104"],
)
def test_member_show_keys_per_microversion(member, server, server_microversions, version):
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v(version)).json()["server"]
    assert set(body) == expected_keys(version)


@pytest.mark.parametrize(
    ("version", "extra"),
    [("2.1", ADMIN_2_1), ("2.3", ADMIN_2_1 | ADMIN_2_3), ("2.16", ADMIN_2_1 | ADMIN_2_3 | {"host_status"})],
)
def test_admin_show_has_the_extended_attributes(admin, server, version, extra):
    body = admin.client.get(f"{BASE}/servers/{server.uuid}", **v(version)).json()["server"]
    assert set(body) == expected_keys(version) | extra
    assert body["OS-EXT-SRV-ATTR:host"] == "hv1"
    assert body["OS-EXT-SRV-ATTR:instance_name"] == f"instance-{server.uuid}"
    if version == "2.16":
        assert body["host_status"] == "UP"
        assert body["OS-EXT-SRV-ATTR:hostname"] == "shape"


def test_values_of_the_versioned_attributes(member, server, server_microversions):
    group = ServerGroup.objects.create(name="g", project=member.project, user=member.user, policy="affinity")
    server.server_group = group
    server.save()
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.73")).json()["server"]
    assert body["locked"] is False and body["locked_reason"] is None
    assert body["description"] == "about"
    assert body["tags"] == ["t1"]
    assert body["trusted_image_certificates"] is None
    assert body["server_groups"] == [str(group.uuid)]
    assert body["metadata"] == {"k": "v"}
    assert body["addresses"] == {
        "private": [
            {
                "version": 4,
                "addr": "10.0.2.15",
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": server.mac_address,
            }
        ]
    }
    assert body["flavor"] == {
        "vcpus": 1,
        "ram": 512,
        "disk": 1,
        "ephemeral": 0,
        "swap": 0,
        "original_name": "m1.tiny",
        "extra_specs": {},
    }
    old = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.46")).json()["server"]
    assert old["flavor"]["id"] == "1" and set(old["flavor"]) == {"id", "links"}


def test_the_detail_list_leaves_server_groups_out(member, server, server_microversions):
    (body,) = member.client.get(f"{BASE}/servers/detail", **v("2.73")).json()["servers"]
    assert set(body) == expected_keys("2.73") - {"server_groups"}


def test_progress_and_fault_depend_on_the_status(member, server):
    assert member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.47")).json()["server"]["progress"] == 100
    server.vm_state = VmState.ERROR
    server.save()
    server.faults.create(code=500, message="It broke", details="Traceback: secret host detail")
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.47")).json()["server"]
    assert "progress" not in body
    assert body["fault"]["message"] == "It broke" and "details" not in body["fault"]
    assert set(body["fault"]) == {"code", "created", "message"}


@pytest.mark.parametrize(
    ("vm_state", "task_state", "step_progress", "status", "progress"),
    [
        (VmState.BUILDING, "scheduling", 0, "BUILD", 0),
        (VmState.BUILDING, "networking", 0, "BUILD", 5),
        (VmState.BUILDING, "block_device_mapping", 0, "BUILD", 10),
        (VmState.BUILDING, "block_device_mapping", 50, "BUILD", 50),
        (VmState.BUILDING, "block_device_mapping", 100, "BUILD", 90),
        (VmState.BUILDING, "spawning", 0, "BUILD", 90),
        (VmState.ACTIVE, "resize_prep", 0, "RESIZE", 0),
        (VmState.ACTIVE, "resize_migrating", 0, "RESIZE", 25),
        (VmState.STOPPED, "resize_migrated", 0, "RESIZE", 50),
        (VmState.ACTIVE, "resize_finish", 0, "RESIZE", 75),
        (VmState.RESIZED, None, 0, "VERIFY_RESIZE", 100),
        (VmState.ACTIVE, "migrating", 42, "MIGRATING", 42),
        (VmState.STOPPED, None, 0, "SHUTOFF", None),
        (VmState.ACTIVE, "image_snapshot", 0, "ACTIVE", 100),  # a task of an ACTIVE server that is no move
    ],
)
def test_progress_follows_the_steps_of_a_build_or_a_move(
    member, admin, server, vm_state, task_state, step_progress, status, progress
):
    """Nova's ``OS-EXT-STS:task_state`` steps of a build, and ``progress`` moving through them and a move."""
    server.vm_state, server.task_state, server.step_progress = vm_state, task_state, step_progress
    server.save()
    body = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.47")).json()["server"]
    assert (body["status"], body["OS-EXT-STS:task_state"], body.get("progress")) == (status, task_state, progress)
    (listed,) = admin.client.get(f"{BASE}/servers/detail?all_tenants=1", **v("2.47")).json()["servers"]
    assert listed.get("progress") == progress


def test_admins_see_the_faults_details(admin, server):
    server.vm_state = VmState.ERROR
    server.save()
    server.faults.create(code=500, message="It broke", details="Traceback")
    body = admin.client.get(f"{BASE}/servers/{server.uuid}", **v("2.47")).json()["server"]
    assert body["fault"]["details"] == "Traceback"


# --- PUT /servers/{id} ----------------------------------------------------------------------------

BRIEF = {
    "id",
    "name",
    "links",
    "status",
    "tenant_id",
    "user_id",
    "metadata",
    "hostId",
    "image",
    "flavor",
    "created",
    "updated",
    "addresses",
    "accessIPv4",
    "accessIPv6",
    "OS-DCF:diskConfig",
    "progress",
}


@pytest.mark.parametrize(
    ("version", "extra"),
    [
        ("2.1", set()),
        ("2.9", {"locked"}),
        ("2.19", {"locked", "description"}),
        ("2.26", {"locked", "description", "tags"}),
        ("2.71", {"locked", "description", "tags", "trusted_image_certificates", "server_groups"}),
    ],
)
def test_update_answers_with_the_brief_view(member, server, server_microversions, version, extra):
    body = {"server": {"name": "renamed"}}
    response = member.client.put(f"{BASE}/servers/{server.uuid}", body, format="json", **v(version))
    assert response.status_code == 200, response.content
    shown = response.json()["server"]
    assert set(shown) == BRIEF | extra
    assert shown["name"] == "renamed"
    assert set(shown["addresses"]["private"][0]) == {"addr", "version"}


def test_update_from_2_75_answers_with_everything(member, server, server_microversions):
    response = member.client.put(f"{BASE}/servers/{server.uuid}", {"server": {}}, format="json", **v("2.75"))
    assert set(response.json()["server"]) == expected_keys("2.75")


def test_update_name_and_description(member, server, reader):
    url = f"{BASE}/servers/{server.uuid}"
    response = member.client.put(url, {"server": {"name": "New Name", "description": None}}, format="json", **v("2.19"))
    assert response.status_code == 200
    server.refresh_from_db()
    assert (server.name, server.description, server.hostname) == ("New Name", None, "new-name")
    assert member.client.put(url, {"server": {"description": "x"}}, format="json", **v("2.18")).status_code == 400
    assert member.client.put(url, {"server": {"name": " pad"}}, format="json", **v("2.19")).status_code == 400
    assert member.client.put(url, {"server": {"name": ""}}, format="json", **v("2.19")).status_code == 400
    assert member.client.put(url, {"nope": {}}, format="json", **v("2.19")).status_code == 400
    assert reader.client.put(url, {"server": {"name": "r"}}, format="json", **v("2.19")).status_code == 403


# --- rebuild's answer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "extra"),
    [
        ("2.1", set()),
        ("2.26", {"locked", "description", "tags"}),
        ("2.54", {"locked", "description", "tags", "key_name"}),
        ("2.57", {"locked", "description", "tags", "key_name", "user_data"}),
        (
            "2.73",
            {
                "locked",
                "description",
                "tags",
                "key_name",
                "user_data",
                "trusted_image_certificates",
                "server_groups",
                "locked_reason",
            },
        ),
    ],
)
def test_rebuild_answers_per_microversion(member, server, image, server_microversions, version, extra):
    response = action(member, server, {"rebuild": {"imageRef": str(image.id)}}, version=version)
    assert response.status_code == 202, response.content
    body = response.json()["server"]
    assert set(body) == BRIEF | extra
    assert body["status"] == "REBUILD"
    assert response["Location"].endswith(f"/v2.1/servers/{server.uuid}")


# --- accessIPv4 and accessIPv6 -------------------------------------------------------------------------


def test_access_addresses_are_kept_and_shown_compressed(member, flavor, image):
    # Tempest's own value: an IPv6 address written in full with an IPv4 tail (41 characters).
    instance = booted(
        member, flavor, image, accessIPv4="1.1.1.1", accessIPv6="0000:0000:0000:0000:0000:babe:220.12.22.2"
    )
    shown = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.47")).json()["server"]
    assert (shown["accessIPv4"], shown["accessIPv6"]) == ("1.1.1.1", "::babe:dc0c:1602")
    listed = member.client.get(f"{BASE}/servers/detail", **v("2.47")).json()["servers"]
    assert (listed[0]["accessIPv4"], listed[0]["accessIPv6"]) == ("1.1.1.1", "::babe:dc0c:1602")


def test_update_changes_and_clears_the_access_addresses(member, server):
    url = f"{BASE}/servers/{server.uuid}"
    body = {"server": {"accessIPv4": "192.0.2.7", "accessIPv6": "2001:DB8:0:0::7"}}
    response = member.client.put(url, body, format="json", **v("2.1"))
    assert response.status_code == 200, response.content
    assert (response.json()["server"]["accessIPv4"], response.json()["server"]["accessIPv6"]) == (
        "192.0.2.7",
        "2001:db8::7",
    )
    member.client.put(url, {"server": {"accessIPv4": ""}}, format="json", **v("2.1"))
    server.refresh_from_db()
    assert (server.access_ip_v4, server.access_ip_v6) == ("", "2001:db8::7")


@pytest.mark.parametrize(
    "body",
    [{"accessIPv4": "2001:db8::1"}, {"accessIPv6": "192.0.2.1"}, {"accessIPv4": "300.1.1.1"}, {"accessIPv6": "x"}],
)
def test_access_addresses_of_the_wrong_version_are_400(member, server, body):
    response = member.client.put(f"{BASE}/servers/{server.uuid}", {"server": body}, format="json", **v("2.1"))
    assert response.status_code == 400, response.content
    assert "badRequest" in response.json()


def test_rebuild_sets_the_access_addresses(member, server, image):
    body = {"rebuild": {"imageRef": str(image.id), "accessIPv4": "192.0.2.9", "accessIPv6": "2001:db8::9"}}
    response = action(member, server, body, version="2.1")
    assert response.status_code == 202, response.content
    assert (response.json()["server"]["accessIPv4"], response.json()["server"]["accessIPv6"]) == (
        "192.0.2.9",
        "2001:db8::9",
    )


# --- /servers/{id}/ips ---------------------------------------------------------------------------------


def test_ips_lists_the_addresses_by_network(member, stranger, server):
    body = member.client.get(f"{BASE}/servers/{server.uuid}/ips", **v("2.1")).json()
    detail = member.client.get(f"{BASE}/servers/{server.uuid}", **v("2.1")).json()["server"]["addresses"]
    # The server's addresses without the extended attributes.
    shown = {net: [{"version": a["version"], "addr": a["addr"]} for a in addrs] for net, addrs in detail.items()}
    assert body == {"addresses": shown} and body["addresses"]["private"]
    one = member.client.get(f"{BASE}/servers/{server.uuid}/ips/private", **v("2.1"))
    assert one.json() == {"private": shown["private"]}
    assert member.client.get(f"{BASE}/servers/{server.uuid}/ips/elsewhere", **v("2.1")).status_code == 404
    assert stranger.client.get(f"{BASE}/servers/{server.uuid}/ips", **v("2.1")).status_code == 404


def test_the_server_password_is_empty_and_clearing_it_is_204(member, reader, stranger, server):
    url = f"{BASE}/servers/{server.uuid}/os-server-password"
    assert member.client.get(url, **v("2.1")).json() == {"password": ""}
    assert member.client.delete(url, **v("2.1")).status_code == 204
    assert reader.client.delete(url, **v("2.1")).status_code == 403
    assert stranger.client.get(url, **v("2.1")).status_code == 404


def test_the_flavor_id_stays_shown_after_the_flavor_is_deleted(member, flavor, image):
    instance = booted(member, flavor, image)
    flavor.delete()
    shown = member.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.46")).json()["server"]["flavor"]
    assert shown["id"] == "1" and shown["links"][0]["href"].endswith("/flavors/1")
