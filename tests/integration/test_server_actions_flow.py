"""Server actions through the real API, broker, conductor and a compute worker on libvirt's test driver:
pause/unpause, suspend/resume, lock, createImage (a real qcow2 uploaded through the signed URL),
rebuild, os-getConsoleOutput (request and reply through the broker), os-resetState, the action log."""

import json
import subprocess
import time

import pytest

from portal.models import Image, Instance
from portal.services.images import image_file_path
from tests.processes import wait_for_host, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def host_up(cluster, transactional_db, settings, live_server):
    # The API process signs the URLs hosts use (image downloads for a rebuild, snapshot uploads).
    settings.CLOUD = {**settings.CLOUD, "PUBLIC_URL": live_server.url}
    wait_for_host("testhost1")


def server_of(user, server_id):
    return user.server(server_id)


def wait_for(user, server_id, status, timeout=30):
    def settled():
        server = server_of(user, server_id)
        return server["status"] == status and server["OS-EXT-STS:task_state"] is None

    return wait_until(settled, timeout, message=f"{server_id} {status} and idle")


def act(user, server_id, body, version=None):
    headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
    return user.session.post(user.url(f"/servers/{server_id}/action"), json=body, headers=headers, timeout=20)


@pytest.fixture
def active_server(host_up, api_user, tiny_flavor, small_image):
    body = {"server": {"name": "vm", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "auto"}}
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    wait_for(api_user, server_id, "ACTIVE")
    yield server_id
    Instance.objects.filter(uuid=server_id).update(locked=False)
    api_user.delete(f"/servers/{server_id}")
    # Nothing may still be on its way when the test database is emptied.
    wait_until(lambda: Instance.objects.filter(uuid=server_id, vm_state="deleted").exists(), 30, message="the deletion")


def test_pause_unpause_suspend_resume(cluster, api_user, active_server):
    server_id = active_server
    assert act(api_user, server_id, {"pause": None}).status_code == 202
    wait_for(api_user, server_id, "PAUSED")
    assert server_of(api_user, server_id)["OS-EXT-STS:power_state"] == 3
    assert act(api_user, server_id, {"pause": None}).status_code == 409
    assert act(api_user, server_id, {"unpause": None}).status_code == 202
    wait_for(api_user, server_id, "ACTIVE")
    assert server_of(api_user, server_id)["OS-EXT-STS:power_state"] == 1

    assert act(api_user, server_id, {"suspend": None}).status_code == 202
    wait_for(api_user, server_id, "SUSPENDED")
    server = server_of(api_user, server_id)
    assert (server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"]) == ("suspended", 7)
    # Heartbeats keep coming and must not turn a suspended server into a stopped one.
    time.sleep(2.5)
    assert server_of(api_user, server_id)["status"] == "SUSPENDED"
    assert act(api_user, server_id, {"resume": None}).status_code == 202
    wait_for(api_user, server_id, "ACTIVE")

    # A hard reboot brings a suspended server back as well.
    act(api_user, server_id, {"suspend": None})
    wait_for(api_user, server_id, "SUSPENDED")
    assert act(api_user, server_id, {"reboot": {"type": "HARD"}}).status_code == 202
    wait_for(api_user, server_id, "ACTIVE")

    events = api_user.get(f"/servers/{server_id}/os-instance-actions").json()["instanceActions"]
    assert [e["action"] for e in events] == ["reboot", "suspend", "resume", "suspend", "unpause", "pause", "create"]
    pause_id = events[-2]["request_id"]
    shown = api_user.session.get(
        api_user.url(f"/servers/{server_id}/os-instance-actions/{pause_id}"),
        headers={"OpenStack-API-Version": "compute 2.51"},
        timeout=10,
    ).json()["instanceAction"]
    assert [(e["event"], e["result"]) for e in shown["events"]] == [
        ("api_pause", "Success"),
        ("compute_pause_instance", "Success"),
    ]


def test_lock_and_reset_state(cluster, api_user, active_server):
    from portal.models import Role
    from tests.http import ApiUser

    server_id = active_server
    assert act(api_user, server_id, {"lock": None}).status_code == 202
    assert act(api_user, server_id, {"os-stop": None}).status_code == 409
    assert api_user.delete(f"/servers/{server_id}").status_code == 409
    admin = ApiUser(api_user.base, role=Role.ADMIN)
    admin.session.headers["X-Project-Id"] = api_user.membership.project.id
    from portal.models import Membership

    Membership.objects.filter(pk=admin.membership.pk).update(project=api_user.membership.project)
    assert act(admin, server_id, {"os-resetState": {"state": "error"}}).status_code == 202
    assert server_of(api_user, server_id)["status"] == "ERROR"
    assert act(admin, server_id, {"os-resetState": {"state": "active"}}).status_code == 202
    assert act(api_user, server_id, {"unlock": None}).status_code == 202
    assert act(api_user, server_id, {"os-stop": None}).status_code == 202
    wait_for(api_user, server_id, "SHUTOFF")


def test_create_image_uploads_a_standalone_snapshot(cluster, api_user, active_server, small_image):
    server_id = active_server
    disk = cluster.instance_dir("testhost1", server_id) / "disk"
    # Something the guest "wrote": it must be in the snapshot, which is the whole disk flattened.
    subprocess.run(["qemu-io", "-c", "write -P 0x2a 4M 64k", str(disk)], check=True, capture_output=True)
    response = act(api_user, server_id, {"createImage": {"name": "snap", "metadata": {"tier": "gold"}}}, "2.45")
    assert response.status_code == 202, response.text
    image_id = response.json()["image_id"]
    wait_for(api_user, server_id, "ACTIVE")

    image = Image.objects.get(pk=image_id)
    assert image.status == "active", image.status
    assert (image.disk_format, image.visibility, image.properties["tier"]) == ("qcow2", "private", "gold")
    assert image.properties["base_image_ref"] == str(small_image.id)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image_file_path(image))], check=True, capture_output=True
        ).stdout
    )
    assert info["format"] == "qcow2" and "backing-filename" not in info
    assert info["virtual-size"] == 1024**3
    assert image.virtual_size == 1024**3
    check = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x2a 4M 64k", str(image_file_path(image))],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and "verification failed" not in check.stdout
    # The image API shows it like any other image of the project.
    listed = api_user.session.get(f"{api_user.base}/image/v2/images/{image_id}", timeout=10).json()
    assert (listed["status"], listed["name"]) == ("active", "snap")
    assert not list((cluster.work_dir / "compute" / "testhost1" / "snapshots").iterdir())

    action_log = api_user.get(f"/servers/{server_id}/os-instance-actions").json()["instanceActions"]
    assert action_log[0]["action"] == "createImage"


