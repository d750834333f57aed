"""The host's side of resize and rescue on real guests: the demo image on qemu:///system.

The host methods run in this process (the manager with the libvirt driver); the image API is played by a
small HTTP server on loopback that keeps what is uploaded to it and serves it back, so the disk really
travels as between two hosts: uploaded by the source, downloaded and checksum-verified by the destination.
Source and destination are one host here, the case where the old and the new guest share a name.
"""

import hashlib
import http.server
import json
import os
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET  # noqa: S405 - parses libvirt's own output only
from pathlib import Path

import libvirt
import pytest

from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.drivers.base import resize_dir
from compute_tasks.drivers.libvirt_driver import LibvirtDriver
from compute_tasks.manager import ComputeManager
from compute_tasks.rpc import BuildRequest, FlavorSpec, ImageSpec, InstanceRef, NicSpec

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
DEMO_IMAGE = REPO / "var" / "images" / "demo.qcow2"
GIB = 1024**3
BOOT_TIMEOUT_S = 180


class ImageStore:
    """GET and PUT of files in one directory, on 127.0.0.1; the query string (the "signature") is ignored."""

    def __init__(self, directory: Path):
        store = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def log_message(self, *args):
                pass

            def do_PUT(self):  # noqa: N802 - the http.server convention
                name = self.path.split("?")[0].strip("/")
                length = int(self.headers["Content-Length"])
                with open(directory / name, "wb") as out:
                    left = length
                    while left:
                        chunk = self.rfile.read(min(left, 1 << 20))
                        out.write(chunk)
                        left -= len(chunk)
                store.uploads.append(name)
                self.send_response(204)
                self.end_headers()

        self.directory = directory
        self.uploads: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}?signature=system-test"

    def spec(self, name: str) -> ImageSpec:
        data = (self.directory / name).read_bytes()
        return ImageSpec(id=name, url=self.url(name), sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Reports:
    def __init__(self):
        self.sent = []
        self.progress = []  # the build's steps and download percents, kept apart from the results

    def build_progress(self, progress):
        self.progress.append(progress)

    def instance_built(self, result):
        self.sent.append(result)

    def build_failed(self, result):
        self.sent.append(result)

    def action_done(self, result):
        self.sent.append(result)

    def last(self):
        result = self.sent[-1]
        assert not getattr(result, "error", ""), getattr(result, "details", result)
        return result


@pytest.fixture
def host(tmp_path):
    if not DEMO_IMAGE.is_file():
        pytest.skip(f"{DEMO_IMAGE} is missing: run scripts/build_demo_image.sh")
    served = tmp_path / "served"
    served.mkdir()
    (served / "demo").write_bytes(DEMO_IMAGE.read_bytes())
    store = ImageStore(served)
    config = HostConfig.from_env(
        {"COMPUTE_HOST": "movehost", "COMPUTE_DRIVER": "libvirt", "COMPUTE_STATE_DIR": str(tmp_path / "state")}
    )
    driver = LibvirtDriver(
        uri="qemu:///system",
        virt_type="qemu",
        instances_dir=config.instances_dir,
        vnc_listen="127.0.0.1",
        vnc_host="127.0.0.1",
        shutdown_timeout=10,
    )
    reports = Reports()
    manager = ComputeManager(config, driver, reports)
    made = []
    yield manager, reports, store, made
    for request in made:
        driver.destroy(InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
    driver.close()
    store.close()


def boot(manager, reports, store, made):
    request = BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name=f"test-moves-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="tiny", vcpus=1, memory_mb=256, root_gb=1),
        image=store.spec("demo"),
        nics=[NicSpec(mac="52:54:00:5a:00:02", network="user")],
    )
    made.append(request)
    manager.build_and_run_instance(request)
    assert reports.last().power_state == rpc.RUNNING
    wait_for_console(manager, request, "demo#")
    return request


def wait_for_console(manager, request, text, since=0):
    log = manager.config.instance_dir(request.instance_uuid) / "console.log"
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        seen = log.read_bytes()[since:].decode(errors="replace") if log.exists() else ""
        if text in seen:
            return
        assert time.monotonic() < deadline, f"{text!r} not on the console; it shows:\n{seen[-2000:]}"
        time.sleep(0.2)


def domain(request):
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByUUIDString(request.instance_uuid)
        return ET.fromstring(dom.XMLDesc(0)), dom.isActive()  # noqa: S314 - libvirt's own output
    finally:
        conn.close()


def disks(root):
    return [(d.find("source").get("file"), d.find("target").get("dev")) for d in root.findall("./devices/disk")]


def qemu_img_info(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True, capture_output=True)
    return json.loads(out.stdout)


def resize_on_the_same_host(manager, reports, store, request, migration_id):
    manager.migrate_disk(
        rpc.MigrateDiskRequest(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            migration_id=migration_id,
            image_id=f"migrated-{migration_id}",
            upload_url=store.url(f"migrated-{migration_id}"),
        )
    )
    assert reports.last().power_state == rpc.SHUTDOWN
    bigger = FlavorSpec(name="small", vcpus=2, memory_mb=384, root_gb=2)
    build = BuildRequest(
        instance_uuid=request.instance_uuid,
        domain_name=request.domain_name,
        flavor=bigger,
        image=store.spec(f"migrated-{migration_id}"),
        nics=request.nics,
    )
    manager.finish_migration(rpc.FinishMigrationRequest(build=build, migration_id=migration_id))
    return reports.last()


def test_a_same_host_resize_is_confirmed_and_another_reverted(host):
    manager, reports, store, made = host
    request = boot(manager, reports, store, made)
    instance_dir = manager.config.instance_dir(request.instance_uuid)
    # Something only this guest's disk holds, to recognise it after the moves (written while it is off).
    manager.stop_instance(InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
    assert reports.last().power_state == rpc.SHUTDOWN
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x5c 900M 64k", str(instance_dir / "disk")], check=True, capture_output=True
    )

    finished = resize_on_the_same_host(manager, reports, store, request, 1)

    assert finished.power_state == rpc.RUNNING and finished.migration_id == 1
    root, active = domain(request)
    assert active and root.findtext("name") == request.domain_name
    assert root.findtext("vcpu") == "2" and root.find("memory").text == str(384 * 1024)
    assert qemu_img_info(instance_dir / "disk")["virtual-size"] == 2 * GIB
    assert (resize_dir(instance_dir) / "disk").is_file()
    wait_for_console(manager, request, "demo#")
    pattern = subprocess.run(
        ["qemu-io", "-r", "-U", "-c", "read -P 0x5c 900M 64k", str(instance_dir / "disk")],
        capture_output=True,
        text=True,
    )
    assert pattern.returncode == 0 and "Pattern verification failed" not in pattern.stdout

    manager.confirm_migration(
        rpc.MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=1)
    )
    reports.last()
    assert not resize_dir(instance_dir).exists()
    assert domain(request)[1]  # the new guest stays

    # A second resize, reverted: the 2 GiB, 2 vCPU guest comes back, on its own disk.
    resize_on_the_same_host(manager, reports, store, request, 2)
    ref = rpc.MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=2)
    manager.revert_migration(ref)
    reports.last()
    assert (resize_dir(instance_dir) / "disk").is_file()
    manager.finish_revert_migration(
        rpc.FinishRevertRequest(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=2, power_on=True
        )
    )
    back = reports.last()

    assert back.power_state == rpc.RUNNING and back.addresses[0]["mac"] == "52:54:00:5a:00:02"
    root, active = domain(request)
    assert active and root.findtext("vcpu") == "2"
    assert not resize_dir(instance_dir).exists()
    assert qemu_img_info(instance_dir / "disk")["backing-filename"].endswith("migrated-1")
    wait_for_console(manager, request, "demo#")


