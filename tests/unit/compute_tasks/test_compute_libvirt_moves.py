"""Resize/cold migration and rescue in the libvirt driver, against ``test:///default``."""

import dataclasses
import shutil
import subprocess
import uuid

import libvirt
import pytest

from compute_tasks import rpc
from compute_tasks.drivers import domain_xml
from compute_tasks.drivers.base import DomainNotFound, DriverError, resize_dir
from compute_tasks.rpc import FlavorSpec, ImageSpec, InstanceRef
from tests.unit.compute_tasks import test_compute_libvirt_driver as libvirt_tests

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed"),
]

# The libvirt driver tests' fixtures and helpers, shared.
base_image = libvirt_tests.base_image
driver = libvirt_tests.driver
make_request = libvirt_tests.make_request
qemu_img_info = libvirt_tests.qemu_img_info
ref_for = libvirt_tests.ref_for
URI = libvirt_tests.URI
GIB = 1024**3
MIGRATED = ImageSpec(id="migrated", url="http://unused", sha256="0" * 64, size=1)


def inactive_xml(request):
    conn = libvirt.open(URI)
    return conn.lookupByUUIDString(request.instance_uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def exists(request):
    conn = libvirt.open(URI)
    try:
        conn.lookupByUUIDString(request.instance_uuid)
    except libvirt.libvirtError:
        return False
    return True


def migrated(driver, base_image, tmp_path, root_gb=2, migration_id=3):
    request = make_request(driver)
    driver.spawn(request, base_image)
    instance_dir = driver.instances_dir / request.instance_uuid
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x5a 1M 64k", str(instance_dir / "disk")], check=True, capture_output=True
    )
    saved = inactive_xml(request)
    target = tmp_path / f"migrated-{migration_id}.qcow2"
    driver.migrate_disk(ref_for(request), target)
    return request, instance_dir, target, saved


def test_migrate_disk_undefines_keeps_the_directory_aside_and_writes_one_image(driver, base_image, tmp_path):
    request, instance_dir, target, saved = migrated(driver, base_image, tmp_path)

    assert not exists(request)
    assert not instance_dir.exists()
    assert (resize_dir(instance_dir) / "domain.xml").read_text() == saved
    info = qemu_img_info(target)
    assert "backing-filename" not in info and info["virtual-size"] == GIB
    # Redelivered: the copy is made again from the kept disk.
    target.unlink()
    driver.migrate_disk(ref_for(request), target)
    assert qemu_img_info(target)["virtual-size"] == GIB


def test_finish_migration_on_the_same_host_grows_the_disk_and_confirm_keeps_it(driver, base_image, tmp_path):
    request, instance_dir, target, _saved = migrated(driver, base_image, tmp_path)
    bigger = dataclasses.replace(
        request, flavor=FlavorSpec(name="m1.small", vcpus=2, memory_mb=128, root_gb=2), image=MIGRATED
    )

    result = driver.finish_migration(bigger, target, migration_id=3)

    assert result.power_state == rpc.RUNNING
    assert qemu_img_info(instance_dir / "disk")["virtual-size"] == 2 * GIB
    assert "<vcpu placement='static'>2</vcpu>" in inactive_xml(request)
    assert (instance_dir / "migration").read_text() == "3"
    with pytest.raises(DriverError, match="still on this host"):
        driver.finish_revert_migration(ref_for(request), migration_id=3, power_on=True)

    driver.confirm_migration(ref_for(request), migration_id=3)
    driver.confirm_migration(ref_for(request), migration_id=3)

    assert exists(request) and driver.power_state(ref_for(request)) == rpc.RUNNING
    assert not resize_dir(instance_dir).exists()