def test_a_failed_snapshot_removes_its_image_and_idles_the_server(cluster, api_user, active_server):
    server_id = active_server
    # Take the server's disk away: the copy fails on the host.
    disk = cluster.instance_dir("testhost1", server_id) / "disk"
    disk.rename(disk.with_name("disk.hidden"))
    try:
        response = act(api_user, server_id, {"createImage": {"name": "doomed"}}, "2.45")
        image_id = response.json()["image_id"]
        wait_for(api_user, server_id, "ACTIVE")
    finally:
        disk.with_name("disk.hidden").rename(disk)
    assert Image.objects.get(pk=image_id).status == "deleted"
    assert api_user.session.get(f"{api_user.base}/image/v2/images/{image_id}", timeout=10).status_code == 404
    log = api_user.get(f"/servers/{server_id}/os-instance-actions").json()["instanceActions"]
    assert (log[0]["action"], log[0]["message"]) == ("createImage", "Error")


def test_rebuild_from_another_image_keeps_the_servers_identity(cluster, api_user, active_server, small_image, tmp_path):
    from portal.services.images import image_create, image_upload

    server_id = active_server
    before = Instance.objects.get(uuid=server_id)
    path = tmp_path / "other.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    other = image_create(ctx=api_user.ctx, name="other", disk_format="qcow2", container_format="bare")
    with path.open("rb") as stream:
        image_upload(image=other, stream=stream)
    disk = cluster.instance_dir("testhost1", server_id) / "disk"
    subprocess.run(["qemu-io", "-c", "write -P 0x11 0 4k", str(disk)], check=True, capture_output=True)

    response = act(api_user, server_id, {"rebuild": {"imageRef": str(other.id), "name": "rebuilt"}})
    assert response.status_code == 202, response.text
    assert response.json()["server"]["status"] == "REBUILD"
    wait_for(api_user, server_id, "ACTIVE")

    server = server_of(api_user, server_id)
    assert (server["name"], server["image"]["id"]) == ("rebuilt", str(other.id))
    after = Instance.objects.get(uuid=server_id)
    assert (after.host_id, after.mac_address, after.domain_name) == (
        before.host_id,
        before.mac_address,
        before.domain_name,
    )
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", str(disk)], check=True, capture_output=True).stdout
    )
    assert info["backing-filename"].endswith(str(other.id))
    fresh = subprocess.run(["qemu-io", "-r", "-c", "read -P 0x11 0 4k", str(disk)], capture_output=True, text=True)
    assert "verification failed" in fresh.stdout  # what was written before the rebuild is gone

    # A stopped server is rebuilt and stays stopped.
    act(api_user, server_id, {"os-stop": None})
    wait_for(api_user, server_id, "SHUTOFF")
    assert act(api_user, server_id, {"rebuild": {"imageRef": str(small_image.id)}}).status_code == 202
    wait_for(api_user, server_id, "SHUTOFF")
    assert server_of(api_user, server_id)["image"]["id"] == str(small_image.id)


