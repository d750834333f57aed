"""The libvirt driver against libvirt's own in-memory hypervisor, ``test:///default``.

That hypervisor is shared by every connection in the process and starts with one domain, "test",
which the cloud did not make. Each test uses fresh uuids and removes what it made.
"""

import json
import os
import shutil
import subprocess
import uuid

import libvirt  # noqa: E402
import libvirt_qemu
import pytest

from compute_tasks import rpc  # noqa: E402
from compute_tasks.drivers.base import DomainNotFound, DriverError  # noqa: E402
from compute_tasks.drivers.libvirt_driver import ForeignDomain, LibvirtDriver, power_state_of  # noqa: E402
from compute_tasks.rpc import BuildRequest, FlavorSpec, ImageSpec, InstanceMetadata, InstanceRef, NicSpec  # noqa: E402
from tests.file_modes import mode_of

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed"),
]

URI = "test:///default"
HOSTILE = "<script>&\"'"


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "base"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


@pytest.fixture
def driver(tmp_path):
    driver = LibvirtDriver(
        uri=URI,
        virt_type="qemu",
        instances_dir=tmp_path / "instances",
        vnc_listen="127.0.0.1",
        vnc_host="127.0.0.1",
        shutdown_timeout=1,
        poll_interval=0.05,
    )
    made = []
    driver.made = made
    yield driver
    for instance_uuid in made:
        driver.destroy(InstanceRef(instance_uuid=instance_uuid, domain_name=""))


def make_request(driver, **overrides):
    fields = {
        "instance_uuid": str(uuid.uuid4()),
        "domain_name": f"instance-{uuid.uuid4().hex[:8]}",
        "flavor": FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1),
        "image": ImageSpec(id="base", url="http://unused", sha256="0" * 64, size=1),
        "nics": [NicSpec(mac="52:54:00:00:00:0a", network="user")],
    }
    fields.update(overrides)
    request = BuildRequest(**fields)
    driver.made.append(request.instance_uuid)
    return request


def ref_for(request):
    return InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name)


def qemu_img_info(path):
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True)
    return json.loads(out.stdout)


def test_spawn_defines_and_starts_a_domain_on_a_qcow2_overlay(driver, base_image):
    request = make_request(driver)

    result = driver.spawn(request, base_image)

    assert result.power_state == rpc.RUNNING
    # test:///default allocates no VNC port.
    assert (result.vnc_host, result.vnc_port) == (None, None)
    assert result.addresses == [{"addr": "10.0.2.15", "version": 4, "mac": "52:54:00:00:00:0a", "network": "user"}]
    disk = driver.instances_dir / request.instance_uuid / "disk"
    info = qemu_img_info(disk)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base_image)
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 1024**3
    conn = libvirt.open(URI)
    dom = conn.lookupByUUIDString(request.instance_uuid)
    assert dom.name() == request.domain_name
    assert str(disk) in dom.XMLDesc(0)


@pytest.mark.skipif(shutil.which("genisoimage") is None, reason="genisoimage is not installed")
@pytest.mark.usefixtures("loose_umask")
def test_an_instance_s_files_are_its_owner_s_alone(driver, base_image):
    # Disks and config drives hold user data and keys; the serial log what the guest printed.
    request = make_request(
        driver,
        metadata=InstanceMetadata(uuid="u", name="n", hostname="h", project_id="p", public_keys={"k": "ssh-ed25519 A"}),
    )
    driver.host_resources()  # as the worker's first heartbeat does, before any build: it makes instances/

    driver.spawn(request, base_image)

    instance_dir = driver.instances_dir / request.instance_uuid
    assert mode_of(driver.instances_dir) == mode_of(instance_dir) == 0o700
    assert {path.name: mode_of(path) for path in instance_dir.iterdir()} == {
        "disk": 0o600,
        "disk.config": 0o600,
        "console.log": 0o600,
    }


def test_a_hostile_name_is_kept_verbatim(driver, base_image):
    request = make_request(driver, domain_name=HOSTILE + uuid.uuid4().hex[:6])

    driver.spawn(request, base_image)

    assert libvirt.open(URI).lookupByUUIDString(request.instance_uuid).name() == request.domain_name


