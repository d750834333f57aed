"""What the libvirt driver does to move a server (resize, cold migration) and to rescue one.

A mixin of ``LibvirtDriver``, kept apart because it is one concern: the files and definitions a guest
leaves behind while it moves. The rules (``drivers.base``): the source's directory waits as
``<dir>_resize`` with the domain's definition in it (``domain.xml``); the new guest's directory holds the
migration's id (``migration``), which is how each step tells the old guest from the new one when both
are on one host. A rescued guest keeps its own definition as ``unrescue.xml`` and boots from
``disk.rescue``, an overlay of the rescue image.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from compute_tasks.config import canonical_uuid, instances_dir_entry
from compute_tasks.drivers import config_drive, domain_xml, volume_xml
from compute_tasks.drivers.base import (
    LIVE_MIGRATION_MARKER,
    USER_NETWORK_GUEST_ADDRESS,
    DomainNotFound,
    DriverError,
    InvalidRequest,
    MigrationStats,
    SpawnResult,
    migration_of,
    resize_dir,
)
from compute_tasks.private_files import create_private_file, open_private, private_dir, private_file
from compute_tasks.rpc import BuildRequest, ImageSpec, InstanceRef

if TYPE_CHECKING:
    from compute_tasks.drivers.libvirt_driver import LibvirtDriver

    _Base = LibvirtDriver
else:
    _Base = object

log = logging.getLogger(__name__)

SAVED_DOMAIN = "domain.xml"
UNRESCUE_DOMAIN = "unrescue.xml"
RESCUE_DISK = "disk.rescue"
CONFIG_DRIVE_FILE = "disk.config"

# Always allowed, so that a migration that does not converge can be switched to post-copy.
LIVE_MIGRATION_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_POSTCOPY
)
# The downtime a forced migration may take when it cannot switch to post-copy: enough for QEMU to send the
# rest of a small guest's memory in one go.
FORCE_COMPLETE_DOWNTIME_MS = 30_000
# How often a running migration job is looked at; its progress is sent at most once a second.
MIGRATION_POLL_SECONDS = 0.2


class LibvirtMoves(_Base):
    # --- resize and cold migration ---------------------------------------------------------------------

    def migrate_disk(self, ref: InstanceRef, target: Path, *, disk_format: str = "qcow2") -> None:
        if disk_format != "qcow2":
            raise DriverError(f"cannot migrate a disk as {disk_format!r}", reschedulable=False)
        instance_dir = instances_dir_entry(self.instances_dir, ref.instance_uuid)
        waiting = resize_dir(instance_dir)
        if not waiting.exists():
            self._call(
                f"taking down instance {ref.instance_uuid} to migrate it", lambda conn: self._take_down(conn, ref)
            )
            os.rename(instance_dir, waiting)
        disk = waiting / "disk"
        self.qemu_img.checked_overlay_chain(disk, f"the disk of instance {ref.instance_uuid}")
        self.qemu_img.run("convert", "-q", "-O", "qcow2", str(disk), str(target), timeout=self.snapshot_timeout)
        private_file(target)

    def _take_down(self, conn: libvirt.virConnect, ref: InstanceRef) -> None:
        """Power off, keep the definition, undefine. Done before (the definition kept, no domain): nothing."""
        instance_dir = instances_dir_entry(self.instances_dir, ref.instance_uuid)
        try:
            dom = self._lookup(conn, ref.instance_uuid)
        except DomainNotFound:
            if (instance_dir / SAVED_DOMAIN).is_file():
                return
            raise
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        if str(instance_dir / "disk") not in domain_xml.disk_paths(xml):
            raise InvalidRequest(f"instance {ref.instance_uuid} has no local disk to migrate")
        if dom.isActive() and not self._shutdown_gracefully(dom):
            log.warning(
                "instance %s did not shut down within %.0fs; powering it off", ref.instance_uuid, self.shutdown_timeout
            )
            _destroy_if_active(dom)
        with open_private(instance_dir / SAVED_DOMAIN, "w") as saved:
            saved.write(xml)
        self._undefine(dom)

    def finish_migration(
        self, request: BuildRequest, disk_image_path: Path, *, migration_id: int, power_on: bool = True
    ) -> SpawnResult:
        return self._spawn(request, disk_image_path, power_on=power_on, migration_id=migration_id)

    def confirm_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        waiting = resize_dir(instance_dir)
        if not waiting.exists():
            return

        def forget_old(conn: libvirt.virConnect) -> None:
            live_usages: set[str] = set()
            try:
                dom = self._lookup(conn, instance_uuid)
            except DomainNotFound:
                dom = None
            if dom is not None and migration_of(instance_dir) != migration_id:
                # Not the guest this migration made: a definition of the old one, left behind.
                _destroy_if_active(dom)
                self._undefine(dom)
                dom = None
            if dom is not None:
                live_usages = set(volume_xml.secret_usages(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
            saved = waiting / SAVED_DOMAIN
            if saved.is_file():
                old_usages = volume_xml.secret_usages(saved.read_text())
                undefine_secrets(conn, [usage for usage in old_usages if usage not in live_usages])

        self._call(f"confirming the migration of instance {instance_uuid}", forget_old)
        _remove_tree(waiting)

    def revert_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        ours = migration_of(instance_dir) == migration_id

        def exists(conn: libvirt.virConnect) -> bool:
            try:
                self._lookup(conn, instance_uuid)
            except DomainNotFound:
                return False
            return True

        if self._call(f"looking up instance {instance_uuid}", exists) and not ours:
            log.info(
                "instance %s: the guest here was not made by migration %s; left alone", instance_uuid, migration_id
            )
            return
        if not ours and instance_dir.exists():
            return  # no domain, and a directory this migration did not make
        if resize_dir(instance_dir).exists():
            self._destroy_keeping_secrets(ref)
        else:
            self.destroy(ref)

    def _destroy_keeping_secrets(self, ref: InstanceRef) -> None:
        """``destroy``, but the iSCSI secrets stay: the old guest waiting here uses the same ones."""

        def remove(conn: libvirt.virConnect) -> None:
            try:
                dom = self._lookup(conn, ref.instance_uuid)
            except DomainNotFound:
                return
            _destroy_if_active(dom)
            self._undefine(dom)

        self._call(f"destroying the migrated guest of instance {ref.instance_uuid}", remove)
        _remove_tree(instances_dir_entry(self.instances_dir, ref.instance_uuid))

    def finish_revert_migration(self, ref: InstanceRef, *, migration_id: int, power_on: bool) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        waiting = resize_dir(instance_dir)

        def bring_back(conn: libvirt.virConnect) -> int:
            try:
                dom = self._lookup(conn, instance_uuid)
            except DomainNotFound:
                dom = None
            if waiting.exists():
                if dom is not None:
                    if migration_of(instance_dir) == migration_id:
                        raise DriverError(
                            f"the guest migration {migration_id} made of instance {instance_uuid} is still on "
                            "this host; revert it first"
                        )
                    _destroy_if_active(dom)
                    self._undefine(dom)
                    dom = None
                _remove_tree(instance_dir)
                os.rename(waiting, instance_dir)
            if dom is None:
                saved = instance_dir / SAVED_DOMAIN
                if not saved.is_file():
                    raise DriverError(f"instance {instance_uuid} has no kept definition to revert to")
                xml = saved.read_text()
                # The volumes' NFS shares are mounted again if the host lost them (their secrets were kept).
                for path in domain_xml.disk_paths(xml):
                    if not Path(path).exists():
                        raise DriverError(f"instance {instance_uuid} cannot come back: {path} is missing")
                dom = conn.defineXML(xml)
                saved.unlink()
            if power_on and not dom.isActive():
                dom.create()
            return self._state(dom)

        return self._call(f"reverting the migration of instance {instance_uuid}", bring_back)

    # --- live migration --------------------------------------------------------------------------------

    def prepare_live_migration(
        self, request: BuildRequest, base_image_path: Path | None, *, migration_id: int, block_migration: bool
    ) -> None:
        instance_uuid = canonical_uuid(request.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)

        def no_domain(conn: libvirt.virConnect) -> None:
            try:
                dom = self._lookup(conn, instance_uuid)
            except DomainNotFound:
                return
            how = "running" if dom.isActive() else "defined"
            raise DriverError(f"instance {instance_uuid} already has a domain on this host ({how})")

        self._call(f"preparing the live migration of instance {instance_uuid}", no_domain)
        if not block_migration:
            if not instance_dir.is_dir() or (request.image is not None and not (instance_dir / "disk").is_file()):
                raise DriverError(
                    f"the directory of instance {instance_uuid} is not on this host: a live migration without "
                    "block migration needs an instance directory the hosts share",
                    reschedulable=False,
                )
            return
        if instance_dir.exists():
            if _live_migration_of(instance_dir) != migration_id:
                raise DriverError(
                    f"instance {instance_uuid} has a directory on this host already ({instance_dir}); if the "
                    "hosts share it, migrate without block migration",
                    reschedulable=False,
                )
            _remove_tree(instance_dir)  # an earlier delivery's, made again below
        try:
            private_dir(instance_dir)
            with open_private(instance_dir / LIVE_MIGRATION_MARKER, "w") as marker:
                marker.write(str(migration_id))
            create_private_file(instance_dir / "console.log")
            if request.image is not None:
                if base_image_path is None:
                    raise DriverError(f"no base image was fetched for instance {instance_uuid}")
                self._create_overlay(
                    base_image_path,
                    instance_dir / "disk",
                    request.image,
                    root_gb=request.flavor.root_gb,
                    flavor_name=request.flavor.name,
                    never_shrink=True,
                )
                private_file(instance_dir / "disk")
            if request.metadata is not None:
                config_drive.write_config_drive(request, instance_dir / CONFIG_DRIVE_FILE)
        except Exception:
            _remove_tree(instance_dir)
            raise

    def live_migrate(
        self,
        ref: InstanceRef,
        *,
        dest_uri: str,
        dest_instances_dir: Path,
        dest_vnc_listen: str,
        block_migration: bool,
        on_progress: Callable[[MigrationStats], None],
    ) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        what = f"live-migrating instance {instance_uuid}"

        def begin(conn: libvirt.virConnect) -> tuple[libvirt.virDomain | None, bool]:
            try:
                dom = self._lookup(conn, instance_uuid)
            except DomainNotFound:
                return None, False
            if _job_running(dom):
                return dom, True
            if not dom.isActive():
                raise DriverError(
                    f"instance {instance_uuid} is not running; only a running guest is live-migrated",
                    reschedulable=False,
                )
            return dom, False

        dom, running = self._call(what, begin)
        if dom is None:
            log.info("instance %s is no longer on this host: migrated already", instance_uuid)
        elif running:
            log.info("instance %s: a migration job runs already; waiting for it", instance_uuid)
            self._watch(dom, None, on_progress)
            if self._call(what, lambda conn: _still_here(self, conn, instance_uuid)):
                raise DriverError(f"the migration that was running ended with instance {instance_uuid} still here")
        else:
            xml = self._call(what, lambda conn: dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
            dest_dir = instances_dir_entry(dest_instances_dir, instance_uuid) if block_migration else instance_dir
            params: dict[str, Any] = {
                libvirt.VIR_MIGRATE_PARAM_DEST_XML: domain_xml.live_migration_xml(
                    xml, source_dir=instance_dir, dest_dir=dest_dir, vnc_listen=dest_vnc_listen
                )
            }
            flags = LIVE_MIGRATION_FLAGS
            if self.live_migration_bandwidth:
                params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = self.live_migration_bandwidth
            if block_migration:
                flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
                disks = domain_xml.local_disk_targets(xml, instance_dir)
                if disks:
                    params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = disks
            else:
                # libvirt cannot see that the directory is shared, and refuses without this.
                flags |= libvirt.VIR_MIGRATE_UNSAFE
            started = time.monotonic()
            outcome: list[BaseException | None] = []
            self.aborted_migrations.discard(instance_uuid)

            def migrate() -> None:
                try:
                    dom.migrateToURI3(dest_uri, params, flags)
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread
                    outcome.append(exc)

            mover = threading.Thread(target=migrate, name=f"migrate-{instance_uuid}", daemon=True)
            mover.start()
            self._watch(dom, mover, on_progress)
            error = outcome[0] if outcome else RuntimeError("the migration thread ended without an outcome")
            aborted = instance_uuid in self.aborted_migrations
            self.aborted_migrations.discard(instance_uuid)
            if error is not None:
                if isinstance(error, libvirt.libvirtError):
                    # An abort while the disks are still copied may surface as the mirror's broken pipe.
                    if aborted or error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
                        raise DriverError(f"the live migration of instance {instance_uuid} was cancelled") from error
                    raise DriverError(f"{what} failed: {error.get_error_message() or error}") from error
                raise error
            log.info("instance %s migrated live to %s in %.1fs", instance_uuid, dest_uri, time.monotonic() - started)
        if block_migration:
            _remove_tree(instance_dir)

    def _watch(
        self, dom: libvirt.virDomain, mover: threading.Thread | None, on_progress: Callable[[MigrationStats], None]
    ) -> None:
        """Report the job's progress about every second until ``mover`` ends (or, without one, the job)."""
        while True:
            if mover is not None:
                mover.join(MIGRATION_POLL_SECONDS)
                if not mover.is_alive():
                    return
            try:
                stats = dom.jobStats(0)
            except libvirt.libvirtError:
                stats = {}
            if mover is None and stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                return
            # A job still setting up has no totals yet: nothing worth sending.
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE and _has_totals(stats):
                try:
                    on_progress(_migration_stats(stats))
                except Exception:
                    log.exception("reporting the progress of a migration failed")
            if mover is None:
                time.sleep(MIGRATION_POLL_SECONDS)

    def abort_live_migration(self, ref: InstanceRef) -> bool:
        def abort(conn: libvirt.virConnect) -> bool:
            dom = self._lookup(conn, ref.instance_uuid)
            if not _job_running(dom):
                return False
            try:
                dom.abortJob()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and not _job_running(dom):
                    return False
                raise
            self.aborted_migrations.add(canonical_uuid(ref.instance_uuid))
            return True

        try:
            return self._call(f"aborting the migration of instance {ref.instance_uuid}", abort)
        except DomainNotFound:
            return False

    def force_complete_live_migration(self, ref: InstanceRef) -> str:
        def force(conn: libvirt.virConnect) -> str:
            dom = self._lookup(conn, ref.instance_uuid)
            if not _job_running(dom):
                raise DriverError(f"no migration of instance {ref.instance_uuid} is running")
            try:
                dom.migrateStartPostCopy(0)
                return "post-copy"
            except libvirt.libvirtError as exc:
                log.info(
                    "instance %s: cannot switch to post-copy (%s); allowing %d ms of downtime",
                    ref.instance_uuid,
                    exc.get_error_message(),
                    FORCE_COMPLETE_DOWNTIME_MS,
                )
            dom.migrateSetMaxDowntime(FORCE_COMPLETE_DOWNTIME_MS, 0)
            return "downtime"

        return self._call(f"forcing the migration of instance {ref.instance_uuid} to complete", force)

    def post_live_migration(self, ref: InstanceRef, *, migration_id: int) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)

        def check(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, instance_uuid)
            state = self._state(dom)
            if not dom.isActive():
                raise DriverError(
                    f"the guest of instance {instance_uuid} does not run on this host after its migration"
                )
            return state

        state = self._call(f"checking the migrated guest of instance {instance_uuid}", check)
        marker = instances_dir_entry(self.instances_dir, instance_uuid) / LIVE_MIGRATION_MARKER
        if _live_migration_of(marker.parent) == migration_id:
            marker.unlink(missing_ok=True)
        return state

    def completed_live_migration(self, ref: InstanceRef) -> MigrationStats | None:
        def read(conn: libvirt.virConnect) -> dict[str, Any]:
            dom = self._lookup(conn, ref.instance_uuid)
            # Kept, so that a second look (a redelivered message, an operator's virsh) sees them too.
            return dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)

        stats = self._call(f"reading the completed migration of instance {ref.instance_uuid}", read)
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_COMPLETED:
            return None
        return _migration_stats(stats)

    def rollback_live_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)

        def forget(conn: libvirt.virConnect) -> None:
            try:
                dom = self._lookup(conn, instance_uuid)
            except DomainNotFound:
                return
            if dom.isActive():
                state, reason = dom.state()
                if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
                    raise DriverError(f"a migration of instance {instance_uuid} into this host is still running")
                raise DriverError(
                    f"the guest of instance {instance_uuid} runs on this host: its migration completed; left alone"
                )
            log.info("instance %s: removing the definition a failed migration left here", instance_uuid)
            self._undefine(dom)

        self._call(f"rolling back the migration of instance {instance_uuid}", forget)
        if _live_migration_of(instance_dir) == migration_id:
            _remove_tree(instance_dir)

    # --- rescue ----------------------------------------------------------------------------------------

    def rescue(self, ref: InstanceRef, rescue_image: ImageSpec, rescue_image_path: Path) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        kept, rescue_disk = instance_dir / UNRESCUE_DOMAIN, instance_dir / RESCUE_DISK

        def boot_rescue(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, instance_uuid)
            current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if kept.is_file() and domain_xml.is_rescue_of(current, rescue_disk):
                if not dom.isActive():
                    dom.create()
                return self._state(dom)
            own = kept.read_text() if kept.is_file() else current
            xml = domain_xml.rescue_domain_xml(own, own_disk=instance_dir / "disk", rescue_disk=rescue_disk)
            if not kept.is_file():
                with open_private(kept, "w") as saved:
                    saved.write(own)
            if dom.isActive() and not self._shutdown_gracefully(dom):
                _destroy_if_active(dom)
            if dom.hasManagedSaveImage(0):
                dom.managedSaveRemove(0)
            self._create_overlay(rescue_image_path, rescue_disk, rescue_image, root_gb=0)
            private_file(rescue_disk)
            dom = conn.defineXML(xml)
            dom.create()
            return self._state(dom)

        return self._call(f"rescuing instance {instance_uuid}", boot_rescue)

    def unrescue(self, ref: InstanceRef) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        kept, rescue_disk = instance_dir / UNRESCUE_DOMAIN, instance_dir / RESCUE_DISK

        def boot_own(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, instance_uuid)
            if kept.is_file():
                _destroy_if_active(dom)
                dom = conn.defineXML(kept.read_text())
                rescue_disk.unlink(missing_ok=True)
                kept.unlink()
            if not dom.isActive():
                dom.create()
            return self._state(dom)

        return self._call(f"unrescuing instance {instance_uuid}", boot_own)

    # --- addresses -------------------------------------------------------------------------------------

    def addresses(self, ref: InstanceRef) -> list[dict[str, Any]] | None:
        def read(conn: libvirt.virConnect) -> list[dict[str, Any]]:
            xml = self._lookup(conn, ref.instance_uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            return [
                {"addr": USER_NETWORK_GUEST_ADDRESS, "version": 4, "mac": mac, "network": "user"}
                for mac in domain_xml.user_nic_macs(xml)
            ]

        return self._call(f"reading the addresses of instance {ref.instance_uuid}", read, retry=True)


def _live_migration_of(instance_dir: Path) -> int | None:
    try:
        return int((instance_dir / LIVE_MIGRATION_MARKER).read_text().strip())
    except (OSError, ValueError):
        return None


def _job_running(dom: libvirt.virDomain) -> bool:
    try:
        return dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return False  # a hypervisor without jobs (libvirt's test driver) runs no migration
        raise


def _still_here(driver: LibvirtMoves, conn: libvirt.virConnect, instance_uuid: str) -> bool:
    try:
        return bool(driver._lookup(conn, instance_uuid).isActive())
    except DomainNotFound:
        return False


def _has_totals(stats: dict[str, Any]) -> bool:
    return bool(stats.get("memory_total") or stats.get("disk_total"))


def _migration_stats(stats: dict[str, Any]) -> MigrationStats:
    return MigrationStats(
        memory_total=int(stats.get("memory_total", 0)),
        memory_processed=int(stats.get("memory_processed", 0)),
        memory_remaining=int(stats.get("memory_remaining", 0)),
        disk_total=int(stats.get("disk_total", 0)),
        disk_processed=int(stats.get("disk_processed", 0)),
        disk_remaining=int(stats.get("disk_remaining", 0)),
    )


def _destroy_if_active(dom: libvirt.virDomain) -> None:
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError as exc:
        # It stopped on its own in the meantime.
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or dom.isActive():
            raise


def undefine_secrets(conn: libvirt.virConnect, usages: list[str]) -> None:
    for usage in usages:
        try:
            conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, usage).undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SECRET, libvirt.VIR_ERR_NO_SUPPORT):
                raise


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DriverError(f"cannot remove {path}: {exc}") from exc
