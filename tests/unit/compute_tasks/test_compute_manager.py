import dataclasses
import threading
import uuid

import pytest

from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.drivers import load_driver
from compute_tasks.drivers.base import DriverError, HostResources
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.images import ImageError
from compute_tasks.manager import ComputeManager
from compute_tasks.rpc import (
    ActionResult,
    BuildFailed,
    BuildRequest,
    FlavorSpec,
    Heartbeat,
    ImageSpec,
    InstanceBuilt,
    InstanceRef,
    NicSpec,
)
from tests.file_modes import mode_of

pytestmark = pytest.mark.unit


class RecordingReporter:
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

    def heartbeat(self, beat):
        self.sent.append(beat)

    def reply_console_output(self, reply_to, result):
        self.sent.append((reply_to, result))

    def reply_diagnostics(self, reply_to, result):
        self.sent.append((reply_to, result))

    def only(self, kind):
        (message,) = [m for m in self.sent if isinstance(m, kind)]
        return message


class StubImages:
    """Hands out one base file, or fails as the image cache would."""

    def __init__(self, base):
        self.base = base
        self.error = None
        self.fetched = []

    def fetch(self, image, on_progress=None):
        self.fetched.append(image.id)
        if self.error is not None:
            raise self.error
        return self.base


@pytest.fixture
def config(tmp_path):
    return HostConfig.from_env(
        {"COMPUTE_HOST": "hv-test", "COMPUTE_DRIVER": "fake", "COMPUTE_STATE_DIR": str(tmp_path / "state")}
    )


@pytest.fixture
def driver(config):
    return FakeDriver(instances_dir=config.instances_dir, vnc_host="192.0.2.5")


@pytest.fixture
def images(tmp_path):
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"base")
    return StubImages(base)


@pytest.fixture
def reporter():
    return RecordingReporter()


@pytest.fixture
def manager(config, driver, reporter, images):
    return ComputeManager(config, driver, reporter, images=images)


def make_request(**overrides):
    fields = {
        "instance_uuid": str(uuid.uuid4()),
        "domain_name": "instance-1",
        "flavor": FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=128, root_gb=1),
        "image": ImageSpec(id="img-1", url="http://images/img-1?sig=s", sha256="a" * 64, size=4),
        "nics": [NicSpec(mac="52:54:00:00:00:01", network="user")],
        "request_id": "req-1",
    }
    fields.update(overrides)
    return BuildRequest(**fields)


def ref_for(request, **overrides):
    return InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, **overrides)


# --- build -----------------------------------------------------------------------------------------


def test_a_build_asked_not_to_power_on_leaves_the_domain_shut_off(manager, driver, reporter):
    """An evacuation from compute API 2.95: the server is made on its new host but not started, and a
    redelivery of the same build does not start it either."""
    request = make_request(power_on=False)
    manager.build_and_run_instance(request)
    assert reporter.only(InstanceBuilt).power_state == rpc.SHUTDOWN
    assert driver.power_state(ref_for(request)) == rpc.SHUTDOWN
    reporter.sent.clear()
    manager.build_and_run_instance(request)
    assert reporter.only(InstanceBuilt).power_state == rpc.SHUTDOWN


def test_images_are_pre_cached_one_by_one(manager, images):
    """Compute API 2.81: each image is fetched through the cache; one failing does not stop the others."""
    first = ImageSpec(id="img-a", url="http://images/a?sig=s", sha256="a" * 64, size=4)
    second = ImageSpec(id="img-b", url="http://images/b?sig=s", sha256="b" * 64, size=4)
    assert manager.cache_images(rpc.CacheImagesRequest(images=[first, second])) == {
        "img-a": "cached",
        "img-b": "cached",
    }
    images.error = ImageError("download of image img-c failed: HTTP 404")
    third = ImageSpec(id="img-c", url="http://images/c?sig=s", sha256="c" * 64, size=4)
    assert manager.cache_images(rpc.CacheImagesRequest(images=[third])) == {"img-c": "error"}
    assert images.fetched == ["img-a", "img-b", "img-c"]


