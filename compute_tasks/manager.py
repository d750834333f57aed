"""What a compute host does for each task: drive the hypervisor, then report the outcome.

Every task is delivered at least once, so every method first looks at what already exists: a build
whose domain is running is reported as built again, a terminate of an absent domain as done. Each
method reports exactly once and never raises for a failure of the work itself: the report carries it.
Only a failure to send the report escapes; the control plane's task lease repairs a report that never
arrived.

Work on one instance is serialised by a per-instance lock: a terminate that arrives while the build
is still running waits for it instead of racing it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from compute_tasks import host_uptime, progress, rpc
from compute_tasks.config import HostConfig, canonical_uuid
from compute_tasks.dataplane import Dataplane, load_dataplane
from compute_tasks.drivers.base import (
    ComputeDriver,
    DomainNotFound,
    DriverError,
    HostUsage,
    InvalidRequest,
    nic_addresses,
)
from compute_tasks.guest_graphs import GuestGraphs
from compute_tasks.images import ImageCache, ImageError, ImageUploader
from compute_tasks.private_files import private_dir
from compute_tasks.rpc import (
    ActionResult,
    BuildFailed,
    BuildProgress,
    BuildRequest,
    CacheImagesRequest,
    ConsoleOutput,
    ConsoleOutputRequest,
    Diagnostics,
    DiagnosticsRequest,
    DomainState,
    FinishMigrationRequest,
    FinishRevertRequest,
    GraphsRequest,
    Heartbeat,
    HostNetworkPlan,
    ImageSpec,
    InstanceBuilt,
    InstanceGraphs,
    InstanceRef,
    InterfaceRequest,
    LiveMigrateRequest,
    MigrateDiskRequest,
    MigrationProgress,
    MigrationRef,
    NetworkStateApplied,
    PrepareLiveMigrationRequest,
    RebuildRequest,
    RescueRequest,
    ShelveRequest,
    SnapshotRequest,
    VolumeRequest,
    VolumeResult,
)
from compute_tasks.volume_connector import host_connector

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where results go. The ``compute_tasks.rpc`` module itself is one: it sends them to the conductor."""

    def instance_built(self, result: InstanceBuilt) -> None: ...

    def build_failed(self, result: BuildFailed) -> None: ...

    def action_done(self, result: ActionResult) -> None: ...

    def heartbeat(self, beat: Heartbeat) -> None: ...

    def reply_console_output(self, reply_to: str, result: ConsoleOutput) -> None: ...

    def reply_diagnostics(self, reply_to: str, result: Diagnostics) -> None: ...

    def reply_instance_graphs(self, reply_to: str, result: InstanceGraphs) -> None: ...

    def volume_done(self, result: VolumeResult) -> None: ...

    def migration_progress(self, progress: MigrationProgress) -> None: ...

    def build_progress(self, progress: BuildProgress) -> None: ...

    def network_state_applied(self, result: NetworkStateApplied) -> None: ...


class ImageSource(Protocol):
    def fetch(self, image: ImageSpec, on_progress: Callable[[int, int], None] | None = None) -> Path: ...


class ImageSink(Protocol):
    def upload(self, path: Path, url: str) -> None: ...


# How much of the serial log a host reads for os-getConsoleOutput; older output is not returned.
MAX_CONSOLE_BYTES = 100 * 1024