def test_rescue_boots_from_the_rescue_disk_and_unrescue_restores_the_guest(host):
    manager, reports, store, made = host
    request = boot(manager, reports, store, made)
    instance_dir = manager.config.instance_dir(request.instance_uuid)
    conn = libvirt.open("qemu:///system")
    try:
        before = conn.lookupByUUIDString(request.instance_uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    log = instance_dir / "console.log"

    manager.rescue_instance(
        rpc.RescueRequest(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, rescue_image=store.spec("demo")
        )
    )

    assert reports.last().power_state == rpc.RUNNING
    root, active = domain(request)
    assert active
    assert disks(root) == [(str(instance_dir / "disk.rescue"), "vda"), (str(instance_dir / "disk"), "vdb")]
    assert root.find("./devices/disk/boot").get("order") == "1"
    wait_for_console(manager, request, "demo#")

    manager.unrescue_instance(InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))

    assert reports.last().power_state == rpc.RUNNING
    root, active = domain(request)
    assert active and disks(root) == [(str(instance_dir / "disk"), "vda")]
    conn = libvirt.open("qemu:///system")
    try:
        after = conn.lookupByUUIDString(request.instance_uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    assert after == before
    assert sorted(p.name for p in instance_dir.iterdir()) == ["console.log", "disk"]
    wait_for_console(manager, request, "demo#", since=0)
    assert os.path.getsize(log) > 0
