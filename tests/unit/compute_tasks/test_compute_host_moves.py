"""The host's side of resize/cold migration, shelve and rescue, with the fake driver."""

import dataclasses

import pytest

from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.drivers.base import DriverError, resize_dir
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.images import ImageError
from compute_tasks.manager import ComputeManager
from compute_tasks.rpc import ActionResult, FlavorSpec, ImageSpec
from tests.unit.compute_tasks.test_compute_manager import (
    RecordingReporter,
    StubImages,
    StubUploads,
    make_request,
    ref_for,
)

pytestmark = pytest.mark.unit

UPLOAD = "http://api/internal/images/img-mig/upload?sig=secret"
MIGRATED = ImageSpec(id="img-mig", url="http://images/img-mig?sig=s", sha256="c" * 64, size=4)
BIGGER = FlavorSpec(name="m1.small", vcpus=2, memory_mb=256, root_gb=2)


@pytest.fixture
def uploads():
    return StubUploads()


@pytest.fixture
def images(tmp_path):
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"base")
    return StubImages(base)


def host(tmp_path, name, images, uploads):
    config = rpc_config(tmp_path, name)
    driver = FakeDriver(instances_dir=config.instances_dir)
    reporter = RecordingReporter()
    return ComputeManager(config, driver, reporter, images=images, uploads=uploads)


def rpc_config(tmp_path, name):
    return HostConfig.from_env(
        {"COMPUTE_HOST": name, "COMPUTE_DRIVER": "fake", "COMPUTE_STATE_DIR": str(tmp_path / name)}
    )


@pytest.fixture
def source(tmp_path, images, uploads):
    return host(tmp_path, "hv-a", images, uploads)


@pytest.fixture
def destination(tmp_path, images, uploads):
    return host(tmp_path, "hv-b", images, uploads)


def built(manager):
    request = make_request()
    manager.build_and_run_instance(request)
    (manager.config.instance_dir(request.instance_uuid) / "disk").write_bytes(b"the guest's disk")
    manager.reporter.sent.clear()
    return request


def migrate_disk(manager, request, migration_id=7):
    manager.migrate_disk(
        rpc.MigrateDiskRequest(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            migration_id=migration_id,
            image_id="img-mig",
            upload_url=UPLOAD,
            request_id="req-mig",
        )
    )
    return last(manager)


def finish(manager, request, migration_id=7, power_on=True):
    build = dataclasses.replace(request, flavor=BIGGER, image=MIGRATED)
    manager.finish_migration(rpc.FinishMigrationRequest(build=build, migration_id=migration_id, power_on=power_on))
    return last(manager)


def mref(request, migration_id=7):
    return rpc.MigrationRef(
        instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=migration_id
    )


def last(manager):
    result = manager.reporter.sent[-1]
    assert isinstance(result, ActionResult)
    manager.reporter.sent.clear()
    return result


def instance_dir(manager, request):
    return manager.config.instance_dir(request.instance_uuid)


# --- resize and cold migration ---------------------------------------------------------------------


def test_migrate_disk_powers_off_keeps_the_directory_aside_and_uploads_the_disk(source, uploads):
    request = built(source)

    result = migrate_disk(source, request)

    assert (result.action, result.error, result.power_state) == ("migrate_disk", "", rpc.SHUTDOWN)
    assert (result.image_id, result.migration_id, result.request_id) == ("img-mig", 7, "req-mig")
    assert uploads.received == [(b"the guest's disk", UPLOAD)]
    assert request.instance_uuid not in source.driver.domains
    assert not instance_dir(source, request).exists()
    assert (resize_dir(instance_dir(source, request)) / "disk").read_bytes() == b"the guest's disk"
    assert list((source.config.state_dir / "snapshots").iterdir()) == []


def test_a_redelivered_migrate_disk_only_uploads_again(source, uploads):
    request = built(source)
    migrate_disk(source, request)

    result = migrate_disk(source, request)

    assert (result.error, result.power_state) == ("", rpc.SHUTDOWN)
    assert [data for data, _ in uploads.received] == [b"the guest's disk"] * 2


def test_migrate_disk_of_an_unknown_instance_reports_the_error(source):
    request = make_request()

    result = migrate_disk(source, request)

    assert "has no domain" in result.error
    assert result.migration_id == 7


def test_a_failed_upload_is_reported_and_leaves_the_old_disk_aside(source, uploads):
    request = built(source)
    uploads.error = ImageError("upload failed: HTTP 503")

    result = migrate_disk(source, request)

    assert "HTTP 503" in result.error and result.migration_id == 7
    assert resize_dir(instance_dir(source, request)).is_dir()