class ComputeManager:
    def __init__(
        self,
        config: HostConfig,
        driver: ComputeDriver,
        reporter: Reporter | None = None,
        images: ImageSource | None = None,
        uploads: ImageSink | None = None,
        dataplane: Dataplane | None = None,
    ) -> None:
        self.config = config
        self.driver = driver
        self.network: Dataplane = dataplane if dataplane is not None else load_dataplane(config)
        self.network.local_devices = self._port_devices
        self.network.announce = self._announce
        self.reporter: Reporter = reporter if reporter is not None else rpc  # type: ignore[assignment]
        self.images: ImageSource = images or ImageCache(config.images_dir, timeout=config.http_timeout)
        self.uploads: ImageSink = uploads or ImageUploader(timeout=config.http_timeout)
        self._locks: dict[str, _RefCountedLock] = {}
        self._locks_guard = threading.Lock()
        # Everything the host keeps lives below it: disks, config drives, cached images, snapshots, graphs.
        private_dir(config.state_dir)
        self.graphs = GuestGraphs(config.state_dir / "graphs")
        self._last_usage: HostUsage | None = None

    @property
    def host(self) -> str:
        return self.config.host

    # --- build -----------------------------------------------------------------------------------------

    def build_and_run_instance(self, request: BuildRequest) -> None:
        ref = InstanceRef(
            instance_uuid=request.instance_uuid,
            domain_name=request.domain_name,
            request_id=request.request_id,
        )
        try:
            canonical_uuid(request.instance_uuid)
        except ValueError as exc:
            # Nothing can have been made for it, so there is nothing to clean up.
            self._report_build_failure(request, ref, InvalidRequest(str(exc)), cleanup=False)
            return
        with self._instance_lock(request.instance_uuid):
            try:
                result = self._build(request, ref)
            except Exception as exc:
                self._report_build_failure(request, ref, exc)
                return
        self._plug_network(request.instance_uuid)
        self.reporter.instance_built(result)

    def _build(self, request: BuildRequest, ref: InstanceRef) -> InstanceBuilt:
        try:
            state = self.driver.power_state(ref)
        except DomainNotFound:
            state = None
        if state is not None:
            # A redelivered build whose domain already exists: finish it rather than make a second one.
            log.info(
                "instance %s already has a domain (power state %s); not building again",
                ref.instance_uuid,
                state,
            )
            if state != rpc.RUNNING and request.power_on:
                state = self.driver.power_on(ref)
            vnc_host, vnc_port = self.driver.vnc_address(ref)
            return self._built(request, state, vnc_host, vnc_port, nic_addresses(request.nics))

        started = time.monotonic()
        steps = progress.BuildSteps(self.reporter, request, self.host, quiet=self.config.build_quiet_seconds)
        try:
            steps.begin(rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING)
            fetch = functools.partial(self.images.fetch, on_progress=steps.downloaded)
            base_image = fetch(request.image) if request.image is not None else None
            # Images to write onto new boot volumes come through the same verified cache.
            volume_images = {d.volume_id: fetch(d.image) for d in request.block_devices if d.image}
            steps.begin(rpc.BUILD_STEP_SPAWNING)
            if request.block_devices:
                spawned = self.driver.spawn(request, base_image, volume_images=volume_images, power_on=request.power_on)
            else:
                spawned = self.driver.spawn(request, base_image, power_on=request.power_on)
        finally:
            steps.finish()
        log.info(
            "instance %s built as domain %r in %.1fs",
            ref.instance_uuid,
            request.domain_name,
            time.monotonic() - started,
        )
        return self._built(request, spawned.power_state, spawned.vnc_host, spawned.vnc_port, spawned.addresses)

    def _built(
        self,
        request: BuildRequest,
        power_state: int,
        vnc_host: str | None,
        vnc_port: int | None,
        addresses: list[dict[str, Any]],
    ) -> InstanceBuilt:
        return InstanceBuilt(
            instance_uuid=request.instance_uuid,
            host=self.host,
            request_id=request.request_id,
            power_state=power_state,
            vnc_host=vnc_host,
            vnc_port=vnc_port,
            addresses=addresses,
        )

    def _report_build_failure(
        self, request: BuildRequest, ref: InstanceRef, exc: Exception, *, cleanup: bool = True
    ) -> None:
        log.warning("build of instance %s failed: %s", request.instance_uuid, exc)
        details = "".join(traceback.format_exception(exc))
        if cleanup:
            try:
                self.driver.destroy(ref)
            except Exception as cleanup_exc:
                log.exception("cleaning up after the failed build of instance %s failed", request.instance_uuid)
                details += f"\nCleanup failed as well: {_readable(cleanup_exc)}"
        self.reporter.build_failed(
            BuildFailed(
                instance_uuid=request.instance_uuid,
                host=self.host,
                request_id=request.request_id,
                message=_readable(exc),
                details=details,
                reschedulable=getattr(exc, "reschedulable", True),
            )
        )

    # --- actions ---------------------------------------------------------------------------------------

    def start_instance(self, ref: InstanceRef) -> None:
        self._act("start", ref, lambda: self.driver.power_on(ref))

    def stop_instance(self, ref: InstanceRef) -> None:
        self._act("stop", ref, lambda: self.driver.power_off(ref))

    def reboot_instance(self, ref: InstanceRef) -> None:
        hard = ref.reboot_type.upper() == "HARD"
        self._act("reboot", ref, lambda: self.driver.reboot(ref, hard=hard))

    def terminate_instance(self, ref: InstanceRef) -> None:
        def terminate() -> int:
            self.driver.destroy(ref)
            return rpc.NOSTATE

        self._act("terminate", ref, terminate, with_console=False)

    def pause_instance(self, ref: InstanceRef) -> None:
        self._act("pause", ref, lambda: self.driver.pause(ref))

    def unpause_instance(self, ref: InstanceRef) -> None:
        self._act("unpause", ref, lambda: self.driver.unpause(ref))

    def suspend_instance(self, ref: InstanceRef) -> None:
        self._act("suspend", ref, lambda: self.driver.suspend(ref))

    def resume_instance(self, ref: InstanceRef) -> None:
        self._act("resume", ref, lambda: self.driver.resume(ref))

    # --- rebuild ---------------------------------------------------------------------------------------

    def rebuild_instance(self, request: RebuildRequest) -> None:
        """A fresh disk from the (possibly new) image under the same domain uuid, name, MAC and host.

        The image is fetched before anything is removed, so a download that fails leaves the server as
        it was. A rebuild that fails after that removes what it made; the server ends in ERROR and can
        be rebuilt again or deleted. A server booted from a volume has no disk here: the image comes with
        its root volume's connection and is written over the volume (compute API 2.93).
        """
        build = request.build
        ref = InstanceRef(instance_uuid=build.instance_uuid, domain_name=build.domain_name, request_id=build.request_id)
        with self._instance_lock(build.instance_uuid):
            try:
                base_image = self.images.fetch(build.image) if build.image is not None else None
                volume_images = {d.volume_id: self.images.fetch(d.image) for d in build.block_devices if d.image}
            except Exception as exc:
                result = self._failed("rebuild", ref, exc)
            else:
                try:
                    self.driver.destroy(ref)
                    options = {"volume_images": volume_images} if volume_images else {}
                    spawned = self.driver.spawn(build, base_image, power_on=request.power_on, **options)
                except Exception as exc:
                    result = self._failed("rebuild", ref, exc)
                    try:
                        self.driver.destroy(ref)
                    except Exception:
                        log.exception("cleaning up after the failed rebuild of instance %s failed", ref.instance_uuid)
                else:
                    rebuilt_from = build.image or next(d.image for d in build.block_devices if d.image)
                    log.info("instance %s rebuilt from image %s", ref.instance_uuid, rebuilt_from.id)
                    self._plug_network(ref.instance_uuid)
                    result = ActionResult(
                        instance_uuid=ref.instance_uuid,
                        host=self.host,
                        request_id=ref.request_id,
                        action="rebuild",
                        power_state=spawned.power_state,
                        vnc_host=spawned.vnc_host,
                        vnc_port=spawned.vnc_port,
                        addresses=spawned.addresses,
                    )
        self.reporter.action_done(result)

    # --- snapshot --------------------------------------------------------------------------------------

    def snapshot_instance(self, request: SnapshotRequest) -> None:
        """Copy the disk while holding the instance (a running guest is paused only for the copy), then
        upload the copy without holding it, so a delete need not wait for the upload."""
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        snapshots = self.config.state_dir / "snapshots"
        target = snapshots / f"{canonical_uuid(request.instance_uuid)}-{uuid.uuid4().hex}.{request.disk_format}"
        try:
            private_dir(snapshots)
            with self._instance_lock(request.instance_uuid):
                started = time.monotonic()
                power_state = self.driver.snapshot(ref, target, disk_format=request.disk_format)
                log.info(
                    "instance %s: disk copied for image %s in %.1fs (%d bytes)",
                    ref.instance_uuid,
                    request.image_id,
                    time.monotonic() - started,
                    target.stat().st_size,
                )
            self.uploads.upload(target, request.upload_url)
        except Exception as exc:
            result = self._failed("snapshot", ref, exc, image_id=request.image_id)
        else:
            result = ActionResult(
                instance_uuid=ref.instance_uuid,
                host=self.host,
                request_id=ref.request_id,
                action="snapshot",
                power_state=power_state,
                image_id=request.image_id,
            )
        finally:
            target.unlink(missing_ok=True)
        self.reporter.action_done(result)

    # --- resize and cold migration ----------------------------------------------------------------------
    #
    # The disk travels through the image API: the source uploads it as a snapshot is uploaded, the
    # destination downloads it as a build downloads its image (checksum verified). Hosts share nothing.
    # Volumes: stopping the guest on the source closes QEMU's connections to them (the host itself holds
    # no session; an NFS share stays mounted for the other guests on it); the destination plugs them in
    # from ``build.block_devices``. The source keeps a volume's iSCSI secret until the move is confirmed,
    # so that a revert opens the volumes again from the kept definition.

    def migrate_disk(self, request: MigrateDiskRequest) -> None:
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )

        def copy(target: Path) -> int:
            self.driver.migrate_disk(ref, target, disk_format=request.disk_format)
            return rpc.SHUTDOWN

        self._copy_and_upload(
            "migrate_disk",
            ref,
            copy,
            request.upload_url,
            request.disk_format,
            request.image_id,
            migration_id=request.migration_id,
        )

    def finish_migration(self, request: FinishMigrationRequest) -> None:
        build = request.build
        ref = InstanceRef(instance_uuid=build.instance_uuid, domain_name=build.domain_name, request_id=build.request_id)
        with self._instance_lock(build.instance_uuid):
            try:
                result = self._finish_migration(request, ref)
                self._plug_network(ref.instance_uuid)
            except Exception as exc:
                result = self._failed("finish_migration", ref, exc, migration_id=request.migration_id)
                try:
                    self.driver.revert_migration(ref, migration_id=request.migration_id)
                except Exception:
                    log.exception("cleaning up after the failed migration of instance %s failed", ref.instance_uuid)
        self.reporter.action_done(result)

    def _finish_migration(self, request: FinishMigrationRequest, ref: InstanceRef) -> ActionResult:
        build = request.build
        try:
            state = self.driver.power_state(ref)
        except DomainNotFound:
            state = None
        if state is not None:
            log.info(
                "instance %s already has a domain here; migration %s is done", ref.instance_uuid, request.migration_id
            )
            if request.power_on and state != rpc.RUNNING:
                state = self.driver.power_on(ref)
            vnc_host, vnc_port = self.driver.vnc_address(ref)
            addresses = nic_addresses(build.nics)
        else:
            if build.image is None:
                raise InvalidRequest(f"migration {request.migration_id} names no disk image to build from")
            disk = self.images.fetch(build.image)
            spawned = self.driver.finish_migration(
                build, disk, migration_id=request.migration_id, power_on=request.power_on
            )
            state, vnc_host, vnc_port, addresses = (
                spawned.power_state,
                spawned.vnc_host,
                spawned.vnc_port,
                spawned.addresses,
            )
            log.info("instance %s: migration %s finished here", ref.instance_uuid, request.migration_id)
        return ActionResult(
            instance_uuid=ref.instance_uuid,
            host=self.host,
            request_id=ref.request_id,
            action="finish_migration",
            power_state=state,
            vnc_host=vnc_host,
            vnc_port=vnc_port,
            addresses=addresses,
            migration_id=request.migration_id,
        )

    def confirm_migration(self, request: MigrationRef) -> None:
        ref = self._migration_ref(request)

        def confirm() -> int:
            self.driver.confirm_migration(ref, migration_id=request.migration_id)
            return self._power_state_or_nostate(ref)

        self._act("confirm_migration", ref, confirm, with_console=False, migration_id=request.migration_id)

    def revert_migration(self, request: MigrationRef) -> None:
        ref = self._migration_ref(request)

        def revert() -> int:
            self.driver.revert_migration(ref, migration_id=request.migration_id)
            return self._power_state_or_nostate(ref)

        self._act("revert_migration", ref, revert, with_console=False, migration_id=request.migration_id)

    def finish_revert_migration(self, request: FinishRevertRequest) -> None:
        ref = self._migration_ref(request)
        self._act(
            "finish_revert_migration",
            ref,
            lambda: self.driver.finish_revert_migration(
                ref, migration_id=request.migration_id, power_on=request.power_on
            ),
            migration_id=request.migration_id,
            with_addresses=True,
        )

    @staticmethod
    def _migration_ref(request: MigrationRef | FinishRevertRequest) -> InstanceRef:
        return InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )

    # --- live migration ---------------------------------------------------------------------------------
    #
    # The guest runs throughout: QEMU carries its memory (and, with block migration, its disk) from the
    # source's libvirtd to the destination's, peer to peer. ``live_migrate`` holds the instance's lock for
    # the whole migration; ``abort`` and ``force_complete`` act on the running job without it, and the
    # progress goes out from a thread of its own, so a slow broker delays neither.

    def prepare_live_migration(self, request: PrepareLiveMigrationRequest) -> None:
        build = request.build
        ref = InstanceRef(instance_uuid=build.instance_uuid, domain_name=build.domain_name, request_id=build.request_id)
        with self._instance_lock(build.instance_uuid):
            try:
                base_image = None
                if request.block_migration and build.image is not None:
                    base_image = self.images.fetch(build.image)
                self.driver.prepare_live_migration(
                    build, base_image, migration_id=request.migration_id, block_migration=request.block_migration
                )
            except Exception as exc:
                result = self._failed("prepare_live_migration", ref, exc, migration_id=request.migration_id)
            else:
                log.info(
                    "instance %s: ready for live migration %s (%s)",
                    ref.instance_uuid,
                    request.migration_id,
                    "block migration" if request.block_migration else "shared directory",
                )
                result = ActionResult(
                    instance_uuid=ref.instance_uuid,
                    host=self.host,
                    request_id=ref.request_id,
                    action="prepare_live_migration",
                    power_state=rpc.NOSTATE,
                    vnc_host=self.config.vnc_listen,
                    migration_id=request.migration_id,
                    migrate_uri=self.migrate_uri,
                    instances_dir=str(self.config.instances_dir),
                )
        self.reporter.action_done(result)

    @property
    def migrate_uri(self) -> str:
        """Where other hosts' libvirtds send a guest migrating here."""
        address = self.config.migration_address
        return f"qemu+tcp://[{address}]/system" if ":" in address else f"qemu+tcp://{address}/system"

    def live_migrate(self, request: LiveMigrateRequest) -> None:
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        sender = progress.MigrationProgressSender(self.reporter, request.migration_id, self.host)
        with self._instance_lock(request.instance_uuid):
            sender.start()
            try:
                self.driver.live_migrate(
                    ref,
                    dest_uri=request.dest_uri,
                    dest_instances_dir=Path(request.dest_instances_dir)
                    if request.dest_instances_dir
                    else peer_instances_dir(self.config.instances_dir, self.host, request.dest_host),
                    dest_vnc_listen=request.dest_vnc_listen,
                    block_migration=request.block_migration,
                    on_progress=sender.update,
                )
            except Exception as exc:
                result = self._failed("live_migrate", ref, exc, migration_id=request.migration_id)
            else:
                result = ActionResult(
                    instance_uuid=ref.instance_uuid,
                    host=self.host,
                    request_id=ref.request_id,
                    action="live_migrate",
                    power_state=rpc.NOSTATE,
                    migration_id=request.migration_id,
                )
            finally:
                sender.stop()
        self.reporter.action_done(result)

    def abort_live_migration(self, request: MigrationRef) -> None:
        """No instance lock: the live_migrate holding it is what this stops. Its report says "cancelled"."""
        ref = self._migration_ref(request)
        try:
            if self.driver.abort_live_migration(ref):
                log.info("instance %s: migration %s aborted", ref.instance_uuid, request.migration_id)
                return
            error: Exception = DriverError("no migration is running")
        except Exception as exc:
            error = exc
        self.reporter.action_done(self._failed("abort_live_migration", ref, error, migration_id=request.migration_id))

    def force_complete_live_migration(self, request: MigrationRef) -> None:
        """No instance lock, no report: the live_migrate's report follows."""
        ref = self._migration_ref(request)
        try:
            how = self.driver.force_complete_live_migration(ref)
        except Exception as exc:
            log.warning("instance %s: cannot force migration %s: %s", ref.instance_uuid, request.migration_id, exc)
        else:
            log.info("instance %s: migration %s forced (%s)", ref.instance_uuid, request.migration_id, how)

    def post_live_migration(self, request: MigrationRef) -> None:
        ref = self._migration_ref(request)
        self._report_final_figures(ref, request.migration_id)
        self._act(
            "post_live_migration",
            ref,
            lambda: self.driver.post_live_migration(ref, migration_id=request.migration_id),
            migration_id=request.migration_id,
            with_addresses=True,
        )

    def _report_final_figures(self, ref: InstanceRef, migration_id: int) -> None:
        """The migration's final figures, which this host keeps now: the source's last look at a short
        migration may have come before it had any."""
        try:
            stats = self.driver.completed_live_migration(ref)
        except Exception as exc:
            log.warning("instance %s: no final figures of migration %s: %s", ref.instance_uuid, migration_id, exc)
            return
        if stats is not None:
            progress.send_migration_progress(self.reporter, migration_id, self.host, stats)

    def rollback_live_migration(self, request: MigrationRef) -> None:
        ref = self._migration_ref(request)

        def rollback() -> int:
            self.driver.rollback_live_migration(ref, migration_id=request.migration_id)
            return rpc.NOSTATE

        self._act("rollback_live_migration", ref, rollback, with_console=False, migration_id=request.migration_id)

    # --- shelve ----------------------------------------------------------------------------------------

    def shelve_instance(self, request: ShelveRequest) -> None:
        """Power off, upload the disk as the shelved image; with ``offload``, then remove the guest.

        A redelivered offloading shelve that finds no domain is done: the guest is removed only after
        its image was uploaded.
        """
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        if request.offload:
            with self._instance_lock(ref.instance_uuid):
                try:
                    self.driver.power_state(ref)
                except DomainNotFound:
                    log.info("instance %s is shelved and offloaded already", ref.instance_uuid)
                    self.reporter.action_done(self._shelved(ref, request.image_id, rpc.NOSTATE, offloaded=True))
                    return
                except Exception:  # noqa: S110 - the copy below meets it again and reports it
                    pass

        def copy(target: Path) -> int:
            self.driver.power_off(ref)
            return self.driver.snapshot(ref, target, disk_format="qcow2")

        def offload() -> int:
            self.driver.destroy(ref)
            return rpc.NOSTATE

        self._copy_and_upload(
            "shelve",
            ref,
            copy,
            request.upload_url,
            "qcow2",
            request.image_id,
            then=offload if request.offload else None,
        )

    def shelve_offload_instance(self, ref: InstanceRef) -> None:
        def offload() -> int:
            self.driver.destroy(ref)
            return rpc.NOSTATE

        self._act("shelve_offload", ref, offload, with_console=False, offloaded=True)

    def _shelved(self, ref: InstanceRef, image_id: str, power_state: int, *, offloaded: bool) -> ActionResult:
        return ActionResult(
            instance_uuid=ref.instance_uuid,
            host=self.host,
            request_id=ref.request_id,
            action="shelve",
            power_state=power_state,
            image_id=image_id,
            offloaded=offloaded,
        )

    def _copy_and_upload(
        self,
        action: str,
        ref: InstanceRef,
        copy: Callable[[Path], int],
        upload_url: str,
        disk_format: str,
        image_id: str,
        *,
        migration_id: int | None = None,
        then: Callable[[], int] | None = None,
    ) -> None:
        """``copy(target)`` under the instance's lock, the upload of ``target`` without it (a delete need
        not wait for an upload), then ``then()`` under the lock again; one report, the copy removed."""
        snapshots = self.config.state_dir / "snapshots"
        target = snapshots / f"{canonical_uuid(ref.instance_uuid)}-{uuid.uuid4().hex}.{disk_format}"
        try:
            private_dir(snapshots)
            with self._instance_lock(ref.instance_uuid):
                started = time.monotonic()
                power_state = copy(target)
                log.info(
                    "instance %s: disk copied for image %s in %.1fs (%d bytes)",
                    ref.instance_uuid,
                    image_id,
                    time.monotonic() - started,
                    target.stat().st_size,
                )
            self.uploads.upload(target, upload_url)
            if then is not None:
                with self._instance_lock(ref.instance_uuid):
                    power_state = then()
        except Exception as exc:
            result = self._failed(action, ref, exc, image_id=image_id, migration_id=migration_id)
        else:
            result = ActionResult(
                instance_uuid=ref.instance_uuid,
                host=self.host,
                request_id=ref.request_id,
                action=action,
                power_state=power_state,
                image_id=image_id,
                migration_id=migration_id,
                offloaded=then is not None,
            )
        finally:
            target.unlink(missing_ok=True)
        self.reporter.action_done(result)

    # --- rescue ----------------------------------------------------------------------------------------

    def rescue_instance(self, request: RescueRequest) -> None:
        """The rescue image is fetched before the guest is touched: a download that fails leaves it as
        it was."""
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )

        def rescue() -> int:
            image_path = self.images.fetch(request.rescue_image)
            return self.driver.rescue(ref, request.rescue_image, image_path)

        self._act("rescue", ref, rescue)

    def unrescue_instance(self, ref: InstanceRef) -> None:
        self._act("unrescue", ref, lambda: self.driver.unrescue(ref))

    # --- image pre-caching -----------------------------------------------------------------------------

    def cache_images(self, request: CacheImagesRequest) -> dict[str, str]:
        """Fetch each image into the cache unless it is there already (verified); the outcome per image,
        ``cached`` or ``error``, is logged and returned. One image failing does not stop the others; the
        cache's own lock keeps a build of the same image from downloading it twice."""
        outcome: dict[str, str] = {}
        for image in request.images:
            try:
                self.images.fetch(image)
                outcome[image.id] = "cached"
            except Exception as exc:
                log.warning("pre-caching image %s failed: %s", image.id, exc)
                outcome[image.id] = "error"
        log.info("image pre-cache request %s: %s", request.request_id, outcome)
        return outcome

    # --- console output --------------------------------------------------------------------------------

    def get_console_output(self, request: ConsoleOutputRequest) -> None:
        """Answer with the tail of the serial log. It only reads, so it takes no instance lock: a
        build or snapshot in progress does not hold it up."""
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        try:
            text = self.driver.console_log(ref, MAX_CONSOLE_BYTES).decode("utf-8", errors="replace")
            if request.length is not None and request.length >= 0:
                # Nova's tail: the last ``length`` pieces between newlines, so a log that ends with one
                # counts the empty piece after it (clients such as Tempest count lines so).
                text = "\n".join(text.split("\n")[-request.length :]) if request.length else ""
            result = ConsoleOutput(instance_uuid=request.instance_uuid, host=self.host, output=text)
        except Exception as exc:
            log.warning("reading the console of instance %s failed: %s", request.instance_uuid, exc)
            result = ConsoleOutput(instance_uuid=request.instance_uuid, host=self.host, error=_readable(exc))
        self.reporter.reply_console_output(request.reply_to, result)

    # --- diagnostics -----------------------------------------------------------------------------------

    def get_diagnostics(self, request: DiagnosticsRequest) -> None:
        """Answer with the hypervisor's figures for a running guest. Like the console log it only reads
        and takes no instance lock. A guest that is not running (or not here) gets ``not_running``, as
        Nova's manager refuses anything but a running guest."""
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        uuid_, host = request.instance_uuid, self.host
        try:
            state = self.driver.power_state(ref)
            if state != rpc.RUNNING:
                name = rpc.POWER_STATE_NAMES.get(state, "pending")
                result = Diagnostics(uuid_, host, state=name, not_running=True, error=f"power state {name}")
            else:
                result = Diagnostics(uuid_, host, **self.driver.diagnostics(ref))
        except DomainNotFound:
            result = Diagnostics(uuid_, host, not_running=True, error="the guest has no domain on its host")
        except Exception as exc:
            log.warning("reading the diagnostics of instance %s failed: %s", request.instance_uuid, exc)
            result = Diagnostics(uuid_, host, error=_readable(exc))
        self.reporter.reply_diagnostics(request.reply_to, result)

    # --- graphs ----------------------------------------------------------------------------------------

    def sample_graphs(self) -> None:
        """One sample of every running guest into the host's rings (``compute_tasks.guest_graphs``); the
        rings of guests whose domain left the host go."""
        stats = self.driver.domain_stats()
        defined = self.driver.list_domains().instances
        self.graphs.record(stats, defined, time.time())

    def get_instance_graphs(self, request: GraphsRequest) -> None:
        """Answer with a window of the guest's rings. Only reads memory: no hypervisor call, no lock."""
        uuid_, host = request.instance_uuid, self.host
        try:
            window = self.graphs.window(uuid_, max(1, int(request.seconds)), time.time())
            if window is None:
                result = InstanceGraphs(uuid_, host, no_history=True, error="this host has no graphs of the guest")
            else:
                result = InstanceGraphs(
                    uuid_,
                    host,
                    resolution=window.resolution,
                    start=window.start,
                    step=window.step,
                    series=window.series,
                )
        except Exception as exc:
            log.warning("reading the graphs of instance %s failed: %s", uuid_, exc)
            result = InstanceGraphs(uuid_, host, error=_readable(exc))
        self.reporter.reply_instance_graphs(request.reply_to, result)

    def _failed(
        self, action: str, ref: InstanceRef, exc: Exception, *, image_id: str = "", migration_id: int | None = None
    ) -> ActionResult:
        log.warning("%s of instance %s failed: %s", action, ref.instance_uuid, exc)
        return ActionResult(
            instance_uuid=ref.instance_uuid,
            host=self.host,
            request_id=ref.request_id,
            action=action,
            power_state=self._power_state_or_nostate(ref),
            error=_readable(exc),
            details="".join(traceback.format_exception(exc)),
            image_id=image_id,
            migration_id=migration_id,
        )

    def _act(
        self,
        action: str,
        ref: InstanceRef,
        work: Callable[[], int],
        *,
        with_console: bool = True,
        migration_id: int | None = None,
        offloaded: bool = False,
        with_addresses: bool = False,
    ) -> None:
        vnc_host: str | None = None
        vnc_port: int | None = None
        addresses: list[dict[str, Any]] | None = None
        with self._instance_lock(ref.instance_uuid):
            try:
                power_state = work()
                if with_console:
                    vnc_host, vnc_port = self.driver.vnc_address(ref)
                if with_addresses:
                    addresses = self.driver.addresses(ref)
                if power_state != rpc.NOSTATE:
                    self._plug_network(ref.instance_uuid)
            except Exception as exc:
                result = self._failed(action, ref, exc, migration_id=migration_id)
            else:
                result = ActionResult(
                    instance_uuid=ref.instance_uuid,
                    host=self.host,
                    request_id=ref.request_id,
                    action=action,
                    power_state=power_state,
                    vnc_host=vnc_host,
                    vnc_port=vnc_port,
                    addresses=addresses,
                    migration_id=migration_id,
                    offloaded=offloaded,
                )
        self.reporter.action_done(result)

    def _power_state_or_nostate(self, ref: InstanceRef) -> int:
        try:
            return self.driver.power_state(ref)
        except Exception:
            return rpc.NOSTATE

    # --- volumes ---------------------------------------------------------------------------------------

    def attach_volume(self, request: VolumeRequest) -> None:
        self._volume_action("attach", request, self.driver.attach_volume)

    def detach_volume(self, request: VolumeRequest) -> None:
        self._volume_action("detach", request, self.driver.detach_volume)

    def _volume_action(self, action: str, request: VolumeRequest, work: Callable[..., None]) -> None:
        """Plug a volume in or out under the instance's lock, then report; the conductor talks to Cinder."""
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        error = details = ""
        with self._instance_lock(request.instance_uuid):
            try:
                work(ref, request.volume)
            except Exception as exc:
                log.warning(
                    "%s of volume %s (instance %s) failed: %s", action, request.volume.volume_id, ref.instance_uuid, exc
                )
                error, details = _readable(exc), "".join(traceback.format_exception(exc))
            else:
                log.info("volume %s %sed on instance %s", request.volume.volume_id, action, ref.instance_uuid)
        self.reporter.volume_done(
            VolumeResult(
                instance_uuid=request.instance_uuid,
                host=self.host,
                request_id=request.request_id,
                action=action,
                volume_id=request.volume.volume_id,
                attachment_id=request.volume.attachment_id,
                error=error,
                details=details,
                rollback=request.rollback,
            )
        )

    # --- interfaces ------------------------------------------------------------------------------------

    def attach_interface(self, request: InterfaceRequest) -> None:
        """Plug a port's NIC into the guest; its tap goes on its bridge at once if the plan has the port
        already, else when the plan that has it arrives."""
        self._interface_action("attach", request, self.driver.attach_interface)
        self._plug_network(request.instance_uuid)

    def detach_interface(self, request: InterfaceRequest) -> None:
        self._interface_action("detach", request, self.driver.detach_interface)

    def _interface_action(self, action: str, request: InterfaceRequest, work: Callable[..., None]) -> None:
        ref = InstanceRef(
            instance_uuid=request.instance_uuid, domain_name=request.domain_name, request_id=request.request_id
        )
        with self._instance_lock(request.instance_uuid):
            try:
                work(ref, request.nic)
            except Exception as exc:
                log.warning(
                    "%s of port %s (instance %s) failed: %s", action, request.nic.port_id, ref.instance_uuid, exc
                )
            else:
                log.info("port %s %sed on instance %s", request.nic.port_id, action, ref.instance_uuid)

    # --- the network data plane ------------------------------------------------------------------------

    def apply_network_state(self, plan: HostNetworkPlan) -> None:
        """Reconcile this host's network to the whole plan, and say what it now is."""
        if plan.host != self.host:
            log.warning("refused a network plan for host %r: this is %r", plan.host, self.host)
            return
        self.reporter.network_state_applied(self.network.apply(plan))

    def resume_network(self) -> None:
        """At start: reconcile to the plan kept from before the restart."""
        report = self.network.resume()
        if report is not None:
            self.reporter.network_state_applied(report)

    def check_network(self) -> None:
        """The periodic check: a report only when something was mended or the plugged ports changed."""
        report = self.network.check()
        if report is not None:
            self.reporter.network_state_applied(report)

    def _port_devices(self) -> set[str] | None:
        try:
            return self.driver.port_devices()
        except DriverError as exc:
            log.warning("cannot list the guests' taps: %s", exc)
            return set()  # unknown now: move none rather than another host's

    def _announce(self, instance_uuid: str) -> None:
        self.driver.announce(InstanceRef(instance_uuid=instance_uuid, domain_name="", request_id=""))

    def _plug_network(self, instance_uuid: str) -> None:
        """A guest (re)appeared here: its taps go on their bridges now rather than at the next check."""
        try:
            report = self.network.plug_instance(instance_uuid)
            if report is not None:
                self.reporter.network_state_applied(report)
        except Exception:
            log.exception("plugging the ports of instance %s failed; the periodic check tries again", instance_uuid)

    # --- heartbeat -------------------------------------------------------------------------------------

    def heartbeat(self) -> Heartbeat | None:
        """Send the host's resources and the power state of every domain; None if the hypervisor could
        not be read (a host that cannot see its hypervisor should look down, so nothing is sent)."""
        try:
            resources = self.driver.host_resources()
            inventory = self.driver.list_domains()
        except DriverError as exc:
            log.warning("cannot read the hypervisor; no heartbeat sent: %s", exc)
            return None
        except Exception:
            log.exception("cannot read the hypervisor; no heartbeat sent")
            return None
        usage = self._host_usage()
        beat = Heartbeat(
            host=self.host,
            sent_at=time.time(),
            vcpus=resources.vcpus,
            memory_mb=resources.memory_mb,
            disk_gb=resources.disk_gb,
            hypervisor_type=resources.hypervisor_type,
            hypervisor_version=resources.hypervisor_version,
            cpu_arch=resources.cpu_arch,
            domains=[
                DomainState(instance_uuid=uuid, power_state=state)
                for uuid, state in sorted(inventory.instances.items())
            ],
            unknown_domains=list(inventory.foreign),
            uptime=host_uptime.uptime_line(),
            volume_connector=host_connector(host=self.host, ip=self.config.my_ip),
            tunnel_address=self.network.tunnel_address,
            physical_networks=list(self.network.physical_networks),
            network_generation=self.network.generation,
            cpu_used_percent=self._cpu_used_percent(usage),
            memory_used_mb=usage.memory_used_mb if usage is not None else None,
        )
        self.reporter.heartbeat(beat)
        return beat

    def _host_usage(self) -> HostUsage | None:
        """The host's CPU and memory use for the admins' graphs: never a reason to miss a beat."""
        try:
            return self.driver.host_usage()
        except Exception as exc:
            log.warning("cannot read the host's CPU and memory use: %s", exc)
            return None

    def _cpu_used_percent(self, usage: HostUsage | None) -> float | None:
        """The host's CPU use since the previous beat's reading, in % of all its CPUs."""
        previous, self._last_usage = self._last_usage, usage
        if usage is None or previous is None or usage.cpu_total_ns <= previous.cpu_total_ns:
            return None
        busy = usage.cpu_busy_ns - previous.cpu_busy_ns
        return round(min(100.0, max(0.0, 100.0 * busy / (usage.cpu_total_ns - previous.cpu_total_ns))), 2)

    # --- per-instance locks ----------------------------------------------------------------------------

    @contextmanager
    def _instance_lock(self, instance_uuid: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(instance_uuid, _RefCountedLock())
            lock.users += 1
        try:
            with lock.lock:
                yield
        finally:
            with self._locks_guard:
                lock.users -= 1
                if lock.users == 0:
                    del self._locks[instance_uuid]


def peer_instances_dir(instances_dir: Path, host: str, peer: str) -> Path:
    """Where host ``peer`` keeps its instance directories, as this host (``host``) can tell: the same path,
    with the path component named after this host (``var/compute/<host>``, the default, and how hosts
    sharing one machine are set apart) named after the peer instead."""
    parts = list(instances_dir.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == host:
            parts[index] = peer
            return Path(*parts)
    return instances_dir


class _RefCountedLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


def _readable(exc: BaseException) -> str:
    """One line for the instance's fault: the message of our own errors, the type as well for others."""
    if isinstance(exc, DriverError | ImageError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
