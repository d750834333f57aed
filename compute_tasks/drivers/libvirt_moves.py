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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from compute_tasks.config import canonical_uuid, instances_dir_entry
from compute_tasks.drivers import domain_xml, volume_xml
from compute_tasks.drivers.base import (
    USER_NETWORK_GUEST_ADDRESS,
    DomainNotFound,
    DriverError,
    InvalidRequest,
    SpawnResult,
    migration_of,
    resize_dir,
)
from compute_tasks.private_files import open_private, private_file
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