def test_build_reports_the_running_instance(manager, driver, reporter, images, config):
    request = make_request()

    manager.build_and_run_instance(request)

    built = reporter.only(InstanceBuilt)
    assert built.instance_uuid == request.instance_uuid
    assert built.host == "hv-test"
    assert built.request_id == "req-1"
    assert built.power_state == rpc.RUNNING
    assert (built.vnc_host, built.vnc_port) == ("192.0.2.5", 5900)
    assert built.addresses == [{"addr": "10.0.2.15", "version": 4, "mac": "52:54:00:00:00:01", "network": "user"}]
    assert images.fetched == ["img-1"]
    assert (config.instance_dir(request.instance_uuid) / "disk").exists()


def test_a_redelivered_build_does_not_build_twice(manager, driver, reporter):
    request = make_request()

    manager.build_and_run_instance(request)
    manager.build_and_run_instance(request)

    first, second = reporter.sent
    assert isinstance(second, InstanceBuilt)
    assert (second.power_state, second.vnc_port) == (first.power_state, first.vnc_port)
    assert [call for call in driver.calls if call[0] == "spawn"] == [("spawn", request.instance_uuid)]


def test_a_redelivered_build_starts_a_domain_left_stopped(manager, driver, reporter):
    request = make_request()
    manager.build_and_run_instance(request)
    driver.power_off(ref_for(request))

    manager.build_and_run_instance(request)

    assert reporter.sent[-1].power_state == rpc.RUNNING
    assert driver.domains[request.instance_uuid].boots == 2


def test_a_failed_spawn_is_cleaned_up_and_reported(manager, driver, reporter, config):
    request = make_request()
    driver.fail_spawn = DriverError("libvirt said no")

    manager.build_and_run_instance(request)

    failed = reporter.only(BuildFailed)
    assert failed.instance_uuid == request.instance_uuid
    assert failed.host == "hv-test"
    assert failed.message == "libvirt said no"
    assert "DriverError" in failed.details
    assert failed.reschedulable is True
    # The fake leaves a defined domain and a disk behind when spawn fails; nothing of them may remain.
    assert request.instance_uuid not in driver.domains
    assert not config.instance_dir(request.instance_uuid).exists()
    assert not any(isinstance(m, InstanceBuilt) for m in reporter.sent)


def test_an_unexpected_error_is_reported_readably(manager, driver, reporter):
    driver.fail_spawn = OSError(28, "No space left on device")

    manager.build_and_run_instance(make_request())

    assert reporter.only(BuildFailed).message == "OSError: [Errno 28] No space left on device"


def test_an_image_that_cannot_be_had_fails_the_build_without_spawning(manager, driver, reporter, images):
    images.error = ImageError("image img-1 has sha256 0000, expected aaaa", reschedulable=False)

    manager.build_and_run_instance(make_request())

    failed = reporter.only(BuildFailed)
    assert "sha256" in failed.message
    assert failed.reschedulable is False
    assert not [call for call in driver.calls if call[0] == "spawn"]


def test_a_request_no_host_can_satisfy_is_not_rescheduled(manager, driver, reporter):
    driver.fail_spawn = DriverError("flavor disk too small", reschedulable=False)

    manager.build_and_run_instance(make_request())

    assert reporter.only(BuildFailed).reschedulable is False


def test_an_invalid_uuid_is_refused_without_touching_the_hypervisor(manager, driver, reporter, images):
    manager.build_and_run_instance(make_request(instance_uuid="../../etc"))

    failed = reporter.only(BuildFailed)
    assert "not a valid instance uuid" in failed.message
    assert failed.reschedulable is False
    assert driver.calls == []
    assert images.fetched == []


# --- actions ---------------------------------------------------------------------------------------


def test_stop_and_start_report_power_state_and_console(manager, driver, reporter):
    request = make_request()
    manager.build_and_run_instance(request)

    manager.stop_instance(ref_for(request, request_id="req-stop"))
    manager.start_instance(ref_for(request, request_id="req-start"))

    stopped, started = reporter.sent[1:]
    assert (stopped.action, stopped.request_id, stopped.error) == ("stop", "req-stop", "")
    assert stopped.power_state == rpc.SHUTDOWN
    assert (stopped.vnc_host, stopped.vnc_port) == (None, None)
    assert (started.action, started.power_state, started.error) == ("start", rpc.RUNNING, "")
    assert started.vnc_host == "192.0.2.5"
    assert started.vnc_port is not None


