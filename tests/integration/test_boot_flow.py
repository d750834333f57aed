"""A server's whole life through the real API, broker, conductor and a compute worker on libvirt's
test driver: boot, stop, start, reboot, console token, delete; and a boot no host can take."""

import pytest

from portal.models import ConsoleToken, Instance, InstanceFault
from tests.processes import wait_for_host, wait_until

pytestmark = pytest.mark.integration


def status_of(user, server_id):
    return user.server(server_id)["status"]


def wait_status(user, server_id, status, timeout=30):
    return wait_until(lambda: status_of(user, server_id) == status, timeout, message=f"{server_id} {status}")


@pytest.fixture
def host_up(cluster, transactional_db):
    wait_for_host("testhost1")


def test_boot_stop_start_reboot_delete(cluster, host_up, api_user, tiny_flavor, small_image):
    body = {"server": {"name": "vm1", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "auto"}}
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]

    wait_status(api_user, server_id, "ACTIVE")
    server = api_user.server(server_id)
    assert server["OS-EXT-STS:power_state"] == 1
    assert server["OS-EXT-STS:task_state"] is None
    assert server["hostId"]
    assert server["OS-SRV-USG:launched_at"]
    instance = Instance.objects.get(uuid=server_id)
    assert instance.host.name == "testhost1"
    assert (cluster.instance_dir("testhost1", server_id) / "disk").exists()
    events = [e["event"] for e in instance.actions.get(action="create").events.values("event")]
    assert events == ["api_create", "conductor_schedule_and_build", "compute_build_and_run_instance"]

    assert api_user.post(f"/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    wait_status(api_user, server_id, "SHUTOFF")
    assert api_user.server(server_id)["OS-EXT-STS:power_state"] == 4
    # A stopped server cannot be stopped again, or rebooted softly.
    assert api_user.post(f"/servers/{server_id}/action", {"os-stop": None}).status_code == 409
    assert api_user.post(f"/servers/{server_id}/action", {"reboot": {"type": "SOFT"}}).status_code == 409

    assert api_user.post(f"/servers/{server_id}/action", {"os-start": None}).status_code == 202
    wait_status(api_user, server_id, "ACTIVE")

    for kind in ("SOFT", "HARD"):
        assert api_user.post(f"/servers/{server_id}/action", {"reboot": {"type": kind}}).status_code == 202
        wait_until(lambda: api_user.server(server_id)["OS-EXT-STS:task_state"] is None, 30, message="reboot")
        assert status_of(api_user, server_id) == "ACTIVE"

    actions = list(Instance.objects.get(uuid=server_id).actions.order_by("start_time").values_list("action", flat=True))
    assert actions == ["create", "stop", "start", "reboot", "reboot"]

    assert api_user.delete(f"/servers/{server_id}").status_code == 204
    wait_until(lambda: api_user.get(f"/servers/{server_id}").status_code == 404, 30, message="deletion")
    assert Instance.objects.get(uuid=server_id).vm_state == "deleted"
    assert not cluster.instance_dir("testhost1", server_id).exists()


def test_console_token_is_hashed_and_revoked_on_stop(cluster, host_up, api_user, tiny_flavor, small_image, live_server):
    import requests
    from django.conf import settings

    body = {"server": {"name": "vm", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "none"}}
    server_id = api_user.post("/servers", body).json()["server"]["id"]
    wait_status(api_user, server_id, "ACTIVE")
    # test:///default domains have no VNC port; give this one the port a QEMU would have reported.
    Instance.objects.filter(uuid=server_id).update(vnc_host="127.0.0.1", vnc_port=5999)

    response = api_user.post(
        f"/servers/{server_id}/remote-consoles", {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    )
    assert response.status_code == 200, response.text
    console = response.json()["remote_console"]
    assert console["protocol"] == "vnc" and console["type"] == "novnc"
    token = console["url"].split("token%3D", 1)[1]
    stored = ConsoleToken.objects.get()
    assert stored.token_hash == ConsoleToken.hash(token) and token not in stored.token_hash

    auth = f"{live_server.url}/internal/consoleauth/{token}"
    secret = {"X-Console-Auth-Secret": settings.CONSOLE["AUTH_SECRET"]}
    assert requests.get(auth, timeout=5).status_code == 403
    assert requests.get(auth, headers={"X-Console-Auth-Secret": "wrong"}, timeout=5).status_code == 403
    found = requests.get(auth, headers=secret, timeout=5)
    assert found.status_code == 200
    assert found.json()["port"] == 5999 and found.json()["instance_uuid"] == server_id
    assert requests.get(auth + "x", headers=secret, timeout=5).status_code == 404

    api_user.post(f"/servers/{server_id}/action", {"os-stop": None})
    wait_status(api_user, server_id, "SHUTOFF")
    assert requests.get(auth, headers=secret, timeout=5).status_code == 404
    assert not ConsoleToken.objects.exists()
    api_user.delete(f"/servers/{server_id}")
    # Nothing may still be on its way when the test database is emptied.
    wait_until(lambda: api_user.get(f"/servers/{server_id}").status_code == 404, 30, message="deletion")


def test_no_valid_host_explains_why(cluster, host_up, api_user, small_image):
    from tests.factories import FlavorFactory

    # More memory than the test host has (3 GiB), within the project's default RAM quota.
    FlavorFactory(flavorid="huge", name="huge", vcpus=1, memory_mb=40960, root_gb=1)
    body = {"server": {"name": "big", "imageRef": str(small_image.id), "flavorRef": "huge", "networks": "none"}}
    server_id = api_user.post("/servers", body).json()["server"]["id"]
    wait_status(api_user, server_id, "ERROR")
    server = api_user.server(server_id)
    assert server["fault"]["code"] == 500
    assert "No valid host was found" in server["fault"]["message"]
    assert "RamFilter removed 1" in server["fault"]["message"]
    assert Instance.objects.get(uuid=server_id).host is None
    assert InstanceFault.objects.filter(instance__uuid=server_id).count() == 1
    # An ERROR server that never reached a host is deleted at once.
    assert api_user.delete(f"/servers/{server_id}").status_code == 204
    assert api_user.get(f"/servers/{server_id}").status_code == 404