def test_finish_migration_builds_the_guest_with_the_new_flavor(source, destination, images):
    request = built(source)
    migrate_disk(source, request)

    result = finish(destination, request)

    assert (result.action, result.error, result.power_state) == ("finish_migration", "", rpc.RUNNING)
    assert result.migration_id == 7 and result.vnc_port is not None
    assert result.addresses[0]["mac"] == request.nics[0].mac
    assert images.fetched[-1] == "img-mig"
    domain = destination.driver.domains[request.instance_uuid]
    assert (domain.name, domain.flavor, domain.migration_id) == (request.domain_name, "m1.small", 7)
    assert (instance_dir(destination, request) / "migration").read_text() == "7"


def test_finish_migration_of_a_stopped_server_leaves_it_stopped(destination):
    result = finish(destination, make_request(), power_on=False)

    assert (result.error, result.power_state, result.vnc_port) == ("", rpc.SHUTDOWN, None)


def test_a_redelivered_finish_migration_is_reported_as_done(destination):
    request = make_request()
    finish(destination, request)

    result = finish(destination, request)

    assert (result.error, result.power_state) == ("", rpc.RUNNING)
    assert [c for c, _ in destination.driver.calls].count("finish_migration") == 1


def test_a_failed_finish_migration_removes_what_it_made(destination):
    request = make_request()
    destination.driver.fail_spawn = DriverError("no room for the disk")

    result = finish(destination, request)

    assert (result.error, result.migration_id) == ("no room for the disk", 7)
    assert request.instance_uuid not in destination.driver.domains
    assert not instance_dir(destination, request).exists()


def test_a_finish_migration_whose_disk_cannot_be_had_makes_nothing(destination, images):
    request = make_request()
    images.error = ImageError("image img-mig: sha256 mismatch")

    result = finish(destination, request)

    assert "sha256" in result.error
    assert "finish_migration" not in [c for c, _ in destination.driver.calls]


def test_confirm_removes_the_old_directory_and_is_idempotent(source, destination):
    request = built(source)
    migrate_disk(source, request)
    finish(destination, request)

    for _ in range(2):
        source.confirm_migration(mref(request))
        result = last(source)
        assert (result.action, result.error, result.migration_id) == ("confirm_migration", "", 7)
        assert not resize_dir(instance_dir(source, request)).exists()
    assert request.instance_uuid in destination.driver.domains


def test_revert_and_finish_revert_bring_the_old_guest_back(source, destination):
    request = built(source)
    migrate_disk(source, request)
    finish(destination, request)

    destination.revert_migration(mref(request))
    reverted = last(destination)
    source.finish_revert_migration(
        rpc.FinishRevertRequest(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=7, power_on=True
        )
    )
    back = last(source)

    assert (reverted.action, reverted.error, reverted.power_state) == ("revert_migration", "", rpc.NOSTATE)
    assert request.instance_uuid not in destination.driver.domains
    assert not instance_dir(destination, request).exists()
    assert (back.action, back.error, back.power_state) == ("finish_revert_migration", "", rpc.RUNNING)
    assert back.vnc_port is not None and back.addresses[0]["mac"] == request.nics[0].mac
    assert (instance_dir(source, request) / "disk").read_bytes() == b"the guest's disk"
    assert not resize_dir(instance_dir(source, request)).exists()
    assert source.driver.domains[request.instance_uuid].flavor == "m1.tiny"


def test_a_redelivered_finish_revert_is_done(source):
    request = built(source)
    migrate_disk(source, request)
    finish_revert = rpc.FinishRevertRequest(
        instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=7, power_on=False
    )
    source.finish_revert_migration(finish_revert)
    last(source)

    source.finish_revert_migration(finish_revert)

    result = last(source)
    assert (result.error, result.power_state) == ("", rpc.SHUTDOWN)


def test_same_host_resize_confirm_keeps_the_new_guest(source, uploads):
    request = built(source)
    migrate_disk(source, request)
    result = finish(source, request)
    assert (result.error, result.power_state) == ("", rpc.RUNNING)
    assert instance_dir(source, request).is_dir() and resize_dir(instance_dir(source, request)).is_dir()

    source.confirm_migration(mref(request))

    assert last(source).error == ""
    assert source.driver.domains[request.instance_uuid].flavor == "m1.small"
    assert instance_dir(source, request).is_dir()
    assert not resize_dir(instance_dir(source, request)).exists()


