"""Cinder volumes on real guests: the demo guest on qemu:///system, a real Cinder (NFS driver on a local
directory), the real API, conductor and compute worker.

- A volume is hot-plugged into the running guest, the guest writes to it through its serial shell, it is
  hot-unplugged, and the bytes are read back from the volume's file on the NFS export.
- Cinder dies in the middle of an attach (after the reservation, before the completion): the disk is
  unplugged from the guest again, and once Cinder is back nothing is left reserved or attached.
- A server boots from a new volume made from the demo image, and the volume dies with it.
"""

from __future__ import annotations

import re
import signal
import time
import uuid

import libvirt
import pytest
from django.conf import settings
from django.test import override_settings

from portal.models import BlockDeviceMapping
from portal.services import volumes
from tests.images import public_image
from tests.processes import Cluster, purge_broker, wait_for_host, wait_until

pytestmark = pytest.mark.system

HOST = "volumehost"
BANNER = b"Welcome to the cloud demo guest"
PROMPT = b"demo# "


@pytest.fixture(scope="module")
def volume_cluster(cinder, django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """Conductor and a compute host on qemu:///system that mounts Cinder's NFS share where Cinder does."""
    purge_broker()
    override = override_settings(CINDER={**settings.CINDER, "ENDPOINT": cinder.endpoint, "VOLUME_LEASE": 30})
    override.enable()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("volume-qemu"))
    cluster.env["CINDER_ENDPOINT"] = cinder.endpoint
    cluster.start_conductor()
    cluster.start_compute(HOST, uri="qemu:///system")
    cluster.processes[f"compute-{HOST}"].env["COMPUTE_NFS_MOUNT_POINT_BASE"] = str(cinder.mount_point_base)
    cluster.restart(f"compute-{HOST}")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()
    override.disable()


@pytest.fixture
def demo(api_user, demo_image):
    image = public_image(project=api_user.ctx.project, path=demo_image, name="demo")
    return image


@pytest.fixture
def libvirt_conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


def wait_status(user, server_id, status, timeout=180):
    def current():
        shown = user.server(server_id)
        assert shown["status"] != "ERROR", shown.get("fault")
        return shown["status"] == status

    return wait_until(current, timeout, interval=0.2, message=f"{server_id} to be {status}")


def console_log(cluster, server_id) -> bytes:
    path = cluster.instance_dir(HOST, server_id) / "console.log"
    return path.read_bytes() if path.exists() else b""


def type_into_console(conn, domain, cluster, server_id, command: str, answer: str, timeout=30.0) -> None:
    """Type ``command`` into the guest's serial shell until ``answer`` shows on its serial log."""
    stream = conn.newStream(0)
    domain.openConsole(None, stream, 0)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stream.send(f"{command}\r".encode())
            attempt_end = time.monotonic() + 10
            while time.monotonic() < attempt_end:
                if answer.encode() in console_log(cluster, server_id):
                    return
                time.sleep(0.2)
    finally:
        stream.abort()
    raise AssertionError(f"no {answer!r} on the serial log:\n{console_log(cluster, server_id)[-3000:]!r}")


def boot_demo(api_user, demo, name="vol-demo", **extra):
    body = {"server": {"name": name, "flavorRef": "1", "networks": "auto", **extra}}
    if demo is not None:
        body["server"]["imageRef"] = str(demo.id)
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def volume_disk(domain, volume_id) -> str | None:
    for disk in re.findall(r"<disk .*?</disk>", domain.XMLDesc(0), re.S):
        if f"<serial>{volume_id}</serial>" in disk:
            return disk
    return None


def attach(api_user, server_id, volume_id):
    return api_user.post(f"/servers/{server_id}/os-volume_attachments", {"volumeAttachment": {"volumeId": volume_id}})


@pytest.fixture
def running_guest(volume_cluster, api_user, tiny_flavor, demo, libvirt_conn):
    wait_for_host(HOST)
    server_id = boot_demo(api_user, demo)
    wait_status(api_user, server_id, "ACTIVE")
    wait_until(lambda: PROMPT in console_log(volume_cluster, server_id), 90, message="the guest's shell prompt")
    yield server_id, libvirt_conn.lookupByUUIDString(server_id)
    api_user.delete(f"/servers/{server_id}")
    wait_until(lambda: api_user.server(server_id)["status"] in ("GONE", "DELETED"), 60, message="delete")


