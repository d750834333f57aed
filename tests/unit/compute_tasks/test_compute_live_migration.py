"""The host's side of live migration, with the fake driver: two hosts, one guest moving between them."""

import threading
import time
from pathlib import Path

import pytest

from compute_tasks import rpc
from compute_tasks.drivers.base import LIVE_MIGRATION_MARKER, DriverError
from compute_tasks.manager import peer_instances_dir
from compute_tasks.rpc import ActionResult, InstanceRef, LiveMigrateRequest, MigrationProgress, MigrationRef
from tests.unit.compute_tasks.test_compute_host_moves import host
from tests.unit.compute_tasks.test_compute_manager import RecordingReporter, StubImages, StubUploads, make_request

pytestmark = pytest.mark.unit

MIGRATION = 41


class ProgressReporter(RecordingReporter):
    def migration_progress(self, progress):
        self.sent.append(progress)

    def results(self, action=None):
        return [m for m in self.sent if isinstance(m, ActionResult) and action in (None, m.action)]


@pytest.fixture
def images(tmp_path):
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"base")
    return StubImages(base)


@pytest.fixture
def pair(tmp_path, images):
    source, destination = (host(tmp_path, name, images, StubUploads()) for name in ("hv-a", "hv-b"))
    for manager in (source, destination):
        manager.reporter = ProgressReporter()
    source.driver.peers[destination.migrate_uri] = destination.driver
    return source, destination


def built(manager):
    request = make_request()
    manager.build_and_run_instance(request)
    manager.reporter.sent.clear()
    return request


def prepare(destination, request, *, block=True, migration_id=MIGRATION):
    destination.prepare_live_migration(
        rpc.PrepareLiveMigrationRequest(build=request, migration_id=migration_id, block_migration=block)
    )
    (result,) = destination.reporter.results("prepare_live_migration")
    destination.reporter.sent.clear()
    return result


def migrate(source, destination, request, *, block=True):
    source.live_migrate(
        LiveMigrateRequest(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            migration_id=MIGRATION,
            dest_host=destination.host,
            dest_uri=destination.migrate_uri,
            dest_vnc_listen=destination.config.vnc_listen,
            block_migration=block,
            request_id="req-live",
        )
    )


def ref(request):
    return MigrationRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name, migration_id=MIGRATION)


def test_a_block_migration_moves_the_running_guest(pair):
    source, destination = pair
    request = built(source)

    prepared = prepare(destination, request)
    assert prepared.error == ""
    assert prepared.migrate_uri == f"qemu+tcp://{destination.config.migration_address}/system"
    assert prepared.vnc_host == destination.config.vnc_listen
    assert prepared.migration_id == MIGRATION and prepared.power_state == rpc.NOSTATE
    dest_dir = destination.config.instance_dir(request.instance_uuid)
    assert (dest_dir / "disk").is_file() and (dest_dir / LIVE_MIGRATION_MARKER).read_text() == str(MIGRATION)

    migrate(source, destination, request)
    (done,) = source.reporter.results()
    assert (done.action, done.error, done.migration_id, done.power_state) == ("live_migrate", "", MIGRATION, 0)
    assert not source.config.instance_dir(request.instance_uuid).exists()
    assert request.instance_uuid not in source.driver.domains
    assert [m for m in source.reporter.sent if isinstance(m, MigrationProgress)][-1].memory_processed_bytes == 1000

    destination.post_live_migration(ref(request))
    (final, post) = destination.reporter.sent
    # The destination reports the final figures it keeps, before the guest's arrival.
    assert (final.host, final.migration_id, final.memory_total_bytes, final.memory_processed_bytes) == (
        destination.host,
        MIGRATION,
        1000,
        1000,
    )
    assert (post.action, post.error, post.power_state) == ("post_live_migration", "", rpc.RUNNING)
    assert post.vnc_port is not None and post.addresses
    assert destination.driver.domains[request.instance_uuid].boots == 1  # it was never booted again
    assert not (dest_dir / LIVE_MIGRATION_MARKER).exists()