def test_a_soft_reboot_falls_back_to_hard_when_the_guest_ignores_it(manager, driver, reporter):
    request = make_request()
    manager.build_and_run_instance(request)
    driver.ignore_acpi = True

    manager.reboot_instance(ref_for(request, reboot_type="SOFT"))
    manager.reboot_instance(ref_for(request, reboot_type="HARD"))

    soft, hard = reporter.sent[1:]
    assert soft.action == hard.action == "reboot"
    assert soft.power_state == hard.power_state == rpc.RUNNING
    assert ("reboot_forced", request.instance_uuid) in driver.events
    assert ("reboot_soft", request.instance_uuid) in driver.calls
    assert ("reboot_hard", request.instance_uuid) in driver.calls


def test_an_action_on_an_unknown_domain_reports_an_error(manager, reporter):
    missing = str(uuid.uuid4())

    manager.start_instance(InstanceRef(instance_uuid=missing, domain_name="gone"))

    result = reporter.only(ActionResult)
    assert result.action == "start"
    assert "has no domain" in result.error
    assert result.power_state == rpc.NOSTATE


def test_terminate_removes_everything_and_is_idempotent(manager, driver, reporter, config):
    request = make_request()
    manager.build_and_run_instance(request)

    manager.terminate_instance(ref_for(request))
    manager.terminate_instance(ref_for(request))

    first, second = reporter.sent[1:]
    for result in (first, second):
        assert (result.action, result.error, result.power_state) == ("terminate", "", rpc.NOSTATE)
    assert request.instance_uuid not in driver.domains
    assert not config.instance_dir(request.instance_uuid).exists()


def test_terminate_of_an_unknown_domain_succeeds(manager, reporter):
    manager.terminate_instance(InstanceRef(instance_uuid=str(uuid.uuid4()), domain_name="never-built"))

    assert reporter.only(ActionResult).error == ""


def test_terminate_waits_for_a_build_in_progress(config, reporter, images):
    spawning = threading.Event()
    release = threading.Event()

    class SlowDriver(FakeDriver):
        def spawn(self, request, base_image_path, **options):
            spawning.set()
            assert release.wait(5)
            return super().spawn(request, base_image_path)

    driver = SlowDriver(instances_dir=config.instances_dir)
    manager = ComputeManager(config, driver, reporter, images=images)
    request = make_request()

    build = threading.Thread(target=manager.build_and_run_instance, args=(request,))
    build.start()
    assert spawning.wait(5)
    terminate = threading.Thread(target=manager.terminate_instance, args=(ref_for(request),))
    terminate.start()
    terminate.join(0.2)
    assert terminate.is_alive(), "terminate ran while the build was still spawning"
    release.set()
    build.join(5)
    terminate.join(5)

    assert [type(m) for m in reporter.sent] == [InstanceBuilt, ActionResult]
    assert request.instance_uuid not in driver.domains
    assert manager._locks == {}


# --- heartbeat -------------------------------------------------------------------------------------


def test_heartbeat_carries_resources_and_every_domain(manager, driver, reporter):
    running, stopped = make_request(), make_request()
    manager.build_and_run_instance(running)
    manager.build_and_run_instance(stopped)
    driver.power_off(ref_for(stopped))
    driver.add_foreign_domain("handmade-vm")

    beat = manager.heartbeat()

    assert reporter.sent[-1] is beat
    assert isinstance(beat, Heartbeat)
    assert beat.host == "hv-test"
    assert (beat.vcpus, beat.memory_mb, beat.disk_gb) == (8, 16384, 200)
    assert (beat.hypervisor_type, beat.cpu_arch) == ("FAKE", "x86_64")
    assert {d.instance_uuid: d.power_state for d in beat.domains} == {
        running.instance_uuid: rpc.RUNNING,
        stopped.instance_uuid: rpc.SHUTDOWN,
    }
    assert beat.unknown_domains == ["handmade-vm"]
    assert Heartbeat.from_dict(beat.to_dict()) == beat


def test_no_heartbeat_when_the_hypervisor_cannot_be_read(manager, driver, reporter):
    def broken():
        raise DriverError("cannot connect to libvirt")

    driver.host_resources = broken

    assert manager.heartbeat() is None
    assert reporter.sent == []


def test_the_default_reporter_sends_through_rpc(config, driver):
    manager = ComputeManager(config, driver)

    assert manager.reporter is rpc
    assert manager.images.directory == config.images_dir