def test_a_guest_announces_itself_only_where_it_has_nics_on_a_wire(driver, base_image):
    # QEMU's announce-self is asked of a QEMU hypervisor only: libvirt's test driver has no monitor.
    request = make_request(driver)
    driver.spawn(request, base_image)

    driver.announce(ref_for(request))

    dom = libvirt.open(URI).lookupByUUIDString(request.instance_uuid)
    with pytest.raises(libvirt.libvirtError):  # what announcing here would meet
        libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "announce-self"}', 0)


def test_power_off_and_on(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)

    assert driver.power_off(ref_for(request)) == rpc.SHUTDOWN
    assert driver.power_state(ref_for(request)) == rpc.SHUTDOWN
    assert driver.vnc_address(ref_for(request)) == (None, None)
    assert driver.power_off(ref_for(request)) == rpc.SHUTDOWN  # again: nothing to do
    assert driver.power_on(ref_for(request)) == rpc.RUNNING
    assert driver.power_on(ref_for(request)) == rpc.RUNNING  # again: nothing to do


def test_reboots_end_running(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    conn = libvirt.open(URI)

    def domain_id():
        # A virDomain caches its id: look it up afresh.
        return conn.lookupByUUIDString(request.instance_uuid).ID()

    ids = [domain_id()]
    assert driver.reboot(ref_for(request), hard=False) == rpc.RUNNING
    ids.append(domain_id())
    assert driver.reboot(ref_for(request), hard=True) == rpc.RUNNING
    ids.append(domain_id())
    # Each reboot was a power cycle: the domain got a new id each time.
    assert len(set(ids)) == 3
    assert -1 not in ids

    driver.power_off(ref_for(request))
    assert driver.reboot(ref_for(request), hard=False) == rpc.RUNNING


def test_destroy_leaves_no_domain_and_no_dir(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    instance_dir = driver.instances_dir / request.instance_uuid
    assert instance_dir.is_dir()

    driver.destroy(ref_for(request))

    with pytest.raises(libvirt.libvirtError):
        libvirt.open(URI).lookupByUUIDString(request.instance_uuid)
    assert not instance_dir.exists()
    with pytest.raises(DomainNotFound):
        driver.power_state(ref_for(request))
    driver.destroy(ref_for(request))  # idempotent


def test_destroy_of_a_domain_that_never_existed_is_fine(driver):
    driver.destroy(InstanceRef(instance_uuid=str(uuid.uuid4()), domain_name="never"))


def test_list_domains_tells_own_from_foreign(driver, base_image):
    running, stopped = make_request(driver), make_request(driver)
    driver.spawn(running, base_image)
    driver.spawn(stopped, base_image)
    driver.power_off(ref_for(stopped))
    conn = libvirt.open(URI)
    foreign_name = f"handmade-{uuid.uuid4().hex[:8]}"
    foreign = conn.defineXML(
        f"<domain type='test'><name>{foreign_name}</name><memory>65536</memory><os><type>hvm</type></os></domain>"
    )
    try:
        inventory = driver.list_domains()
    finally:
        foreign.undefine()

    assert inventory.instances[running.instance_uuid] == rpc.RUNNING
    assert inventory.instances[stopped.instance_uuid] == rpc.SHUTDOWN
    assert "test" in inventory.foreign
    assert foreign_name in inventory.foreign
    assert foreign.UUIDString() not in inventory.instances


def test_a_foreign_domain_with_an_instance_uuid_is_left_alone(driver):
    instance_uuid = str(uuid.uuid4())
    name = f"handmade-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(URI)
    dom = conn.defineXML(
        f"<domain type='test'><name>{name}</name><uuid>{instance_uuid}</uuid><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    try:
        with pytest.raises(ForeignDomain):
            driver.destroy(InstanceRef(instance_uuid=instance_uuid, domain_name=name))
        assert conn.lookupByUUIDString(instance_uuid).name() == name
    finally:
        dom.undefine()


def test_spawn_refuses_a_second_domain_for_an_instance(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)

    with pytest.raises(DriverError, match="already has a domain"):
        driver.spawn(request, base_image)


def test_a_leftover_directory_without_a_domain_is_replaced(driver, base_image):
    request = make_request(driver)
    leftover = driver.instances_dir / request.instance_uuid
    leftover.mkdir(parents=True)
    (leftover / "disk").write_bytes(b"half written")

    driver.spawn(request, base_image)

    assert qemu_img_info(leftover / "disk")["format"] == "qcow2"


def test_a_flavor_disk_smaller_than_the_image_is_refused(driver, tmp_path):
    big = tmp_path / "big"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "2G"], check=True)
    request = make_request(driver)

    with pytest.raises(DriverError, match="smaller than") as caught:
        driver.spawn(request, big)

    assert caught.value.reschedulable is False
    with pytest.raises(DomainNotFound):
        driver.power_state(ref_for(request))


def test_an_image_with_its_own_backing_file_is_refused(driver, base_image, tmp_path):
    sneaky = tmp_path / "sneaky"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base_image), str(sneaky)],
        check=True,
    )

    with pytest.raises(DriverError, match="backing file") as caught:
        driver.spawn(make_request(driver), sneaky)
    assert caught.value.reschedulable is False