def test_a_rebuild_that_fails_leaves_an_error_with_a_fault(cluster, api_user, active_server, tmp_path):
    from portal.services.images import image_create, image_upload

    server_id = active_server
    path = tmp_path / "gone.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    gone = image_create(ctx=api_user.ctx, name="gone", disk_format="qcow2", container_format="bare")
    with path.open("rb") as stream:
        image_upload(image=gone, stream=stream)
    image_file_path(gone).unlink()  # its data vanished from the image store

    assert act(api_user, server_id, {"rebuild": {"imageRef": str(gone.id)}}).status_code == 202
    wait_for(api_user, server_id, "ERROR")
    fault = server_of(api_user, server_id)["fault"]
    assert "download of image" in fault["message"] and "404" in fault["message"]
    assert "sig=" not in json.dumps(fault)


def test_console_output_is_the_tail_of_the_serial_log(cluster, api_user, active_server):
    server_id = active_server
    log = cluster.instance_dir("testhost1", server_id) / "console.log"
    log.write_bytes(b"".join(b"boot line %d\r\n" % n for n in range(200)) + b"\x1b[0mlogin: \x07")

    started = time.monotonic()
    response = act(api_user, server_id, {"os-getConsoleOutput": {"length": 3}})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json() == {"output": "boot line 198\r\nboot line 199\r\n[0mlogin: "}
    assert elapsed < 5
    whole = act(api_user, server_id, {"os-getConsoleOutput": {}}).json()["output"]
    assert whole.startswith("boot line 0\r\n") and whole.count("\n") == 200
    assert act(api_user, server_id, {"os-getConsoleOutput": {"length": "-1"}}).json()["output"] == whole
    # A stopped server still has its log.
    act(api_user, server_id, {"os-stop": None})
    wait_for(api_user, server_id, "SHUTOFF")
    assert "boot line 199" in act(api_user, server_id, {"os-getConsoleOutput": {"length": 5}}).json()["output"]


def test_console_output_times_out_when_the_host_does_not_answer(cluster, api_user, active_server, settings):
    settings.CLOUD = {**settings.CLOUD, "CONSOLE_OUTPUT_TIMEOUT": 2}
    compute = cluster.processes["compute-testhost1"]
    import signal

    compute.kill(signal.SIGSTOP)  # the host is frozen: its last heartbeat still counts, but it answers nothing
    try:
        started = time.monotonic()
        response = act(api_user, active_server, {"os-getConsoleOutput": {}})
        assert response.status_code == 503
        assert 1.5 < time.monotonic() - started < 6
    finally:
        compute.kill(signal.SIGCONT)


def test_metadata_tags_and_rename_over_http(cluster, api_user, active_server):
    server_id = active_server
    session, url = api_user.session, api_user.url(f"/servers/{server_id}")
    v226 = {"OpenStack-API-Version": "compute 2.26"}
    assert session.post(f"{url}/metadata", json={"metadata": {"role": "web"}}, timeout=10).json() == {
        "metadata": {"role": "web"}
    }
    assert session.put(f"{url}/metadata/tier", json={"meta": {"tier": "1"}}, timeout=10).status_code == 200
    assert session.delete(f"{url}/metadata/role", timeout=10).status_code == 204
    assert session.put(f"{url}/tags/blue", headers=v226, timeout=10).status_code == 201
    assert session.put(f"{url}", json={"server": {"name": "renamed"}}, headers=v226, timeout=10).status_code == 200
    shown = session.get(url, headers=v226, timeout=10).json()["server"]
    assert (shown["name"], shown["metadata"], shown["tags"], shown["status"]) == (
        "renamed",
        {"tier": "1"},
        ["blue"],
        "ACTIVE",
    )
    listed = session.get(api_user.url("/servers?tags=blue&name=^ren"), headers=v226, timeout=10).json()["servers"]
    assert [s["id"] for s in listed] == [server_id]