def test_fake_resources_are_configurable(config):
    resources = HostResources(
        vcpus=2, memory_mb=1024, disk_gb=10, hypervisor_type="FAKE", hypervisor_version=1, cpu_arch="aarch64"
    )
    reporter = RecordingReporter()
    manager = ComputeManager(config, FakeDriver(resources=resources), reporter, images=StubImages(None))

    assert manager.heartbeat().cpu_arch == "aarch64"


# --- pause, suspend, rebuild, snapshot, console output ----------------------------------------------


def built(manager, reporter, **overrides):
    request = make_request(**overrides)
    manager.build_and_run_instance(request)
    reporter.sent.clear()
    return request


@pytest.mark.parametrize(
    ("action", "power_state", "has_console"),
    [("pause", rpc.PAUSED, True), ("suspend", rpc.SUSPENDED, False)],
)
def test_pause_and_suspend_report_the_new_power_state(manager, reporter, action, power_state, has_console):
    request = built(manager, reporter)

    getattr(manager, f"{action}_instance")(ref_for(request, request_id="req-2"))

    result = reporter.only(ActionResult)
    assert (result.action, result.error, result.power_state) == (action, "", power_state)
    assert result.request_id == "req-2"
    assert (result.vnc_port is not None) == has_console


def test_resume_gives_the_guest_a_new_console(manager, reporter, driver):
    request = built(manager, reporter)
    before = driver.vnc_address(ref_for(request))[1]
    manager.suspend_instance(ref_for(request))

    manager.resume_instance(ref_for(request))

    result = reporter.sent[-1]
    assert (result.action, result.power_state, result.error) == ("resume", rpc.RUNNING, "")
    assert result.vnc_port not in (None, before)


def test_an_action_the_guest_cannot_take_is_reported_as_failed(manager, reporter, driver):
    request = built(manager, reporter)
    manager.stop_instance(ref_for(request))
    reporter.sent.clear()

    manager.pause_instance(ref_for(request))

    result = reporter.only(ActionResult)
    assert result.action == "pause"
    assert "not running" in result.error
    assert result.power_state == rpc.SHUTDOWN


def test_rebuild_makes_a_new_disk_from_the_image_and_keeps_the_domain(manager, reporter, driver, images):
    request = built(manager, reporter)
    old_disk = manager.config.instance_dir(request.instance_uuid) / "disk"
    old_disk.write_bytes(b"what the guest wrote")
    new_image = ImageSpec(id="img-2", url="http://images/img-2?sig=s", sha256="b" * 64, size=4)
    rebuild = rpc.RebuildRequest(build=make_request(instance_uuid=request.instance_uuid, image=new_image))

    manager.rebuild_instance(rebuild)

    result = reporter.only(ActionResult)
    assert (result.action, result.error, result.power_state) == ("rebuild", "", rpc.RUNNING)
    assert result.addresses == [{"addr": "10.0.2.15", "version": 4, "mac": "52:54:00:00:00:01", "network": "user"}]
    assert images.fetched[-1] == "img-2"
    assert old_disk.read_bytes() == b""  # a fresh disk
    calls = [c for c, u in driver.calls if u == request.instance_uuid]
    assert calls[-2:] == ["destroy", "spawn"]
    assert driver.domains[request.instance_uuid].boots == 1


def test_rebuild_of_a_stopped_server_leaves_it_stopped(manager, reporter, driver):
    request = built(manager, reporter)
    manager.stop_instance(ref_for(request))
    reporter.sent.clear()

    manager.rebuild_instance(rpc.RebuildRequest(build=request, power_on=False))

    result = reporter.only(ActionResult)
    assert (result.error, result.power_state, result.vnc_port) == ("", rpc.SHUTDOWN, None)