def test_root_gb_zero_keeps_the_image_size(driver, base_image):
    request = make_request(driver, flavor=FlavorSpec(name="m1.zero", vcpus=1, memory_mb=64, root_gb=0))

    driver.spawn(request, base_image)

    assert qemu_img_info(driver.instances_dir / request.instance_uuid / "disk")["virtual-size"] == 16 * 1024**2


def test_actions_on_an_absent_domain_raise_domain_not_found(driver):
    ref = InstanceRef(instance_uuid=str(uuid.uuid4()), domain_name="gone")
    for action in (driver.power_on, driver.power_off, driver.power_state, driver.vnc_address):
        with pytest.raises(DomainNotFound):
            action(ref)
    with pytest.raises(DomainNotFound):
        driver.reboot(ref, hard=True)


def test_host_resources(driver):
    resources = driver.host_resources()

    assert resources.vcpus > 0
    assert resources.memory_mb > 0
    assert resources.disk_gb > 0
    assert resources.hypervisor_type == "TEST"
    assert resources.hypervisor_version > 0
    assert resources.cpu_arch


def test_a_closed_connection_is_replaced(driver):
    driver.list_domains()
    driver._conn.close()

    assert "test" in driver.list_domains().foreign


def test_an_unreachable_libvirt_is_a_driver_error(tmp_path):
    driver = LibvirtDriver(
        uri="qemu+unix:///system?socket=/nonexistent/libvirt-sock",
        virt_type="qemu",
        instances_dir=tmp_path,
        vnc_listen="127.0.0.1",
        vnc_host="127.0.0.1",
    )

    with pytest.raises(DriverError, match="cannot connect to libvirt"):
        driver.list_domains()


def test_power_state_mapping():
    assert power_state_of(libvirt.VIR_DOMAIN_RUNNING) == rpc.RUNNING
    assert power_state_of(libvirt.VIR_DOMAIN_BLOCKED) == rpc.RUNNING
    assert power_state_of(libvirt.VIR_DOMAIN_PAUSED) == rpc.PAUSED
    assert power_state_of(libvirt.VIR_DOMAIN_SHUTOFF) == rpc.SHUTDOWN
    assert power_state_of(libvirt.VIR_DOMAIN_CRASHED) == rpc.CRASHED
    assert power_state_of(libvirt.VIR_DOMAIN_PMSUSPENDED) == rpc.SUSPENDED
    assert power_state_of(libvirt.VIR_DOMAIN_NOSTATE) == rpc.NOSTATE
    assert power_state_of(99) == rpc.NOSTATE


# --- pause, suspend, snapshot, console log ------------------------------------------------------------


def libvirt_state(request):
    dom = libvirt.open(URI).lookupByUUIDString(request.instance_uuid)
    return dom.state()[0], bool(dom.hasManagedSaveImage(0))


