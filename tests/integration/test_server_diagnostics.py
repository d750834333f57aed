"""GET /servers/{id}/diagnostics through the real API, broker and a compute worker on libvirt's test
driver: asked live of the host (request and reply through the broker), in both of the API's forms."""

import signal
import time

import pytest

from portal.models import Instance, Role
from tests.http import ApiUser
from tests.processes import wait_for_host, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def active_server(cluster, transactional_db, settings, live_server, api_user, tiny_flavor, small_image):
    settings.CLOUD = {**settings.CLOUD, "PUBLIC_URL": live_server.url}
    wait_for_host("testhost1")
    body = {"server": {"name": "vm", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "auto"}}
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    wait_for(api_user, server_id, "ACTIVE")
    yield server_id
    api_user.delete(f"/servers/{server_id}")
    wait_until(lambda: Instance.objects.filter(uuid=server_id, vm_state="deleted").exists(), 30, message="the deletion")


@pytest.fixture
def admin_user(transactional_db, live_server):
    return ApiUser(live_server.url, Role.ADMIN)


def wait_for(user, server_id, status, timeout=30):
    def settled():
        server = user.server(server_id)
        return server["status"] == status and server["OS-EXT-STS:task_state"] is None

    return wait_until(settled, timeout, message=f"{server_id} {status} and idle")


def diagnostics(user, server_id, version="2.48"):
    headers = {"OpenStack-API-Version": f"compute {version}"}
    return user.get(f"/servers/{server_id}/diagnostics", headers=headers)


def test_diagnostics_are_read_live_from_the_host_in_both_forms(cluster, api_user, admin_user, active_server):
    started = time.monotonic()
    response = diagnostics(admin_user, active_server)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 5
    body = response.json()
    assert set(body) == {
        "state",
        "driver",
        "hypervisor",
        "hypervisor_os",
        "uptime",
        "config_drive",
        "num_cpus",
        "num_disks",
        "num_nics",
        "cpu_details",
        "memory_details",
        "disk_details",
        "nic_details",
    }
    assert (body["state"], body["driver"], body["hypervisor_os"]) == ("running", "libvirt", "linux")
    assert body["num_cpus"] == len(body["cpu_details"]) >= 1
    assert all(cpu["time"] > 0 and cpu["utilisation"] is None for cpu in body["cpu_details"])
    assert body["memory_details"]["maximum"] > 0 and body["memory_details"]["used"] > 0
    assert body["num_disks"] == len(body["disk_details"]) >= 1
    disk_fields = {"read_bytes", "read_requests", "write_bytes", "write_requests", "errors_count"}
    assert set(body["disk_details"][0]) == disk_fields
    # libvirt's test driver keeps no QEMU command line, so the user-mode NIC is not in its definition.
    assert body["num_nics"] == len(body["nic_details"])
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0
    assert body["config_drive"] is Instance.objects.get(uuid=active_server).config_drive

    legacy = diagnostics(admin_user, active_server, "2.47")
    assert legacy.status_code == 200, legacy.text
    old = legacy.json()
    assert old["cpu0_time"] > 0 and old["memory"] > 0 and old["vda_read"] >= 0
    assert "cpu_details" not in old and "state" not in old


def test_diagnostics_are_for_admins_and_running_servers(cluster, api_user, admin_user, active_server):
    denied = diagnostics(api_user, active_server)
    assert denied.status_code == 403
    assert "forbidden" in denied.json()
    assert diagnostics(admin_user, "00000000-0000-0000-0000-000000000000").status_code == 404

    api_user.post(f"/servers/{active_server}/action", {"os-stop": None})
    wait_for(api_user, active_server, "SHUTOFF")
    stopped = diagnostics(admin_user, active_server)
    assert stopped.status_code == 409
    message = stopped.json()["conflictingRequest"]["message"]
    assert message == f"Cannot 'get_diagnostics' instance {active_server} while it is in vm_state stopped"

    # The database says active but the guest on the host is off: the host's answer is the conflict.
    Instance.objects.filter(uuid=active_server).update(vm_state="active")
    off = diagnostics(admin_user, active_server)
    assert off.status_code == 409
    assert "power state shutdown" in off.json()["conflictingRequest"]["message"]
    Instance.objects.filter(uuid=active_server).update(vm_state="stopped")


def test_diagnostics_time_out_when_the_host_does_not_answer(cluster, admin_user, active_server, settings):
    settings.CLOUD = {**settings.CLOUD, "CONSOLE_OUTPUT_TIMEOUT": 2}
    compute = cluster.processes["compute-testhost1"]
    compute.kill(signal.SIGSTOP)  # the host is frozen: its last heartbeat still counts, but it answers nothing
    try:
        started = time.monotonic()
        response = diagnostics(admin_user, active_server)
        assert response.status_code == 503
        (fault,) = response.json().values()
        assert "did not answer within 2s" in fault["message"]
        assert 1.5 < time.monotonic() - started < 6
    finally:
        compute.kill(signal.SIGCONT)