def test_rebuild_of_a_volume_backed_server_writes_the_image_over_its_root_volume(manager, reporter, driver, images):
    """Compute API 2.93: the build carries no image of its own; the root volume's connection carries it."""
    image = ImageSpec(id="img-2", url="http://images/img-2?sig=s", sha256="b" * 64, size=4)
    root = rpc.VolumeConnection(volume_id="vol-1", attachment_id="att-1", device="/dev/vda", boot_index=0)
    request = built(manager, reporter, image=None, block_devices=[root])
    assert driver.domains[request.instance_uuid].root_volume

    rebuild = make_request(
        instance_uuid=request.instance_uuid,
        image=None,
        block_devices=[dataclasses.replace(root, image=image)],
    )
    manager.rebuild_instance(rpc.RebuildRequest(build=rebuild))

    result = reporter.only(ActionResult)
    assert (result.action, result.error, result.power_state) == ("rebuild", "", rpc.RUNNING)
    assert images.fetched[-1] == "img-2"
    calls = [c for c, u in driver.calls if u == request.instance_uuid]
    assert calls[-2:] == ["destroy", "spawn"]


def test_rebuild_whose_image_cannot_be_fetched_leaves_the_old_disk(manager, reporter, driver, images):
    request = built(manager, reporter)
    images.error = ImageError("download of image img-1 failed: HTTP 404")

    manager.rebuild_instance(rpc.RebuildRequest(build=request))

    result = reporter.only(ActionResult)
    assert "HTTP 404" in result.error
    assert request.instance_uuid in driver.domains  # nothing was removed
    assert result.power_state == rpc.RUNNING


def test_rebuild_that_fails_to_spawn_removes_what_it_made(manager, reporter, driver):
    request = built(manager, reporter)
    driver.fail_spawn = DriverError("no room for the disk")

    manager.rebuild_instance(rpc.RebuildRequest(build=request))

    result = reporter.only(ActionResult)
    assert result.error == "no room for the disk"
    assert request.instance_uuid not in driver.domains
    assert not manager.config.instance_dir(request.instance_uuid).exists()


class StubUploads:
    def __init__(self):
        self.received = []
        self.error = None
        self.inspect = None
        self.inspected = []

    def upload(self, path, url):
        if self.error is not None:
            raise self.error
        if self.inspect is not None:
            self.inspected.append(self.inspect(path))
        self.received.append((path.read_bytes(), url))


@pytest.fixture
def uploads():
    return StubUploads()


def snapshot_request(request, image_id="img-snap"):
    return rpc.SnapshotRequest(
        instance_uuid=request.instance_uuid,
        domain_name=request.domain_name,
        image_id=image_id,
        upload_url="http://api/internal/images/img-snap/upload?sig=secret",
        request_id="req-snap",
    )


def test_snapshot_copies_the_disk_uploads_it_and_removes_the_copy(config, driver, reporter, images, uploads):
    manager = ComputeManager(config, driver, reporter, images=images, uploads=uploads)
    request = built(manager, reporter)
    (config.instance_dir(request.instance_uuid) / "disk").write_bytes(b"disk contents")

    manager.snapshot_instance(snapshot_request(request))

    result = reporter.only(ActionResult)
    assert (result.action, result.error, result.image_id) == ("snapshot", "", "img-snap")
    assert result.power_state == rpc.RUNNING
    assert uploads.received == [(b"disk contents", "http://api/internal/images/img-snap/upload?sig=secret")]
    assert ("paused_for_snapshot", request.instance_uuid) in driver.events
    assert list((config.state_dir / "snapshots").iterdir()) == []


@pytest.mark.usefixtures("loose_umask")
def test_the_state_dir_and_the_snapshots_in_it_are_private(config, driver, reporter, images, uploads):
    config.state_dir.mkdir(mode=0o755)  # as the worker makes it before the manager exists
    manager = ComputeManager(config, driver, reporter, images=images, uploads=uploads)
    assert mode_of(config.state_dir) == 0o700
    request = built(manager, reporter)
    uploads.inspect = lambda path: (mode_of(path.parent), mode_of(path))

    manager.snapshot_instance(snapshot_request(request))

    assert uploads.inspected == [(0o700, 0o600)]


def test_a_failed_upload_is_reported_with_its_image(config, driver, reporter, images, uploads):
    manager = ComputeManager(config, driver, reporter, images=images, uploads=uploads)
    request = built(manager, reporter)
    uploads.error = ImageError("upload to http://api/internal/images/img-snap/upload failed: HTTP 409")

    manager.snapshot_instance(snapshot_request(request))

    result = reporter.only(ActionResult)
    assert result.image_id == "img-snap"
    assert "HTTP 409" in result.error and "secret" not in result.error + result.details
    assert list((config.state_dir / "snapshots").iterdir()) == []