def test_pause_and_unpause_halt_and_continue_the_guest(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    ref = ref_for(request)

    assert driver.pause(ref) == rpc.PAUSED
    assert libvirt_state(request) == (libvirt.VIR_DOMAIN_PAUSED, False)
    assert driver.pause(ref) == rpc.PAUSED  # again: nothing to do
    assert driver.unpause(ref) == rpc.RUNNING
    assert libvirt_state(request) == (libvirt.VIR_DOMAIN_RUNNING, False)
    assert driver.unpause(ref) == rpc.RUNNING  # again: nothing to do

    driver.power_off(ref)
    with pytest.raises(DriverError, match="not running"):
        driver.pause(ref)
    with pytest.raises(DriverError, match="not paused"):
        driver.unpause(ref)


def test_suspend_saves_the_guest_and_resume_restores_it(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    ref = ref_for(request)

    assert driver.suspend(ref) == rpc.SUSPENDED
    # Shut off with its memory saved: the heartbeat reports it as suspended, not as powered off.
    assert libvirt_state(request) == (libvirt.VIR_DOMAIN_SHUTOFF, True)
    assert driver.power_state(ref) == rpc.SUSPENDED
    assert driver.list_domains().instances[request.instance_uuid] == rpc.SUSPENDED
    assert driver.vnc_address(ref) == (None, None)
    assert driver.suspend(ref) == rpc.SUSPENDED  # again: nothing to do

    assert driver.resume(ref) == rpc.RUNNING
    assert libvirt_state(request) == (libvirt.VIR_DOMAIN_RUNNING, False)
    assert driver.resume(ref) == rpc.RUNNING  # again: nothing to do

    driver.power_off(ref)
    with pytest.raises(DriverError, match="cannot be suspended"):
        driver.suspend(ref)
    with pytest.raises(DriverError, match="no saved memory"):
        driver.resume(ref)


def test_a_paused_guest_is_suspended_and_comes_back_running(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    ref = ref_for(request)
    driver.pause(ref)

    assert driver.suspend(ref) == rpc.SUSPENDED
    assert driver.resume(ref) == rpc.RUNNING


def test_hard_reboot_of_a_suspended_guest_boots_it_afresh(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    ref = ref_for(request)
    driver.suspend(ref)

    assert driver.reboot(ref, hard=True) == rpc.RUNNING
    assert libvirt_state(request) == (libvirt.VIR_DOMAIN_RUNNING, False)


def test_destroy_removes_a_suspended_guest_and_its_saved_memory(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    driver.suspend(ref_for(request))

    driver.destroy(ref_for(request))

    with pytest.raises(DomainNotFound):
        driver.power_state(ref_for(request))


def test_spawn_without_power_on_only_defines_the_domain(driver, base_image):
    request = make_request(driver)

    result = driver.spawn(request, base_image, power_on=False)

    assert result.power_state == rpc.SHUTDOWN
    assert libvirt_state(request) == (libvirt.VIR_DOMAIN_SHUTOFF, False)


@pytest.mark.usefixtures("loose_umask")
@pytest.mark.parametrize("before", ["running", "paused", "stopped", "suspended"])
def test_snapshot_writes_one_standalone_image_and_leaves_the_guest_as_it_was(driver, base_image, tmp_path, before):
    request = make_request(driver)
    driver.spawn(request, base_image)
    ref = ref_for(request)
    disk = driver.instances_dir / request.instance_uuid / "disk"
    # Something written to the overlay must be in the snapshot: the image is the whole chain, flattened.
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 1M 64k", str(disk)], check=True, capture_output=True)
    expected = {"running": rpc.RUNNING, "paused": rpc.PAUSED, "stopped": rpc.SHUTDOWN, "suspended": rpc.SUSPENDED}
    if before == "paused":
        driver.pause(ref)
    elif before == "stopped":
        driver.power_off(ref)
    elif before == "suspended":
        driver.suspend(ref)
    target = tmp_path / "snap.qcow2"

    assert driver.snapshot(ref, target) == expected[before]

    assert driver.power_state(ref) == expected[before]
    assert mode_of(target) == 0o600
    info = qemu_img_info(target)
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info
    assert info["virtual-size"] == 1024**3
    pattern = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 1M 64k", str(target)], capture_output=True, text=True
    )
    assert "Pattern verification failed" not in pattern.stdout and pattern.returncode == 0


def test_snapshot_of_a_missing_domain_is_domain_not_found(driver, tmp_path):
    with pytest.raises(DomainNotFound):
        driver.snapshot(InstanceRef(instance_uuid=str(uuid.uuid4()), domain_name="x"), tmp_path / "s")


def test_console_log_is_the_tail_of_the_serial_log(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    ref = ref_for(request)
    assert driver.console_log(ref, 1024) == b""  # the guest printed nothing yet
    log = driver.instances_dir / request.instance_uuid / "console.log"
    log.write_bytes(b"".join(b"line %d\n" % n for n in range(1000)))

    assert driver.console_log(ref, 13) == b"998\nline 999\n"
    assert driver.console_log(ref, 10**6) == log.read_bytes()
    with pytest.raises(DomainNotFound):
        driver.console_log(InstanceRef(instance_uuid=str(uuid.uuid4()), domain_name="x"), 10)


# --- what the host runs on users' images and volumes ---------------------------------------------------


def qcow2_with_data_file(directory, host_file):
    """A qcow2 whose clusters are another file of the host: booted, the guest would read that file."""
    host_file.write_bytes(b"host secret\n" * 1000)
    image = directory / "crafted.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={host_file},data_file_raw=on", str(image), "1M"],
        check=True,
    )
    return image


def test_an_image_with_an_external_data_file_is_refused(driver, tmp_path):
    crafted = qcow2_with_data_file(tmp_path, tmp_path / "shadow")
    request = make_request(driver)

    with pytest.raises(DriverError, match="external data file") as caught:
        driver.spawn(request, crafted)
    assert caught.value.reschedulable is False
    assert not (driver.instances_dir / request.instance_uuid / "disk").exists()


def test_a_snapshot_refuses_an_overlay_that_grew_a_data_file(driver, base_image, tmp_path):
    request = make_request(driver)
    driver.spawn(request, base_image)
    disk = driver.instances_dir / request.instance_uuid / "disk"
    # As if the overlay's header had been rewritten: snapshotting it would copy a host file into an image.
    disk.unlink()
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'shadow'}", str(disk), "1M"],
        check=True,
    )

    with pytest.raises(DriverError, match="external data file"):
        driver.snapshot(ref_for(request), tmp_path / "snap.qcow2")
    assert not (tmp_path / "snap.qcow2").exists()


NFS_EXPORT = "127.0.0.1:/srv/share"


@pytest.fixture
def fake_mount(tmp_path, monkeypatch):
    """A `mount` first on PATH that records its arguments and puts the volume's file in the mount point."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "mount-argv"
    script = bin_dir / "mount"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nfor last; do :; done\ntruncate -s 64M "$last/volume-1"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return record


def volume_build(driver, image_format="qcow2"):
    image = ImageSpec(id="vol-image", url="http://unused", sha256="0" * 64, size=1, disk_format=image_format)
    root = rpc.VolumeConnection(
        volume_id="vol-1",
        attachment_id="att-1",
        device="vda",
        boot_index=0,
        image=image,
        connection_info={"driver_volume_type": "nfs", "export": NFS_EXPORT, "name": "volume-1", "format": "raw"},
    )
    return make_request(driver, image=None, block_devices=[root])


def test_an_nfs_share_reaches_mount_after_the_end_of_its_options(driver, base_image, fake_mount, tmp_path):
    driver.nfs_mount_point_base = tmp_path / "mnt"
    request = volume_build(driver)

    driver.spawn(request, None, volume_images={"vol-1": base_image})

    argv = fake_mount.read_text().splitlines()
    assert argv[:3] == ["-t", "nfs", "--"] and argv[3] == NFS_EXPORT and len(argv) == 5


def test_an_image_with_an_external_data_file_is_not_written_onto_a_volume(driver, fake_mount, tmp_path):
    driver.nfs_mount_point_base = tmp_path / "mnt"
    crafted = qcow2_with_data_file(tmp_path, tmp_path / "shadow")

    with pytest.raises(DriverError, match="image vol-image has an external data file"):
        driver.spawn(volume_build(driver), None, volume_images={"vol-1": crafted})