def test_a_migrated_disk_is_never_shrunk(driver, base_image, tmp_path):
    request, instance_dir, target, _saved = migrated(driver, base_image, tmp_path)
    smaller = dataclasses.replace(request, flavor=FlavorSpec(name="m1.nano", vcpus=1, memory_mb=64, root_gb=0))
    smaller = dataclasses.replace(smaller, image=MIGRATED, flavor=dataclasses.replace(smaller.flavor, root_gb=1))
    # The disk was 1 GiB; a flavor of 1 GiB keeps it, and one that names less is ignored, not refused.
    driver.finish_migration(smaller, target, migration_id=3, power_on=False)
    assert qemu_img_info(instance_dir / "disk")["virtual-size"] == GIB


def test_revert_then_finish_revert_on_the_same_host_brings_the_old_definition_back(driver, base_image, tmp_path):
    request, instance_dir, target, saved = migrated(driver, base_image, tmp_path)
    bigger = dataclasses.replace(request, flavor=FlavorSpec(name="m1.small", vcpus=2, memory_mb=128, root_gb=2))
    driver.finish_migration(dataclasses.replace(bigger, image=MIGRATED), target, migration_id=3)

    driver.revert_migration(ref_for(request), migration_id=3)
    assert not exists(request) and (resize_dir(instance_dir) / "disk").is_file()
    state = driver.finish_revert_migration(ref_for(request), migration_id=3, power_on=True)
    # Redelivered, each: the old guest, back, is left alone.
    driver.revert_migration(ref_for(request), migration_id=3)
    assert driver.finish_revert_migration(ref_for(request), migration_id=3, power_on=True) == rpc.RUNNING

    assert state == rpc.RUNNING
    assert inactive_xml(request) == saved
    assert qemu_img_info(instance_dir / "disk")["virtual-size"] == GIB
    assert not resize_dir(instance_dir).exists() and not (instance_dir / "domain.xml").exists()


def test_migrate_disk_of_an_unknown_instance_is_domain_not_found(driver, tmp_path):
    with pytest.raises(DomainNotFound):
        driver.migrate_disk(InstanceRef(instance_uuid=str(uuid.uuid4()), domain_name="x"), tmp_path / "t")


def test_rescue_defines_two_disks_and_unrescue_the_saved_definition(driver, base_image):
    request = make_request(driver)
    driver.spawn(request, base_image)
    instance_dir = driver.instances_dir / request.instance_uuid
    before = inactive_xml(request)
    rescue_image = ImageSpec(id="rescue", url="http://unused", sha256="0" * 64, size=1)

    assert driver.rescue(ref_for(request), rescue_image, base_image) == rpc.RUNNING
    assert driver.rescue(ref_for(request), rescue_image, base_image) == rpc.RUNNING  # redelivered

    rescued = inactive_xml(request)
    assert f"<source file='{instance_dir / 'disk.rescue'}'/>" in rescued
    assert "<target dev='vda' bus='virtio'/>" in rescued and "<target dev='vdb' bus='virtio'/>" in rescued
    assert "<boot order='1'/>" in rescued and "<boot dev=" not in rescued
    assert qemu_img_info(instance_dir / "disk.rescue")["backing-filename"] == str(base_image)

    assert driver.unrescue(ref_for(request)) == rpc.RUNNING
    assert driver.unrescue(ref_for(request)) == rpc.RUNNING  # redelivered
    assert inactive_xml(request) == before
    assert sorted(p.name for p in instance_dir.iterdir()) == ["console.log", "disk"]


def test_the_user_nics_are_read_back_from_a_definition(driver):
    # test:///default drops QEMU's command line from what it keeps, so the built XML is read directly.
    request = make_request(driver)
    xml = domain_xml.build_domain_xml(
        request,
        virt_type="qemu",
        disk_path=None,
        console_log_path=driver.instances_dir / "log",
        vnc_listen="127.0.0.1",
        volume_disks=["<disk type='file' device='disk'><target dev='vda'/></disk>"],
    )

    assert domain_xml.user_nic_macs(xml) == ["52:54:00:00:00:0a"]