def test_same_host_resize_revert_brings_the_old_guest_back_and_redelivery_spares_it(source):
    request = built(source)
    migrate_disk(source, request)
    finish(source, request)

    source.revert_migration(mref(request))
    assert last(source).error == ""
    assert resize_dir(instance_dir(source, request)).is_dir()  # revert never touches the old disk
    source.finish_revert_migration(
        rpc.FinishRevertRequest(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=7, power_on=True
        )
    )
    assert last(source).error == ""
    # A late redelivery of the revert must not take the old guest, now back, for the new one.
    source.revert_migration(mref(request))

    assert last(source).error == ""
    assert source.driver.domains[request.instance_uuid].flavor == "m1.tiny"
    assert (instance_dir(source, request) / "disk").read_bytes() == b"the guest's disk"


def test_finish_revert_refuses_while_the_migrated_guest_is_still_here(source):
    request = built(source)
    migrate_disk(source, request)
    finish(source, request)

    source.finish_revert_migration(
        rpc.FinishRevertRequest(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=7, power_on=True
        )
    )

    assert "still here" in last(source).error
    assert resize_dir(instance_dir(source, request)).is_dir()


# --- shelve ----------------------------------------------------------------------------------------


def shelve(manager, request, offload):
    manager.shelve_instance(
        rpc.ShelveRequest(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            image_id="img-shelved",
            upload_url=UPLOAD,
            offload=offload,
        )
    )
    return last(manager)


def test_shelve_powers_off_and_uploads_the_disk(source, uploads):
    request = built(source)

    result = shelve(source, request, offload=False)

    assert (result.action, result.error, result.power_state) == ("shelve", "", rpc.SHUTDOWN)
    assert (result.image_id, result.offloaded) == ("img-shelved", False)
    assert uploads.received == [(b"the guest's disk", UPLOAD)]
    assert source.driver.domains[request.instance_uuid].power_state == rpc.SHUTDOWN
    assert list((source.config.state_dir / "snapshots").iterdir()) == []


def test_shelve_with_offload_removes_the_guest_and_a_redelivery_is_done(source, uploads):
    request = built(source)
    source.driver.ignore_acpi = True

    result = shelve(source, request, offload=True)
    again = shelve(source, request, offload=True)

    for reported in (result, again):
        assert (reported.error, reported.power_state, reported.offloaded) == ("", rpc.NOSTATE, True)
    assert ("power_off_forced", request.instance_uuid) in source.driver.events
    assert len(uploads.received) == 1
    assert request.instance_uuid not in source.driver.domains
    assert not instance_dir(source, request).exists()


def test_a_shelve_whose_upload_fails_keeps_the_guest(source, uploads):
    request = built(source)
    uploads.error = ImageError("upload failed: HTTP 409")

    result = shelve(source, request, offload=True)

    assert "HTTP 409" in result.error and not result.offloaded
    assert request.instance_uuid in source.driver.domains


def test_shelve_offload_removes_the_guest(source):
    request = built(source)

    for _ in range(2):
        source.shelve_offload_instance(ref_for(request))
        result = last(source)
        assert (result.action, result.error, result.power_state, result.offloaded) == (
            "shelve_offload",
            "",
            rpc.NOSTATE,
            True,
        )
    assert not instance_dir(source, request).exists()


# --- rescue ----------------------------------------------------------------------------------------

RESCUE = ImageSpec(id="img-rescue", url="http://images/img-rescue?sig=s", sha256="d" * 64, size=4)


def rescue_request(request):
    return rpc.RescueRequest(instance_uuid=request.instance_uuid, domain_name=request.domain_name, rescue_image=RESCUE)


def test_rescue_boots_from_the_rescue_image_and_unrescue_brings_the_guest_back(source, images):
    request = built(source)
    source.stop_instance(ref_for(request))
    last(source)

    source.rescue_instance(rescue_request(request))
    rescued = last(source)
    source.rescue_instance(rescue_request(request))  # redelivered
    again = last(source)

    assert (rescued.action, rescued.error, rescued.power_state) == ("rescue", "", rpc.RUNNING)
    assert (again.error, again.vnc_port) == ("", rescued.vnc_port)
    assert images.fetched[-1] == "img-rescue"
    assert source.driver.domains[request.instance_uuid].rescue_image == "img-rescue"
    assert (instance_dir(source, request) / "disk.rescue").is_file()

    for _ in range(2):
        source.unrescue_instance(ref_for(request))
        result = last(source)
        assert (result.action, result.error, result.power_state) == ("unrescue", "", rpc.RUNNING)
    assert source.driver.domains[request.instance_uuid].rescue_image is None
    assert not (instance_dir(source, request) / "disk.rescue").exists()


def test_a_rescue_image_that_cannot_be_had_leaves_the_guest_as_it_was(source, images):
    request = built(source)
    images.error = ImageError("image img-rescue: HTTP 404")

    source.rescue_instance(rescue_request(request))

    result = last(source)
    assert "HTTP 404" in result.error and result.power_state == rpc.RUNNING
    assert source.driver.domains[request.instance_uuid].rescue_image is None