def test_a_paused_guest_moves_and_stays_paused(pair):
    source, destination = pair
    request = built(source)
    source.driver.pause(InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
    prepare(destination, request)

    migrate(source, destination, request)

    (done,) = source.reporter.results()
    assert done.error == ""
    assert destination.driver.domains[request.instance_uuid].power_state == rpc.PAUSED


def test_a_redelivered_migration_of_a_guest_gone_already_is_reported_done(pair):
    source, destination = pair
    request = built(source)
    prepare(destination, request)
    migrate(source, destination, request)
    migrate(source, destination, request)
    assert [(r.action, r.error) for r in source.reporter.results()] == [("live_migrate", "")] * 2


def test_prepare_is_idempotent_and_never_takes_a_directory_it_did_not_make(pair):
    source, destination = pair
    request = built(source)
    prepare(destination, request)
    assert prepare(destination, request).error == ""
    # Another migration's prepare finds the directory: it may be the running guest's (shared), untouched.
    other = prepare(destination, request, migration_id=MIGRATION + 1)
    assert "has a directory on this host already" in other.error
    assert (destination.config.instance_dir(request.instance_uuid) / "disk").is_file()
    # Without block migration the directory must be there: here the source's is not on the destination.
    fresh = built(source)
    assert "is not on this host" in prepare(destination, fresh, block=False).error


def test_a_failed_prepare_removes_what_it_made(pair, images):
    source, destination = pair
    request = built(source)
    images.error = DriverError("download failed")
    result = prepare(destination, request)
    assert result.error and not destination.config.instance_dir(request.instance_uuid).exists()
    images.error = None
    destination.driver.fail_spawn = DriverError("no space left")
    result = prepare(destination, request)
    assert result.error == "no space left"
    assert not destination.config.instance_dir(request.instance_uuid).exists()


def test_a_failed_migration_leaves_the_guest_running_on_the_source_and_rollback_cleans_up(pair):
    source, destination = pair
    request = built(source)
    prepare(destination, request)
    source.driver.fail_live_migration = DriverError("QEMU unexpectedly closed the monitor")
    migrate(source, destination, request)
    (failed,) = source.reporter.results()
    assert failed.error == "QEMU unexpectedly closed the monitor"
    assert failed.power_state == rpc.RUNNING and failed.migration_id == MIGRATION
    assert source.config.instance_dir(request.instance_uuid).is_dir()

    destination.rollback_live_migration(ref(request))
    destination.rollback_live_migration(ref(request))  # again: nothing left, still done
    assert [(r.action, r.error) for r in destination.reporter.results()] == [("rollback_live_migration", "")] * 2
    assert not destination.config.instance_dir(request.instance_uuid).exists()


def test_rollback_never_removes_a_guest_that_runs_on_the_destination(pair):
    source, destination = pair
    request = built(source)
    prepare(destination, request)
    migrate(source, destination, request)
    destination.rollback_live_migration(ref(request))
    (result,) = destination.reporter.results()
    assert "runs on this host" in result.error and result.power_state == rpc.RUNNING
    assert request.instance_uuid in destination.driver.domains
    assert (destination.config.instance_dir(request.instance_uuid) / "disk").is_file()


def running_migration(source, destination, request):
    source.driver.migration_gate = threading.Event()
    thread = threading.Thread(target=migrate, args=(source, destination, request))
    thread.start()
    deadline = time.monotonic() + 5
    while request.instance_uuid not in source.driver.migration_jobs:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return thread


def test_abort_stops_the_running_migration_without_waiting_for_the_instance_lock(pair):
    source, destination = pair
    request = built(source)
    prepare(destination, request)
    thread = running_migration(source, destination, request)
    time.sleep(1.5)
    source.abort_live_migration(ref(request))  # the migration holds the instance lock meanwhile
    thread.join(5)
    assert not thread.is_alive()
    (failed,) = source.reporter.results()
    assert failed.action == "live_migrate" and "cancelled" in failed.error and failed.power_state == rpc.RUNNING
    progress = [m for m in source.reporter.sent if isinstance(m, MigrationProgress)]
    assert progress and {p.migration_id for p in progress} == {MIGRATION} and {p.host for p in progress} == {"hv-a"}
    assert request.instance_uuid in source.driver.domains and request.instance_uuid not in destination.driver.domains

    source.reporter.sent.clear()
    source.abort_live_migration(ref(request))  # nothing runs now
    (nothing,) = source.reporter.results()
    assert (nothing.action, nothing.error) == ("abort_live_migration", "no migration is running")


def test_force_complete_finishes_the_migration_and_reports_nothing_itself(pair):
    source, destination = pair
    request = built(source)
    prepare(destination, request)
    thread = running_migration(source, destination, request)
    source.force_complete_live_migration(ref(request))
    thread.join(5)
    assert [(r.action, r.error) for r in source.reporter.results()] == [("live_migrate", "")]
    assert request.instance_uuid in destination.driver.domains
    source.force_complete_live_migration(ref(request))  # nothing runs: only logged
    assert len(source.reporter.results()) == 1


def test_the_destination_directory_is_named_after_the_destination_host():
    assert peer_instances_dir(Path("/srv/compute/hv-a/instances"), "hv-a", "hv-b") == Path(
        "/srv/compute/hv-b/instances"
    )
    assert peer_instances_dir(Path("/var/lib/compute/instances"), "hv-a", "hv-b") == Path("/var/lib/compute/instances")
