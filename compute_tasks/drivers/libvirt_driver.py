"""The libvirt driver: QEMU/KVM domains on the local libvirtd (or libvirt's in-memory ``test:///default``).

This module, ``libvirt_moves`` and ``libvirt_stats`` are the only ones that import ``libvirt``.

One connection serves the whole process. libvirt connections are safe to share between threads, so the
lock only guards opening it; a connection that died (libvirtd restarted) is dropped on the first error
that shows it and reopened by the next call. Read-only calls are retried once on a fresh connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - parses libvirt's own output only
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import libvirt
import libvirt_qemu

from compute_tasks import host_metrics, rpc
from compute_tasks.config import canonical_uuid, instances_dir_entry
from compute_tasks.drivers import config_drive, domain_xml, libvirt_stats, volume_xml
from compute_tasks.drivers.base import (
    INSTANCE_METADATA_NS,
    MIGRATION_MARKER,
    ComputeDriver,
    DomainInventory,
    DomainNotFound,
    DomainStats,
    DriverError,
    HostResources,
    HostUsage,
    SpawnResult,
    nic_addresses,
    read_tail,
)
from compute_tasks.drivers.libvirt_moves import CONFIG_DRIVE_FILE, LibvirtMoves, undefine_secrets
from compute_tasks.drivers.qemu_img import QemuImg
from compute_tasks.private_files import create_private_file, open_private, private_dir, private_file
from compute_tasks.rpc import BuildRequest, ImageSpec, InstanceRef, NicSpec, VolumeConnection

log = logging.getLogger(__name__)

T = TypeVar("T")

GIB = 1024**3

# libvirt prints every error to stderr unless a handler takes them; ours arrive as exceptions anyway.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: rpc.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: rpc.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: rpc.RUNNING,  # running, waiting on I/O
    libvirt.VIR_DOMAIN_PAUSED: rpc.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: rpc.SHUTDOWN,  # on its way down
    libvirt.VIR_DOMAIN_SHUTOFF: rpc.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: rpc.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: rpc.SUSPENDED,
}

_CONNECTION_ERRORS = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
}
_CONNECTION_ERROR_DOMAINS = {libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_RPC}

# How often an ACPI shutdown request is repeated while waiting: a guest still booting may miss one.
ACPI_RETRY_SECONDS = 10.0
SUPPORTED_DISK_FORMATS = ("qcow2", "raw")
# QEMU's own announcement after a migration, asked for again once the guest's taps are on their bridges
# (a RARP from each NIC, and a virtio guest's gratuitous ARPs), in QEMU's default rounds.
ANNOUNCE_SELF = json.dumps(
    {"execute": "announce-self", "arguments": {"initial": 50, "max": 550, "rounds": 5, "step": 100}}
)


def power_state_of(libvirt_state: int) -> int:
    return _POWER_STATES.get(libvirt_state, rpc.NOSTATE)


class ForeignDomain(DriverError):
    def __init__(self, instance_uuid: str, name: str) -> None:
        super().__init__(
            f"domain {name!r} has the uuid of instance {instance_uuid} but was not created by the cloud; "
            "it is left untouched",
            reschedulable=True,
        )


class LibvirtDriver(LibvirtMoves, ComputeDriver):
    # The host's CPU architecture, read once from its capabilities: every heartbeat reports it, and it
    # cannot change while the worker runs (re-reading and parsing the capabilities XML was most of a beat).
    _cpu_arch: str | None = None
    _node_stats_unsupported = False  # the hypervisor said once that it cannot report them: not asked again

    def __init__(
        self,
        *,
        uri: str,
        virt_type: str,
        instances_dir: Path,
        vnc_listen: str,
        vnc_host: str,
        shutdown_timeout: float = 60.0,
        poll_interval: float = 0.5,
        qemu_img: str = "qemu-img",
        qemu_img_timeout: float = 120.0,
        snapshot_timeout: float = 1800.0,
        nfs_mount_point_base: Path | None = None,
        volume_detach_timeout: float = 30.0,
        live_migration_bandwidth: int = 0,
    ) -> None:
        self.uri = uri
        self.virt_type = virt_type
        self.instances_dir = instances_dir
        self.vnc_listen = vnc_listen
        self.vnc_host = vnc_host
        # Instances whose migration this host was told to abort: however the cancelled job ends, it was
        # cancelled. (One process per host; its threads share this.)
        self.aborted_migrations: set[str] = set()
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self.qemu_img = QemuImg(qemu_img, timeout=qemu_img_timeout)
        self.snapshot_timeout = snapshot_timeout
        self.nfs_mount_point_base = nfs_mount_point_base or instances_dir.parent / "mnt"
        self.volume_detach_timeout = volume_detach_timeout
        self.live_migration_bandwidth = live_migration_bandwidth  # MiB/s, 0: no limit
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None

    # --- connection ----------------------------------------------------------------------------------

    def _connection(self) -> libvirt.virConnect:
        with self._lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                log.warning("libvirt connection to %s is dead; reconnecting", self.uri)
                _close_quietly(conn)
                self._conn = None
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise DriverError(f"cannot connect to libvirt at {self.uri}: {_message(exc)}") from exc
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                _close_quietly(self._conn)
                self._conn = None

    def _forget_if_broken(self, conn: libvirt.virConnect, exc: libvirt.libvirtError) -> bool:
        if exc.get_error_code() not in _CONNECTION_ERRORS and exc.get_error_domain() not in (_CONNECTION_ERROR_DOMAINS):
            return False
        with self._lock:
            if self._conn is conn:
                _close_quietly(conn)
                self._conn = None
        return True

    def _call(self, what: str, fn: Callable[[libvirt.virConnect], T], *, retry: bool = False) -> T:
        """Run ``fn`` with the connection; libvirt errors become DriverErrors that say ``what`` failed.

        Every call is timed into ``host_metrics.libvirt_call_duration`` under the name of the driver method
        that made it (``power_on``, ``list_domains``, ...): a bounded label, where ``what`` names instances."""
        operation = sys._getframe(1).f_code.co_name
        for attempt in (1, 2):
            conn = self._connection()
            started = time.perf_counter()
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                broken = self._forget_if_broken(conn, exc)
                if broken and retry and attempt == 1:
                    log.warning("%s: libvirt connection failed (%s); retrying", what, _message(exc))
                    continue
                raise DriverError(f"{what} failed: {_message(exc)}") from exc
            finally:
                host_metrics.libvirt_call_duration.labels(operation).observe(time.perf_counter() - started)
        raise AssertionError("unreachable")

    # --- lookups ---------------------------------------------------------------------------------------

    def _lookup(self, conn: libvirt.virConnect, instance_uuid: str) -> libvirt.virDomain:
        instance_uuid = canonical_uuid(instance_uuid)
        try:
            dom = conn.lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainNotFound(instance_uuid) from None
            raise
        if _instance_uuid_of(dom) != instance_uuid:
            raise ForeignDomain(instance_uuid, dom.name())
        return dom

    def _state(self, dom: libvirt.virDomain) -> int:
        state = dom.state()[0]
        if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
            return rpc.SUSPENDED  # off, but with its memory saved: a suspended guest
        return power_state_of(state)

    # --- the interface ---------------------------------------------------------------------------------

    def spawn(
        self,
        request: BuildRequest,
        base_image_path: Path | None,
        *,
        power_on: bool = True,
        volume_images: Mapping[str, Path] | None = None,
    ) -> SpawnResult:
        return self._spawn(request, base_image_path, power_on=power_on, volume_images=volume_images)

    def _spawn(
        self,
        request: BuildRequest,
        base_image_path: Path | None,
        *,
        power_on: bool = True,
        volume_images: Mapping[str, Path] | None = None,
        migration_id: int | None = None,
    ) -> SpawnResult:
        """``spawn``; with a ``migration_id``, the base image is a migrated disk, which the root disk grows
        to the flavor's size but never shrinks below, and the directory is marked with the migration."""
        instance_uuid = canonical_uuid(request.instance_uuid)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        console_log_path = instance_dir / "console.log"
        # The root volume first, so that it is the disk the guest boots from.
        volumes = sorted(request.block_devices, key=lambda device: device.boot_index != 0)
        root_volume = bool(volumes) and volumes[0].boot_index == 0
        disk_path = None if root_volume else instance_dir / "disk"
        volume_disks = [self._volume_disk(device) for device in volumes]
        config_drive_path = instance_dir / CONFIG_DRIVE_FILE if request.metadata is not None else None
        xml = domain_xml.build_domain_xml(
            request,
            virt_type=self.virt_type,
            disk_path=disk_path,
            console_log_path=console_log_path,
            vnc_listen=self.vnc_listen,
            volume_disks=[disk.xml for disk in volume_disks],
            config_drive_path=config_drive_path,
        )

        def define_and_start(conn: libvirt.virConnect) -> SpawnResult:
            try:
                self._lookup(conn, instance_uuid)
            except DomainNotFound:
                pass
            else:
                raise DriverError(f"instance {instance_uuid} already has a domain on this host")
            if instance_dir.exists():
                # No domain uses it: a build that died half way left it.
                log.info("removing leftover directory of instance %s", instance_uuid)
                shutil.rmtree(instance_dir)
            private_dir(instance_dir)
            # What a guest prints (passwords cloud-init sets among it) is for its owner only. virtlogd
            # makes the serial log 0600 itself, but QEMU opening it directly (qemu.conf stdio_handler =
            # "file") would use its umask; made here first, the file keeps this mode either way.
            create_private_file(console_log_path)
            if migration_id is not None:
                with open_private(instance_dir / MIGRATION_MARKER, "w") as marker:
                    marker.write(str(migration_id))
            if disk_path is not None:
                if request.image is None or base_image_path is None:
                    raise DriverError(f"instance {instance_uuid} has neither an image nor a root volume")
                self._create_overlay(
                    base_image_path,
                    disk_path,
                    request.image,
                    root_gb=request.flavor.root_gb,
                    flavor_name=request.flavor.name,
                    never_shrink=migration_id is not None,
                )
                private_file(disk_path)
            if config_drive_path is not None:
                config_drive.write_config_drive(request, config_drive_path)
            for device, disk in zip(volumes, volume_disks, strict=True):
                self._prepare_volume(conn, disk)
                if device.image is not None:
                    self._write_image_to_volume(device, disk, (volume_images or {}).get(device.volume_id))
            dom = conn.defineXML(xml)
            if power_on:
                dom.create()
            vnc_host, vnc_port = self._vnc(dom)
            return SpawnResult(
                power_state=self._state(dom),
                vnc_host=vnc_host,
                vnc_port=vnc_port,
                addresses=nic_addresses(request.nics),
            )

        return self._call(f"spawning instance {instance_uuid}", define_and_start)

    def power_on(self, ref: InstanceRef) -> int:
        def start(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            elif state == libvirt.VIR_DOMAIN_PMSUSPENDED:
                dom.pMWakeup(0)
            elif not dom.isActive():
                dom.create()
            return self._state(dom)

        return self._call(f"starting instance {ref.instance_uuid}", start)

    def power_off(self, ref: InstanceRef) -> int:
        def stop(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            if dom.isActive() and not self._shutdown_gracefully(dom):
                log.warning(
                    "instance %s did not shut down within %.0fs; powering it off",
                    ref.instance_uuid,
                    self.shutdown_timeout,
                )
                _destroy_quietly(dom)
            return self._state(dom)

        return self._call(f"stopping instance {ref.instance_uuid}", stop)

    def reboot(self, ref: InstanceRef, *, hard: bool) -> int:
        def restart(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            if dom.isActive():
                if hard:
                    _destroy_quietly(dom)
                elif not self._shutdown_gracefully(dom):
                    log.warning(
                        "instance %s ignored the ACPI shutdown for %.0fs; rebooting it hard",
                        ref.instance_uuid,
                        self.shutdown_timeout,
                    )
                    _destroy_quietly(dom)
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            elif not dom.isActive():
                if dom.hasManagedSaveImage(0):
                    # A suspended guest reboots from scratch, not from the memory it saved.
                    dom.managedSaveRemove(0)
                dom.create()
            return self._state(dom)

        kind = "hard" if hard else "soft"
        return self._call(f"{kind} reboot of instance {ref.instance_uuid}", restart)

    def pause(self, ref: InstanceRef) -> int:
        def pause(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            state = dom.state()[0]
            if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                dom.suspend()  # libvirt's "suspend" halts the vCPUs: the compute API's pause
            elif state != libvirt.VIR_DOMAIN_PAUSED:
                raise DriverError(f"instance {ref.instance_uuid} is not running, so it cannot be paused")
            return self._state(dom)

        return self._call(f"pausing instance {ref.instance_uuid}", pause)

    def unpause(self, ref: InstanceRef) -> int:
        def unpause(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            elif state not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
                raise DriverError(f"instance {ref.instance_uuid} is not paused, so it cannot be unpaused")
            return self._state(dom)

        return self._call(f"unpausing instance {ref.instance_uuid}", unpause)

    def suspend(self, ref: InstanceRef) -> int:
        def suspend(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            if dom.isActive():
                # Restored running even if it was paused when saved: resume means "running again".
                dom.managedSave(libvirt.VIR_DOMAIN_SAVE_RUNNING)
            elif not dom.hasManagedSaveImage(0):
                raise DriverError(f"instance {ref.instance_uuid} is shut off, so it cannot be suspended")
            return self._state(dom)

        return self._call(f"suspending instance {ref.instance_uuid}", suspend)

    def resume(self, ref: InstanceRef) -> int:
        def resume(conn: libvirt.virConnect) -> int:
            dom = self._lookup(conn, ref.instance_uuid)
            if not dom.isActive():
                if not dom.hasManagedSaveImage(0):
                    raise DriverError(
                        f"instance {ref.instance_uuid} has no saved memory to resume from; start it instead"
                    )
                dom.create()  # a domain with a managed save image is restored from it
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            return self._state(dom)

        return self._call(f"resuming instance {ref.instance_uuid}", resume)

    def snapshot(self, ref: InstanceRef, target: Path, *, disk_format: str = "qcow2") -> int:
        if disk_format not in SUPPORTED_DISK_FORMATS:
            raise DriverError(f"cannot write a snapshot as {disk_format!r}", reschedulable=False)

        def prepare(conn: libvirt.virConnect) -> tuple[str, bool, bool]:
            dom = self._lookup(conn, ref.instance_uuid)
            # The local root disk only: attached volumes are not part of the image.
            own = str(instances_dir_entry(self.instances_dir, ref.instance_uuid) / "disk")
            if own not in domain_xml.disk_paths(dom.XMLDesc(0)):
                raise DriverError(f"instance {ref.instance_uuid} has no local disk to snapshot", reschedulable=False)
            state = dom.state()[0]
            paused_here = state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)
            if paused_here:
                # Pausing makes QEMU drain and flush its I/O, so the file is consistent while we copy.
                dom.suspend()
            return own, paused_here, bool(dom.isActive())

        disk, paused_here, active = self._call(f"preparing the snapshot of instance {ref.instance_uuid}", prepare)
        try:
            self.qemu_img.checked_overlay_chain(
                Path(disk), f"the disk of instance {ref.instance_uuid}", force_share=active
            )
            args = ["convert", "-q", "-O", disk_format]
            if active:
                args.append("-U")  # the (paused) QEMU holds the image's lock; nothing writes to it now
            self.qemu_img.run(*args, disk, str(target), timeout=self.snapshot_timeout)
            private_file(target)
        finally:
            if paused_here:
                self._call(
                    f"resuming instance {ref.instance_uuid} after its snapshot",
                    lambda conn: self._lookup(conn, ref.instance_uuid).resume(),
                )
        return self.power_state(ref)

    def console_log(self, ref: InstanceRef, max_bytes: int) -> bytes:
        def log_path(conn: libvirt.virConnect) -> Path:
            dom = self._lookup(conn, ref.instance_uuid)
            found = domain_xml.serial_log_path(dom.XMLDesc(0))
            if found:
                return Path(found)
            return instances_dir_entry(self.instances_dir, ref.instance_uuid) / "console.log"

        path = self._call(f"finding the serial log of instance {ref.instance_uuid}", log_path, retry=True)
        return read_tail(path, max_bytes)

    def destroy(self, ref: InstanceRef) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)

        def remove(conn: libvirt.virConnect) -> None:
            try:
                dom = self._lookup(conn, instance_uuid)
            except DomainNotFound:
                return
            if dom.isActive():
                _destroy_quietly(dom)
            undefine_secrets(conn, volume_xml.secret_usages(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
            self._undefine(dom)

        self._call(f"destroying instance {instance_uuid}", remove)
        instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
        try:
            shutil.rmtree(instance_dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DriverError(f"cannot remove {instance_dir}: {exc}") from exc

    def _undefine(self, dom: libvirt.virDomain) -> None:
        """Undefine a stopped domain with everything libvirt keeps for it; one already gone is done."""
        flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        )
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                return
            if code not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise
            # Without the flags, libvirt refuses to undefine a domain that has saved memory.
            if dom.hasManagedSaveImage(0):
                dom.managedSaveRemove(0)
            dom.undefine()

    def power_state(self, ref: InstanceRef) -> int:
        return self._call(
            f"reading the state of instance {ref.instance_uuid}",
            lambda conn: self._state(self._lookup(conn, ref.instance_uuid)),
            retry=True,
        )

    def diagnostics(self, ref: InstanceRef) -> dict[str, Any]:
        return self._call(
            f"reading the diagnostics of instance {ref.instance_uuid}",
            lambda conn: self._diagnostics(self._lookup(conn, ref.instance_uuid)),
            retry=True,
        )

    def _diagnostics(self, dom: libvirt.virDomain) -> dict[str, Any]:
        """From ``info()`` (memory in KiB, CPU time in ns), ``vcpus()``, ``memoryStats()``, and
        ``blockStats``/``interfaceStats`` of each device of the live definition. A statistic the
        hypervisor cannot give (a stopped vCPU thread, a guest without a balloon, a user-mode NIC) is
        left out of the free-form dict and null in the standard one, never an error."""
        xml = dom.XMLDesc(0)
        _state, max_kib, cur_kib, num_cpus, cpu_time = dom.info()
        legacy: dict[str, Any] = {}
        cpus: list[dict[str, Any]] = []
        try:
            per_cpu = dom.vcpus()[0]
        except libvirt.libvirtError:
            per_cpu = []
        for number, _vstate, vtime, _pcpu in per_cpu:
            legacy[f"cpu{number}_time"] = vtime
            cpus.append({"id": number, "time": vtime, "utilisation": None})
        if not cpus and num_cpus == 1:
            legacy["cpu0_time"] = cpu_time
            cpus.append({"id": 0, "time": cpu_time, "utilisation": None})
        legacy["memory"] = max_kib
        memory = libvirt_stats.memory_stats(dom)
        for key, value in memory.items():
            legacy[f"memory-{key}"] = value
        used_kib = libvirt_stats.used_kib(memory, cur_kib)
        disks = []
        for disk in libvirt_stats.disk_counters(dom, xml):
            dev = disk.device
            legacy.update(
                {
                    f"{dev}_read_req": disk.read_requests,
                    f"{dev}_read": disk.read_bytes,
                    f"{dev}_write_req": disk.write_requests,
                    f"{dev}_write": disk.write_bytes,
                    f"{dev}_errors": disk.errors,
                }
            )
            disks.append(
                {
                    "read_bytes": disk.read_bytes,
                    "read_requests": disk.read_requests,
                    "write_bytes": disk.write_bytes,
                    "write_requests": disk.write_requests,
                    "errors_count": disk.errors,
                }
            )
        nics = []
        for mac, dev, counters in libvirt_stats.nic_counters(dom, xml):
            stats: tuple[int, ...] | None = None
            if counters is not None:
                stats = (
                    counters.rx_bytes,
                    counters.rx_packets,
                    counters.rx_errors,
                    counters.rx_drop,
                    counters.tx_bytes,
                    counters.tx_packets,
                    counters.tx_errors,
                    counters.tx_drop,
                )
            names = ("rx_octets", "rx_packets", "rx_errors", "rx_drop", "tx_octets", "tx_packets", "tx_errors")
            nic: dict[str, Any] = {"mac_address": mac, "rx_rate": None, "tx_rate": None}
            nic.update(zip((*names, "tx_drop"), stats or (None,) * 8, strict=True))
            nics.append(nic)
            if stats is not None:
                suffixes = ("rx", "rx_packets", "rx_errors", "rx_drop", "tx", "tx_packets", "tx_errors", "tx_drop")
                legacy.update({f"{dev}_{suffix}": value for suffix, value in zip(suffixes, stats, strict=True)})
        return {
            "state": rpc.POWER_STATE_NAMES.get(self._state(dom), "pending"),
            "driver": "libvirt",
            "hypervisor": self.virt_type,
            "hypervisor_os": "linux",
            "num_cpus": num_cpus,
            "num_disks": len(disks),
            "num_nics": len(nics),
            "cpu_details": cpus,
            "memory_details": {"maximum": max_kib // 1024, "used": used_kib // 1024},
            "disk_details": disks,
            "nic_details": nics,
            "legacy": legacy,
        }

    def vnc_address(self, ref: InstanceRef) -> tuple[str | None, int | None]:
        return self._call(
            f"reading the console address of instance {ref.instance_uuid}",
            lambda conn: self._vnc(self._lookup(conn, ref.instance_uuid)),
            retry=True,
        )

    def list_domains(self) -> DomainInventory:
        def inventory(conn: libvirt.virConnect) -> DomainInventory:
            instances: dict[str, int] = {}
            foreign: list[str] = []
            for dom in conn.listAllDomains(0):
                try:
                    instance_uuid = _instance_uuid_of(dom)
                    if instance_uuid is not None and instance_uuid == dom.UUIDString():
                        instances[instance_uuid] = self._state(dom)
                    else:
                        foreign.append(dom.name())
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
                    # Undefined while we looked: it is gone, so it is not reported.
            return DomainInventory(instances=instances, foreign=sorted(foreign))

        return self._call("listing domains", inventory, retry=True)

    def domain_stats(self) -> list[DomainStats]:
        def read(conn: libvirt.virConnect) -> list[DomainStats]:
            stats = []
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    instance_uuid = _instance_uuid_of(dom)
                    if instance_uuid is None or instance_uuid != dom.UUIDString():
                        continue  # foreign: never reported on
                    stats.append(libvirt_stats.domain_stats(dom, instance_uuid))
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
                    # Gone while we looked: nothing to count.
            return stats

        return self._call("reading the domains' statistics", read, retry=True)

    def host_usage(self) -> HostUsage | None:
        if self._node_stats_unsupported:
            return None

        def usage(conn: libvirt.virConnect) -> HostUsage | None:
            try:
                cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
                memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    self._node_stats_unsupported = True  # libvirt's test driver
                    return None
                raise
            busy = cpu.get("kernel", 0) + cpu.get("user", 0)
            total = busy + cpu.get("idle", 0) + cpu.get("iowait", 0)
            free = memory.get("free", 0) + memory.get("buffers", 0) + memory.get("cached", 0)
            return HostUsage(busy, total, max(0, memory.get("total", 0) - free) // 1024)

        return self._call("reading the host's CPU and memory use", usage, retry=True)

    def host_resources(self) -> HostResources:
        def resources(conn: libvirt.virConnect) -> HostResources:
            _model, memory_mb, cpus, *_ = conn.getInfo()
            if self._cpu_arch is None:
                caps = ET.fromstring(conn.getCapabilities())  # noqa: S314 - libvirt's own output
                self._cpu_arch = caps.findtext("./host/cpu/arch") or "unknown"
            return HostResources(
                vcpus=int(cpus),
                memory_mb=int(memory_mb),
                disk_gb=self._disk_gb(),
                hypervisor_type=conn.getType(),
                hypervisor_version=int(conn.getVersion()),
                cpu_arch=self._cpu_arch,
            )

        return self._call("reading host resources", resources, retry=True)

    # --- volumes ---------------------------------------------------------------------------------------

    def attach_volume(self, ref: InstanceRef, volume: VolumeConnection) -> None:
        disk = self._volume_disk(volume)

        def attach(conn: libvirt.virConnect) -> None:
            dom = self._lookup(conn, ref.instance_uuid)
            active = bool(dom.isActive())
            if not active and dom.hasManagedSaveImage(0):
                raise DriverError(f"instance {ref.instance_uuid} is suspended; resume it before attaching volumes")
            self._prepare_volume(conn, disk)
            flags = 0
            if active and volume_xml.find_volume_disk(dom.XMLDesc(0), volume.volume_id) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            inactive_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if dom.isPersistent() and volume_xml.find_volume_disk(inactive_xml, volume.volume_id) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if flags:
                dom.attachDeviceFlags(disk.xml, flags)

        self._call(f"attaching volume {volume.volume_id} to instance {ref.instance_uuid}", attach)

    def port_devices(self) -> set[str] | None:
        def read(conn: libvirt.virConnect) -> set[str]:
            devices: set[str] = set()
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                with contextlib.suppress(libvirt.libvirtError):  # gone meanwhile
                    devices.update(device for _mac, device in domain_xml.port_nics(dom.XMLDesc(0)))
            return devices

        return self._call("listing the guests' taps", read, retry=True)

    def announce(self, ref: InstanceRef) -> None:
        def announce(conn: libvirt.virConnect) -> None:
            if conn.getType() != "QEMU":
                return  # libvirt's test driver: no NICs on any wire
            dom = self._lookup(conn, ref.instance_uuid)
            if dom.isActive():
                libvirt_qemu.qemuMonitorCommand(dom, ANNOUNCE_SELF, 0)  # 0: a QMP command, in JSON

        self._call(f"announcing the NICs of instance {ref.instance_uuid}", announce)

    def attach_interface(self, ref: InstanceRef, nic: NicSpec) -> None:
        xml = domain_xml.port_interface_xml(nic)

        def attach(conn: libvirt.virConnect) -> None:
            dom = self._lookup(conn, ref.instance_uuid)
            active = bool(dom.isActive())
            if not active and dom.hasManagedSaveImage(0):
                raise DriverError(f"instance {ref.instance_uuid} is suspended; resume it before attaching interfaces")
            flags = 0
            if active and domain_xml.interface_xml_by_mac(dom.XMLDesc(0), nic.mac) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if dom.isPersistent() and domain_xml.interface_xml_by_mac(inactive, nic.mac) is None:
                flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if flags:
                dom.attachDeviceFlags(xml, flags)

        self._call(f"attaching port {nic.port_id} to instance {ref.instance_uuid}", attach)

    def detach_interface(self, ref: InstanceRef, nic: NicSpec) -> None:
        def detach(conn: libvirt.virConnect) -> None:
            try:
                dom = self._lookup(conn, ref.instance_uuid)
            except DomainNotFound:
                return
            if dom.isActive():
                found = domain_xml.interface_xml_by_mac(dom.XMLDesc(0), nic.mac)
                if found is not None:
                    dom.detachDeviceFlags(found, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if dom.isPersistent():
                found = domain_xml.interface_xml_by_mac(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), nic.mac)
                if found is not None:
                    dom.detachDeviceFlags(found, libvirt.VIR_DOMAIN_AFFECT_CONFIG)

        self._call(f"detaching port {nic.port_id} from instance {ref.instance_uuid}", detach)

    def detach_volume(self, ref: InstanceRef, volume: VolumeConnection) -> None:
        what = f"detaching volume {volume.volume_id} from instance {ref.instance_uuid}"

        def live_disk(conn: libvirt.virConnect) -> str | None:
            try:
                dom = self._lookup(conn, ref.instance_uuid)
            except DomainNotFound:
                return None
            return volume_xml.find_volume_disk(dom.XMLDesc(0), volume.volume_id) if dom.isActive() else None

        def unplug(conn: libvirt.virConnect) -> None:
            disk = live_disk(conn)
            if disk is None:
                return
            try:
                self._lookup(conn, ref.instance_uuid).detachDeviceFlags(disk, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError as exc:
                # Asked before and still on its way out, or gone meanwhile: keep waiting for it.
                if exc.get_error_code() not in (libvirt.VIR_ERR_OPERATION_FAILED, libvirt.VIR_ERR_OPERATION_INVALID):
                    raise

        # A running guest must let the disk go (an ACPI unplug it acknowledges); the request is repeated
        # now and then, since a guest that is busy booting may miss one.
        deadline = time.monotonic() + self.volume_detach_timeout
        next_request = 0.0
        while self._call(what, live_disk) is not None:
            now = time.monotonic()
            if now >= deadline:
                raise DriverError(
                    f"the guest of instance {ref.instance_uuid} did not release volume {volume.volume_id} "
                    f"within {self.volume_detach_timeout:.0f}s; it is still attached"
                )
            if now >= next_request:
                self._call(what, unplug)
                next_request = now + ACPI_RETRY_SECONDS
            time.sleep(self.poll_interval)

        def forget(conn: libvirt.virConnect) -> None:
            try:
                dom = self._lookup(conn, ref.instance_uuid)
            except DomainNotFound:
                return
            disk = volume_xml.find_volume_disk(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), volume.volume_id)
            if disk is not None and dom.isPersistent():
                dom.detachDeviceFlags(disk, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            undefine_secrets(conn, [volume_xml.iscsi_secret_usage(volume.volume_id)])

        self._call(what, forget)

    def _volume_disk(self, volume: VolumeConnection) -> volume_xml.VolumeDisk:
        """The volume's disk; a file volume's share is mounted first, and opened O_DIRECT when it can be."""
        disk = volume_xml.volume_disk(volume, nfs_mount_point_base=self.nfs_mount_point_base)
        if disk.nfs_mount_point is not None and disk.nfs_export is not None:
            self._mount_nfs(disk.nfs_export, disk.nfs_mount_point)
            if disk.local_path is not None and not disk.local_path.exists():
                raise DriverError(f"volume {volume.volume_id} is not on its share: {disk.local_path} does not exist")
            if not _supports_direct_io(disk.nfs_mount_point):
                disk = volume_xml.volume_disk(volume, nfs_mount_point_base=self.nfs_mount_point_base, direct_io=False)
        return disk

    def _mount_nfs(self, export: str, mount_point: Path) -> None:
        """Mount the share unless something is mounted there already (os-brick's rule, which Cinder's
        NFS driver on the same host relies on too)."""
        if _is_mounted(mount_point):
            return
        mount_point.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                # "--" ends mount's own options, but mount hands the export to mount.nfs as its first
                # argument, which mount.nfs parses again: volume_xml's check of the export's shape (no
                # leading '-') is what keeps it from becoming an option there.
                ["mount", "-t", "nfs", "--", export, str(mount_point)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"cannot mount the NFS share {export}: {exc}") from exc
        if done.returncode != 0:
            raise DriverError(f"cannot mount the NFS share {export} at {mount_point}: {done.stderr.strip()}")

    def _prepare_volume(self, conn: libvirt.virConnect, disk: volume_xml.VolumeDisk) -> None:
        """What must exist before QEMU opens the disk: the secret holding an iSCSI CHAP password."""
        if disk.iscsi_secret is None:
            return
        usage, _user, password = disk.iscsi_secret
        try:
            secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, usage)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                raise
            secret = conn.secretDefineXML(volume_xml.iscsi_secret_xml(usage))
        secret.setValue(password.encode())

    def _write_image_to_volume(
        self, device: VolumeConnection, disk: volume_xml.VolumeDisk, image_path: Path | None
    ) -> None:
        """A boot volume made from an image: the (cached, verified) image is converted onto it."""
        if image_path is None or device.image is None:
            raise DriverError(f"no image was fetched for volume {device.volume_id}")
        if disk.qemu_img_target is None and not disk.qemu_img_target_options:
            raise DriverError(
                f"volume {device.volume_id} is of a type this host cannot write an image onto", reschedulable=False
            )
        fmt = device.image.disk_format
        if fmt not in SUPPORTED_DISK_FORMATS:
            raise DriverError(f"image {device.image.id} has disk format {fmt!r}", reschedulable=False)
        info = self.qemu_img.checked_info(image_path, fmt, f"image {device.image.id}")
        virtual_size = int(info.get("virtual-size", 0))
        if disk.local_path is not None and disk.local_path.stat().st_size < virtual_size:
            raise DriverError(
                f"volume {device.volume_id} ({disk.local_path.stat().st_size / GIB:.1f} GiB) is smaller than "
                f"image {device.image.id} ({virtual_size / GIB:.1f} GiB)",
                reschedulable=False,
            )
        self.qemu_img.write_to_volume(
            image_path,
            fmt,
            target_format=volume_xml.disk_format(device),
            target_path=disk.qemu_img_target,
            target_options=disk.qemu_img_target_options,
            password=disk.iscsi_secret[2] if disk.iscsi_secret else None,
            timeout=self.snapshot_timeout,
        )

    # --- helpers ---------------------------------------------------------------------------------------

    def _vnc(self, dom: libvirt.virDomain) -> tuple[str | None, int | None]:
        if not dom.isActive():
            return None, None
        port = domain_xml.vnc_port(dom.XMLDesc(0))
        if port is None:
            return None, None
        return self.vnc_host, port

    def _shutdown_gracefully(self, dom: libvirt.virDomain) -> bool:
        """ACPI shutdown, repeated now and then, until the domain is off or the timeout passes."""
        deadline = time.monotonic() + self.shutdown_timeout
        next_request = 0.0
        while dom.isActive():
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_request:
                try:
                    dom.shutdown()
                except libvirt.libvirtError as exc:
                    if dom.isActive() and exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                        raise
                next_request = now + ACPI_RETRY_SECONDS
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0)))
        return True

    def _create_overlay(
        self,
        base: Path,
        disk: Path,
        image: ImageSpec,
        *,
        root_gb: int,
        flavor_name: str = "",
        never_shrink: bool = False,
    ) -> None:
        """A qcow2 overlay backed by the cached image, grown to ``root_gb`` (0: the image's size). A root
        disk smaller than the image is refused, or, with ``never_shrink`` (a migrated disk), ignored."""
        fmt = image.disk_format
        if fmt not in SUPPORTED_DISK_FORMATS:
            raise DriverError(
                f"image {image.id} has disk format {fmt!r}; supported: {', '.join(SUPPORTED_DISK_FORMATS)}",
                reschedulable=False,
            )
        # The image was uploaded by a user: one that names another file of the host (a backing file, an
        # external data file) is refused, as is a format other than declared (info fails).
        info = self.qemu_img.checked_cached_info(base, fmt, f"image {image.id}")
        virtual_size = int(info.get("virtual-size", 0))
        root_bytes = root_gb * GIB
        if root_bytes and root_bytes < virtual_size:
            if not never_shrink:
                raise DriverError(
                    f"flavor {flavor_name!r} has a {root_gb} GiB root disk, smaller than "
                    f"image {image.id} ({virtual_size / GIB:.1f} GiB)",
                    reschedulable=False,
                )
            log.info("image %s is larger than the new flavor's %d GiB root disk; its size is kept", image.id, root_gb)
            root_bytes = 0
        args = ["create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(base), str(disk)]
        if root_bytes:
            args.append(f"{root_gb}G")
        self.qemu_img.run(*args)

    def _disk_gb(self) -> int:
        path = private_dir(self.instances_dir)
        return shutil.disk_usage(path).total // GIB


def _instance_uuid_of(dom: libvirt.virDomain) -> str | None:
    """The instance uuid in the domain's cloud metadata, or None for a domain the cloud did not make."""
    try:
        element = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, INSTANCE_METADATA_NS, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
    try:
        root = ET.fromstring(element)  # noqa: S314 - libvirt's own output
    except ET.ParseError:
        return None
    # libvirt hands the element back without its namespace.
    text = root.findtext("uuid") or root.findtext(f"{{{INSTANCE_METADATA_NS}}}uuid")
    try:
        return canonical_uuid(text or "")
    except ValueError:
        return None


def _destroy_quietly(dom: libvirt.virDomain) -> None:
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        # It stopped on its own in the meantime.
        if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or dom.isActive():
            raise


def _is_mounted(path: Path) -> bool:
    """Whether something is mounted at ``path``, as /proc/mounts says (a bind mount of a directory on the
    same file system is one too, which ``os.path.ismount`` cannot tell)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 1 and _unescape_mount_path(fields[1]) == target:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape_mount_path(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _supports_direct_io(directory: Path) -> bool:
    """Whether files in ``directory`` can be opened O_DIRECT (tmpfs and some network file systems cannot)."""
    probe = directory / f".direct-io-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()
    return True


def _close_quietly(conn: libvirt.virConnect) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


def _message(exc: libvirt.libvirtError) -> str:
    return exc.get_error_message() or str(exc)