def test_the_guest_writes_to_a_hot_plugged_volume_and_the_bytes_stay_on_it(
    running_guest, volume_cluster, api_user, cinder, libvirt_conn, record_property
):
    server_id, domain = running_guest
    project = api_user.membership.project.pk
    volume = cinder.create_volume(project, name="guest-data")
    marker = f"VOLUME-MARKER-{uuid.uuid4().hex}"

    started = time.monotonic()
    response = attach(api_user, server_id, volume["id"])
    assert response.status_code == 200, response.text
    cinder.wait_for_status(project, volume["id"], "in-use")
    record_property("attach_seconds", round(time.monotonic() - started, 2))
    disk = volume_disk(domain, volume["id"])
    assert disk is not None and "<target dev='vdb' bus='virtio'/>" in disk
    assert str(cinder.mount_point) in disk  # the file on the NFS share, where Cinder put it

    # The guest sees the disk and writes one sector to it; the shell's arithmetic proves the command ran.
    type_into_console(libvirt_conn, domain, volume_cluster, server_id, "ls /dev/vdb && echo seen-$((20+3))", "seen-23")
    type_into_console(
        libvirt_conn,
        domain,
        volume_cluster,
        server_id,
        f"printf {marker} | dd of=/dev/vdb bs=512 conv=sync 2>/dev/null; sync; echo written-$((40+2))",
        "written-42",
    )

    started = time.monotonic()
    assert api_user.delete(f"/servers/{server_id}/os-volume_attachments/{volume['id']}").status_code == 202
    cinder.wait_for_status(project, volume["id"], "available", timeout=90)
    record_property("detach_seconds", round(time.monotonic() - started, 2))
    assert volume_disk(domain, volume["id"]) is None
    assert volume_disk_config(domain, volume["id"]) is None
    assert cinder.attachments(project, volume["id"]) == []

    data = cinder.volume_file(volume["id"]).read_bytes()[:512]
    assert data.startswith(marker.encode()), data[:80]
    assert data[len(marker) :] == b"\0" * (512 - len(marker))


def volume_disk_config(domain, volume_id) -> str | None:
    xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    return xml if f"<serial>{volume_id}</serial>" in xml else None


def test_cinder_killed_in_the_middle_of_an_attach_rolls_back_cleanly(
    running_guest, volume_cluster, api_user, cinder, libvirt_conn
):
    server_id, domain = running_guest
    project = api_user.membership.project.pk
    volume = cinder.create_volume(project, name="interrupted")
    compute = volume_cluster.processes[f"compute-{HOST}"]

    # The host is held while the API reserves the volume; then Cinder dies before the host reports.
    compute.send_signal(signal.SIGSTOP)
    try:
        response = attach(api_user, server_id, volume["id"])
        assert response.status_code == 200, response.text
        assert cinder.volume(project, volume["id"])["status"] == "attaching"
        cinder.stop_api()
    finally:
        compute.send_signal(signal.SIGCONT)
    try:
        # The host plugs the disk in, Cinder cannot complete the attachment, the host unplugs it again,
        # and the mapping waits for Cinder to let the volume go.
        wait_until(
            lambda: BlockDeviceMapping.objects.filter(volume_id=volume["id"], status="releasing").exists(),
            120,
            message="the attach to be rolled back",
        )
        assert volume_disk(domain, volume["id"]) is None
        assert volume_disk_config(domain, volume["id"]) is None
        assert api_user.server(server_id)["os-extended-volumes:volumes_attached"] == []
        failed = api_user.get(f"/servers/{server_id}/os-instance-actions").json()["instanceActions"]
        assert any(a["action"] == "attach_volume" and a["message"] == "Error" for a in failed)
    finally:
        cinder.start_api()

    volumes.sweep_block_devices()

    assert not BlockDeviceMapping.objects.filter(volume_id=volume["id"]).exists()
    assert cinder.volume(project, volume["id"])["status"] == "available"
    assert cinder.attachments(project, volume["id"]) == []
    # The volume is whole again: it attaches normally now.
    assert attach(api_user, server_id, volume["id"]).status_code == 200
    cinder.wait_for_status(project, volume["id"], "in-use")


def test_a_server_boots_from_a_volume_made_from_the_demo_image(
    volume_cluster, api_user, tiny_flavor, demo, cinder, libvirt_conn, record_property
):
    wait_for_host(HOST)
    project = api_user.membership.project.pk
    mapping = {
        "uuid": str(demo.id),
        "source_type": "image",
        "destination_type": "volume",
        "volume_size": 1,
        "boot_index": 0,
        "delete_on_termination": True,
    }
    started = time.monotonic()
    server_id = boot_demo(api_user, None, name="from-volume", block_device_mapping_v2=[mapping])
    wait_status(api_user, server_id, "ACTIVE")
    wait_until(lambda: BANNER in console_log(volume_cluster, server_id), 90, message="the banner of the volume's guest")
    record_property("boot_from_volume_seconds", round(time.monotonic() - started, 2))

    [attached] = api_user.server(server_id)["os-extended-volumes:volumes_attached"]
    domain = libvirt_conn.lookupByUUIDString(server_id)
    root = volume_disk(domain, attached["id"])
    assert root is not None and "<target dev='vda' bus='virtio'/>" in root
    assert not (volume_cluster.instance_dir(HOST, server_id) / "disk").exists()  # no local disk at all
    wait_until(lambda: cinder.volume(project, attached["id"])["status"] == "in-use", 30, message="in-use")

    assert api_user.delete(f"/servers/{server_id}").status_code == 204
    cinder.wait_for_status(project, attached["id"], "deleted", timeout=90)