def console_request(request, length=None):
    return rpc.ConsoleOutputRequest(
        instance_uuid=request.instance_uuid, domain_name=request.domain_name, reply_to="reply.x", length=length
    )


@pytest.mark.parametrize(
    ("length", "expected"),
    # As Nova counts them: the empty piece after the last newline is the last "line".
    [(None, "one\ntwo\nthree\n"), (3, "two\nthree\n"), (2, "three\n"), (1, ""), (0, ""), (9, "one\ntwo\nthree\n")],
)
def test_console_output_answers_the_reply_queue_with_the_last_lines(manager, reporter, driver, length, expected):
    request = built(manager, reporter)
    driver.write_console(request.instance_uuid, b"one\ntwo\nthree\n")

    manager.get_console_output(console_request(request, length))

    ((reply_to, result),) = reporter.sent
    assert reply_to == "reply.x"
    assert (result.output, result.error, result.host) == (expected, "", "hv-test")


def test_the_workers_fake_guests_print_a_line_when_they_boot(config, reporter, images):
    """A simulated server's console output is not empty once it booted (Tempest waits for that), and grows
    with each boot; one built without being started printed nothing."""
    driver = load_driver(config)
    manager = ComputeManager(config, driver, reporter, images=images)
    running = built(manager, reporter)
    stopped = built(manager, reporter, instance_uuid=str(uuid.uuid4()), domain_name="instance-2", power_on=False)

    manager.get_console_output(console_request(running))
    manager.get_console_output(console_request(stopped))

    assert reporter.sent[0][1].output.splitlines() == [
        "fake driver: boot 1 of instance-1 on a simulated host",
        "instance-1: simulated guest running",
        "instance-1 login: ",
    ]
    assert reporter.sent[1][1].output == ""
    driver.reboot(ref_for(running), hard=True)
    manager.get_console_output(console_request(running, length=4))
    assert reporter.sent[2][1].output.split("\n")[0] == "fake driver: boot 2 of instance-1 on a simulated host"


def test_fake_diagnostics_name_a_driver_the_compute_api_knows(manager, reporter, driver):
    request = built(manager, reporter)
    figures = driver.diagnostics(ref_for(request))
    assert figures["driver"] in ("libvirt", "xenapi", "vmwareapi", "ironic", "hyperv")


def test_console_output_is_decoded_leniently(manager, reporter, driver):
    request = built(manager, reporter)
    driver.write_console(request.instance_uuid, b"caf\xc3\xa9 \xff\n")

    manager.get_console_output(console_request(request))

    assert reporter.sent[0][1].output == "café \ufffd\n"


def test_console_output_of_an_unknown_instance_answers_with_the_error(manager, reporter):
    manager.get_console_output(console_request(make_request()))

    ((_, result),) = reporter.sent
    assert "has no domain" in result.error and result.output == ""


def diagnostics_request(request):
    return rpc.DiagnosticsRequest(instance_uuid=request.instance_uuid, domain_name=request.domain_name, reply_to="r.d")


def test_diagnostics_of_a_running_guest_answer_the_reply_queue(manager, reporter, driver):
    request = built(manager, reporter)
    reporter.sent.clear()

    manager.get_diagnostics(diagnostics_request(request))

    ((reply_to, result),) = reporter.sent
    assert reply_to == "r.d"
    assert (result.host, result.error, result.not_running, result.state) == ("hv-test", "", False, "running")
    assert result.cpu_details[0]["time"] > 0 and result.memory_details["maximum"] == 512
    assert result.num_nics == len(result.nic_details) == len(request.nics)
    assert result.legacy["cpu0_time"] == result.cpu_details[0]["time"]


def test_diagnostics_of_a_stopped_or_unknown_guest_say_it_is_not_running(manager, reporter, driver):
    request = built(manager, reporter)
    manager.stop_instance(ref_for(request))
    reporter.sent.clear()

    manager.get_diagnostics(diagnostics_request(request))
    other = rpc.DiagnosticsRequest(instance_uuid=str(uuid.uuid4()), domain_name="instance-x", reply_to="r.d")
    manager.get_diagnostics(other)

    stopped, unknown = (result for _reply_to, result in reporter.sent)
    assert (stopped.not_running, stopped.state, stopped.error) == (True, "shutdown", "power state shutdown")
    assert unknown.not_running and unknown.cpu_details == []
