"""An in-memory hypervisor that keeps the driver contract, for tests and for simulating many hosts.

What it models, and how a real driver is expected to behave:

- ``spawn`` makes ``<instances_dir>/<uuid>/disk`` (an empty file standing in for the overlay; only
  when an ``instances_dir`` is given), defines the domain and starts it. The VNC port is the next free
  one from 5900. With ``fail_spawn`` set, the domain is defined and its directory made *before* the
  error is raised, as a real failure half way would leave them: the caller must clean up.
- ``power_off`` is graceful unless the guest ignores ACPI (``ignore_acpi``); then, as after a real
  timeout, the domain is powered off hard. Either way it ends SHUTDOWN and loses its VNC port.
- ``reboot`` soft works the same way and always ends RUNNING; a stopped domain is simply started.
- ``destroy`` of an absent domain does nothing; foreign domains (``add_foreign_domain``) are listed
  but never touched.
- ``pause``/``unpause`` and ``suspend``/``resume`` keep the libvirt driver's rules: only a running guest
  pauses or suspends, a suspended one loses its VNC port and gets a new one when resumed, and asking
  twice does nothing the second time. ``snapshot`` copies the instance's disk file (or writes a few
  bytes when there is no instances directory) and records whether the guest was paused for it.
- ``console_log`` reads ``<instances_dir>/<uuid>/console.log`` as a QEMU's serial log would be, or what
  ``write_console`` put there. With ``boot_messages`` (the worker's fake hosts), a guest prints three
  lines there each time it boots, as a real guest's boot leaves its serial log non-empty.
- ``attach_volume``/``detach_volume`` keep ``volumes[instance_uuid]`` (volume id -> device); attaching
  twice or detaching what is not there does nothing. ``fail_attach``/``fail_detach`` make the next calls
  fail as a hypervisor would (a guest that does not release a disk, say). A build's ``block_devices`` are
  attached at spawn; one with ``boot_index`` 0 is the root disk, and no base image is needed then.
- The moves keep the libvirt driver's rules on the files: ``migrate_disk`` forgets the domain (kept in
  ``resizing``) and renames its directory ``<dir>_resize``; ``finish_migration`` spawns with the
  migration's marker in the new directory; ``confirm``/``revert``/``finish_revert_migration`` tell the old
  and the new guest apart by that marker. ``rescue`` keeps the domain as it was in ``rescued`` and boots
  it again from a ``disk.rescue`` file; ``unrescue`` brings the kept one back.
- Live migration moves a domain to another ``FakeDriver`` registered in ``peers`` under its migrate URI
  or its instances directory (the simulated hosts of one COMPUTE_HOSTS worker reach one another so).
  ``prepare_live_migration`` makes the instance directory (marked with the migration) for a block
  migration, or checks it exists without one. ``live_migrate`` reports progress and, while
  ``migration_gate`` (an Event) is not set, keeps running, so that a test can abort it
  (``abort_live_migration``), force it (``force_complete_live_migration`` sets the gate) or watch it;
  ``fail_live_migration`` makes it fail as QEMU would, leaving the guest where it was.
- ``diagnostics`` gives fixed, plausible figures: one vCPU, 512 MiB, one disk ``vda`` and the domain's
  NICs, in the libvirt driver's shapes.
- ``host_usage`` is whatever ``usage`` holds (None, as a hypervisor that cannot tell, until a test sets it).
- Every call is recorded in ``calls`` as ``(method, instance_uuid)``; ``events`` notes the fallbacks.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_tasks import rpc
from compute_tasks.config import canonical_uuid, instances_dir_entry
from compute_tasks.drivers.base import (
    LIVE_MIGRATION_MARKER,
    MIGRATION_MARKER,
    ComputeDriver,
    DiskCounters,
    DomainInventory,
    DomainNotFound,
    DomainStats,
    DriverError,
    HostResources,
    HostUsage,
    InvalidRequest,
    MigrationStats,
    NicCounters,
    SpawnResult,
    migration_of,
    nic_addresses,
    resize_dir,
)
from compute_tasks.drivers.fake_screen import FakeScreens
from compute_tasks.private_files import create_private_file, open_private, private_dir, private_file
from compute_tasks.rpc import BuildRequest, ImageSpec, InstanceRef, NicSpec, VolumeConnection


def empty_qcow2(virtual_size: int = 1024**3) -> bytes:
    """The header of an empty qcow2 (version 2, no backing file): what an image store accepts as a disk."""
    # magic, version, backing file offset and size, cluster bits, size, encryption, L1 size and offset,
    # refcount table offset and clusters, snapshots and their offset.
    return struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", 2, 0, 0, 16, virtual_size, 0, 0, 0, 0, 0, 0, 0)


@dataclass
class FakeDomain:
    name: str
    power_state: int
    vnc_port: int | None = None
    boots: int = 0
    flavor: str = ""
    nics: list[NicSpec] = field(default_factory=list)
    migration_id: int | None = None
    root_volume: bool = False
    rescue_image: str | None = None  # the rescue image it boots from, while in rescue


class FakeDriver(ComputeDriver):
    def __init__(
        self,
        *,
        instances_dir: Path | None = None,
        vnc_host: str = "127.0.0.1",
        resources: HostResources | None = None,
        boot_messages: bool = False,
        screens: bool = False,
    ) -> None:
        self.instances_dir = instances_dir
        # Real VNC servers (a blank screen each) behind the guests' consoles, or only port numbers.
        self.screens = FakeScreens(vnc_host) if screens else None
        self.boot_messages = boot_messages
        self.vnc_host = vnc_host
        self.resources = resources or HostResources(
            vcpus=8,
            memory_mb=16384,
            disk_gb=200,
            hypervisor_type="FAKE",
            hypervisor_version=1000000,
            cpu_arch="x86_64",
        )
        self.usage: HostUsage | None = None
        self.domains: dict[str, FakeDomain] = {}
        self.foreign: dict[str, int] = {}
        self.fail_spawn: Exception | None = None
        self.ignore_acpi = False
        self.calls: list[tuple[str, str]] = []
        self.console_logs: dict[str, bytes] = {}
        self.events: list[tuple[str, str]] = []
        self.volumes: dict[str, dict[str, str]] = {}  # instance uuid -> {volume id: device}
        self.fail_attach: Exception | None = None
        self.fail_detach: Exception | None = None
        self.resizing: dict[str, FakeDomain] = {}  # instance uuid -> the old guest, while a move is open
        self.rescued: dict[str, FakeDomain] = {}  # instance uuid -> the guest as it was before its rescue
        self.peers: dict[str, FakeDriver] = {}  # migrate URI -> the host a live migration reaches there
        self.migration_gate: threading.Event | None = None
        self.fail_live_migration: Exception | None = None
        self.migration_jobs: dict[str, threading.Event] = {}  # instance uuid -> set to abort its migration
        self.completed_migrations: dict[str, MigrationStats] = {}  # arrived guests' final figures, as libvirt's
        self._ports = itertools.count(5900)
        self._lock = threading.RLock()

    # --- test controls ---------------------------------------------------------------------------------

    def add_foreign_domain(self, name: str, power_state: int = rpc.RUNNING) -> None:
        with self._lock:
            self.foreign[name] = power_state

    def crash(self, instance_uuid: str) -> None:
        """The guest died on its own, as a heartbeat would then see it."""
        with self._lock:
            domain = self._get(instance_uuid)
            domain.power_state, domain.vnc_port = rpc.CRASHED, None

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
        instance_uuid = canonical_uuid(request.instance_uuid)
        with self._lock:
            self.calls.append(("spawn" if migration_id is None else "finish_migration", instance_uuid))
            if instance_uuid in self.domains:
                raise DriverError(f"instance {instance_uuid} already has a domain on this host")
            root_volume = any(device.boot_index == 0 for device in request.block_devices)
            if not root_volume and (base_image_path is None or not Path(base_image_path).is_file()):
                raise DriverError(f"base image {base_image_path} does not exist")
            for device in request.block_devices:
                if device.image is not None and not Path((volume_images or {}).get(device.volume_id, "")).is_file():
                    raise DriverError(f"no image was fetched for volume {device.volume_id}")
            if self.instances_dir is not None:
                instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
                shutil.rmtree(instance_dir, ignore_errors=True)
                # Private, as the libvirt driver makes them.
                private_dir(instance_dir)
                create_private_file(instance_dir / "disk")
                if migration_id is not None:
                    with open_private(instance_dir / MIGRATION_MARKER, "w") as marker:
                        marker.write(str(migration_id))
            domain = FakeDomain(
                name=request.domain_name,
                power_state=rpc.SHUTDOWN,
                flavor=request.flavor.name,
                nics=list(request.nics),
                migration_id=migration_id,
                root_volume=root_volume,
            )
            self.domains[instance_uuid] = domain
            self.volumes[instance_uuid] = {device.volume_id: device.device for device in request.block_devices}
            if self.fail_spawn is not None:
                raise self.fail_spawn
            if power_on:
                self._boot(domain)
            return SpawnResult(
                power_state=domain.power_state,
                vnc_host=self.vnc_host,
                vnc_port=domain.vnc_port,
                addresses=nic_addresses(request.nics),
            )

    def power_on(self, ref: InstanceRef) -> int:
        with self._lock:
            domain = self._record_and_get("power_on", ref)
            if domain.power_state != rpc.RUNNING:
                self._boot(domain)
            return domain.power_state

    def power_off(self, ref: InstanceRef) -> int:
        with self._lock:
            domain = self._record_and_get("power_off", ref)
            if domain.power_state == rpc.RUNNING and self.ignore_acpi:
                self.events.append(("power_off_forced", ref.instance_uuid))
            domain.power_state, domain.vnc_port = rpc.SHUTDOWN, None
            return domain.power_state

    def reboot(self, ref: InstanceRef, *, hard: bool) -> int:
        with self._lock:
            domain = self._record_and_get("reboot_hard" if hard else "reboot_soft", ref)
            if domain.power_state == rpc.RUNNING and not hard and self.ignore_acpi:
                self.events.append(("reboot_forced", ref.instance_uuid))
            self._boot(domain)
            return domain.power_state

    def pause(self, ref: InstanceRef) -> int:
        with self._lock:
            domain = self._record_and_get("pause", ref)
            if domain.power_state not in (rpc.RUNNING, rpc.PAUSED):
                raise DriverError(f"instance {ref.instance_uuid} is not running, so it cannot be paused")
            domain.power_state = rpc.PAUSED
            return domain.power_state

    def unpause(self, ref: InstanceRef) -> int:
        with self._lock:
            domain = self._record_and_get("unpause", ref)
            if domain.power_state not in (rpc.RUNNING, rpc.PAUSED):
                raise DriverError(f"instance {ref.instance_uuid} is not paused, so it cannot be unpaused")
            domain.power_state = rpc.RUNNING
            return domain.power_state

    def suspend(self, ref: InstanceRef) -> int:
        with self._lock:
            domain = self._record_and_get("suspend", ref)
            if domain.power_state not in (rpc.RUNNING, rpc.PAUSED, rpc.SUSPENDED):
                raise DriverError(f"instance {ref.instance_uuid} is shut off, so it cannot be suspended")
            domain.power_state, domain.vnc_port = rpc.SUSPENDED, None
            return domain.power_state

    def resume(self, ref: InstanceRef) -> int:
        with self._lock:
            domain = self._record_and_get("resume", ref)
            if domain.power_state == rpc.SUSPENDED:
                domain.power_state, domain.vnc_port = rpc.RUNNING, self._screen_port(domain.name)
            elif domain.power_state == rpc.PAUSED:
                domain.power_state = rpc.RUNNING
            elif domain.power_state != rpc.RUNNING:
                raise DriverError(f"instance {ref.instance_uuid} has no saved memory to resume from")
            return domain.power_state

    def snapshot(self, ref: InstanceRef, target: Path, *, disk_format: str = "qcow2") -> int:
        with self._lock:
            domain = self._record_and_get("snapshot", ref)
            if domain.power_state == rpc.RUNNING:
                self.events.append(("paused_for_snapshot", canonical_uuid(ref.instance_uuid)))
            disk = self._instance_file(ref, "disk")
            data = disk.read_bytes() if disk is not None and disk.is_file() else b""
            Path(target).write_bytes(data or empty_qcow2())
            private_file(target)
            return domain.power_state

    def console_log(self, ref: InstanceRef, max_bytes: int) -> bytes:
        with self._lock:
            self._record_and_get("console_log", ref)
            log = self._instance_file(ref, "console.log")
            data = self.console_logs.get(canonical_uuid(ref.instance_uuid), b"")
            if log is not None and log.is_file():
                # The serial log the host made for the guest (empty at first), then what the guest printed.
                data = log.read_bytes() + data
            return data[-max_bytes:] if max_bytes else b""

    def write_console(self, instance_uuid: str, data: bytes) -> None:
        """What the guest printed on its serial port, for ``console_log``."""
        with self._lock:
            key = canonical_uuid(instance_uuid)
            self.console_logs[key] = self.console_logs.get(key, b"") + data

    def attach_volume(self, ref: InstanceRef, volume: VolumeConnection) -> None:
        with self._lock:
            self._record_and_get("attach_volume", ref)
            if self.fail_attach is not None:
                raise self.fail_attach
            self.volumes.setdefault(canonical_uuid(ref.instance_uuid), {})[volume.volume_id] = volume.device

    def announce(self, ref: InstanceRef) -> None:
        with self._lock:
            self._record_and_get("announce", ref)

    def attach_interface(self, ref: InstanceRef, nic: NicSpec) -> None:
        with self._lock:
            domain = self._record_and_get("attach_interface", ref)
            if all(existing.mac != nic.mac for existing in domain.nics):
                domain.nics.append(nic)

    def detach_interface(self, ref: InstanceRef, nic: NicSpec) -> None:
        with self._lock:
            instance_uuid = canonical_uuid(ref.instance_uuid)
            self.calls.append(("detach_interface", instance_uuid))
            domain = self.domains.get(instance_uuid)
            if domain is not None:
                domain.nics[:] = [existing for existing in domain.nics if existing.mac != nic.mac]

    def detach_volume(self, ref: InstanceRef, volume: VolumeConnection) -> None:
        with self._lock:
            instance_uuid = canonical_uuid(ref.instance_uuid)
            self.calls.append(("detach_volume", instance_uuid))
            if instance_uuid not in self.domains:
                return
            if self.fail_detach is not None:
                raise self.fail_detach
            self.volumes.get(instance_uuid, {}).pop(volume.volume_id, None)

    def destroy(self, ref: InstanceRef) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self.calls.append(("destroy", instance_uuid))
            self.domains.pop(instance_uuid, None)
            self.volumes.pop(instance_uuid, None)
            self._close_screens_of_the_gone()
            self.rescued.pop(instance_uuid, None)
            if self.instances_dir is not None:
                shutil.rmtree(instances_dir_entry(self.instances_dir, instance_uuid), ignore_errors=True)

    def power_state(self, ref: InstanceRef) -> int:
        with self._lock:
            return self._get(ref.instance_uuid).power_state

    def diagnostics(self, ref: InstanceRef) -> dict[str, Any]:
        with self._lock:
            self._record_and_get("diagnostics", ref)
            domain = self._get(ref.instance_uuid)
            nics = [
                {
                    "mac_address": nic.mac,
                    "rx_octets": 2070139,
                    "rx_errors": 0,
                    "rx_drop": 0,
                    "rx_packets": 26701,
                    "rx_rate": None,
                    "tx_octets": 140208,
                    "tx_errors": 0,
                    "tx_drop": 0,
                    "tx_packets": 662,
                    "tx_rate": None,
                }
                for nic in domain.nics
            ]
            disk = {
                "read_bytes": 262144,
                "read_requests": 112,
                "write_bytes": 5778432,
                "write_requests": 488,
                "errors_count": -1,
            }
            legacy: dict[str, Any] = {"cpu0_time": 17300000000, "memory": 524288}
            legacy.update({f"vda_{k}": v for k, v in (("read", 262144), ("read_req", 112), ("write", 5778432))})
            legacy.update({"vda_write_req": 488, "vda_errors": -1})
            for n, nic in enumerate(nics):
                legacy.update({f"tap{n}_rx": nic["rx_octets"], f"tap{n}_tx": nic["tx_octets"]})
            return {
                "state": "running" if domain.power_state == rpc.RUNNING else "shutdown",
                # The compute API's ``driver`` is one of Nova's driver names: the fake stands in for the
                # libvirt driver, whose shapes it keeps (as Nova's own fake driver reports "libvirt").
                "driver": "libvirt",
                "hypervisor": "qemu",
                "hypervisor_os": "linux",
                "num_cpus": 1,
                "num_disks": 1,
                "num_nics": len(nics),
                "cpu_details": [{"id": 0, "time": 17300000000, "utilisation": None}],
                "memory_details": {"maximum": 512, "used": 256},
                "disk_details": [disk],
                "nic_details": nics,
                "legacy": legacy,
            }

    def addresses(self, ref: InstanceRef) -> list[dict[str, Any]] | None:
        with self._lock:
            return nic_addresses(self._get(ref.instance_uuid).nics)

    # --- moving servers --------------------------------------------------------------------------------

    def migrate_disk(self, ref: InstanceRef, target: Path, *, disk_format: str = "qcow2") -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self.calls.append(("migrate_disk", instance_uuid))
            if instance_uuid not in self.resizing:
                domain = self._get(instance_uuid)
                if domain.root_volume:
                    raise InvalidRequest(f"instance {instance_uuid} has no local disk to migrate")
                if domain.power_state == rpc.RUNNING and self.ignore_acpi:
                    self.events.append(("power_off_forced", instance_uuid))
                domain.power_state, domain.vnc_port = rpc.SHUTDOWN, None
                self.resizing[instance_uuid] = self.domains.pop(instance_uuid)
                if self.instances_dir is not None:
                    instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
                    if instance_dir.exists():
                        os.rename(instance_dir, resize_dir(instance_dir))
            disk = None
            if self.instances_dir is not None:
                disk = resize_dir(instances_dir_entry(self.instances_dir, instance_uuid)) / "disk"
            data = disk.read_bytes() if disk is not None and disk.is_file() else b""
            Path(target).write_bytes(data or empty_qcow2())
            private_file(target)

    def finish_migration(
        self, request: BuildRequest, disk_image_path: Path, *, migration_id: int, power_on: bool = True
    ) -> SpawnResult:
        return self._spawn(request, disk_image_path, power_on=power_on, migration_id=migration_id)

    def confirm_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self.calls.append(("confirm_migration", instance_uuid))
            live = self.domains.get(instance_uuid)
            if instance_uuid in self.resizing and live is not None and live.migration_id != migration_id:
                del self.domains[instance_uuid]  # a definition of the old guest, left behind
            self.resizing.pop(instance_uuid, None)
            if self.instances_dir is not None:
                shutil.rmtree(resize_dir(instances_dir_entry(self.instances_dir, instance_uuid)), ignore_errors=True)

    def revert_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self.calls.append(("revert_migration", instance_uuid))
            live = self.domains.get(instance_uuid)
            if live is not None and live.migration_id != migration_id:
                return  # the old guest, back already
            self.domains.pop(instance_uuid, None)
            self.volumes.pop(instance_uuid, None)
            if self.instances_dir is not None:
                instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
                if live is not None or migration_of(instance_dir) == migration_id:
                    shutil.rmtree(instance_dir, ignore_errors=True)

    def finish_revert_migration(self, ref: InstanceRef, *, migration_id: int, power_on: bool) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self.calls.append(("finish_revert_migration", instance_uuid))
            if instance_uuid in self.resizing:
                live = self.domains.get(instance_uuid)
                if live is not None and live.migration_id == migration_id:
                    raise DriverError(
                        f"the guest migration {migration_id} made of instance {instance_uuid} is still here"
                    )
                if self.instances_dir is not None:
                    instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
                    shutil.rmtree(instance_dir, ignore_errors=True)
                    if resize_dir(instance_dir).exists():
                        os.rename(resize_dir(instance_dir), instance_dir)
                self.domains[instance_uuid] = self.resizing.pop(instance_uuid)
            domain = self._get(instance_uuid)
            if power_on and domain.power_state != rpc.RUNNING:
                self._boot(domain)
            return domain.power_state

    # --- live migration --------------------------------------------------------------------------------

    def prepare_live_migration(
        self, request: BuildRequest, base_image_path: Path | None, *, migration_id: int, block_migration: bool
    ) -> None:
        instance_uuid = canonical_uuid(request.instance_uuid)
        with self._lock:
            self.calls.append(("prepare_live_migration", instance_uuid))
            if instance_uuid in self.domains:
                raise DriverError(f"instance {instance_uuid} already has a domain on this host")
            if self.instances_dir is None:
                return
            instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
            if not block_migration:
                if not instance_dir.is_dir():
                    raise DriverError(f"the directory of instance {instance_uuid} is not on this host")
                return
            if instance_dir.exists() and _marker(instance_dir, LIVE_MIGRATION_MARKER) != migration_id:
                raise DriverError(f"instance {instance_uuid} has a directory on this host already")
            shutil.rmtree(instance_dir, ignore_errors=True)
            try:
                private_dir(instance_dir)
                with open_private(instance_dir / LIVE_MIGRATION_MARKER, "w") as marker:
                    marker.write(str(migration_id))
                if request.image is not None:
                    if base_image_path is None or not Path(base_image_path).is_file():
                        raise DriverError(f"base image {base_image_path} does not exist")
                    create_private_file(instance_dir / "disk")
                if self.fail_spawn is not None:
                    raise self.fail_spawn
            except Exception:
                shutil.rmtree(instance_dir, ignore_errors=True)
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
        with self._lock:
            self.calls.append(("live_migrate", instance_uuid))
            domain = self.domains.get(instance_uuid)
            if domain is None:
                self._remove_migrated_dir(instance_uuid, block_migration)
                return
            # As libvirt migrates any active domain: a paused guest moves too, and stays paused.
            if domain.power_state not in (rpc.RUNNING, rpc.PAUSED):
                raise DriverError(f"instance {instance_uuid} is not running", reschedulable=False)
            abort = self.migration_jobs.setdefault(instance_uuid, threading.Event())
        try:
            step = 0
            while self.migration_gate is not None and not self.migration_gate.is_set():
                if abort.is_set():
                    raise DriverError(f"the live migration of instance {instance_uuid} was cancelled")
                step += 1
                on_progress(MigrationStats(memory_total=1000, memory_processed=step, memory_remaining=1000 - step))
                time.sleep(0.05)
            if abort.is_set():
                raise DriverError(f"the live migration of instance {instance_uuid} was cancelled")
            if self.fail_live_migration is not None:
                raise self.fail_live_migration
            final = MigrationStats(memory_total=1000, memory_processed=1000)
            on_progress(final)
            with self._lock:
                peer = self.peers.get(dest_uri) or self.peers.get(str(dest_instances_dir))
                if peer is None:
                    raise DriverError(f"cannot connect to {dest_uri}")
                moved = self.domains.pop(instance_uuid)
                peer.receive(instance_uuid, moved, self.volumes.pop(instance_uuid, {}), final)
                self._remove_migrated_dir(instance_uuid, block_migration)
        finally:
            with self._lock:
                self.migration_jobs.pop(instance_uuid, None)

    def receive(self, instance_uuid: str, domain: FakeDomain, volumes: dict[str, str], stats: MigrationStats) -> None:
        """A guest arriving by live migration: it runs on, with a VNC port of this host."""
        with self._lock:
            self.domains[instance_uuid] = dataclasses.replace(domain, vnc_port=self._screen_port(domain.name))
            self.volumes[instance_uuid] = dict(volumes)
            self.completed_migrations[instance_uuid] = stats

    def completed_live_migration(self, ref: InstanceRef) -> MigrationStats | None:
        with self._lock:
            return self.completed_migrations.get(canonical_uuid(ref.instance_uuid))

    def _remove_migrated_dir(self, instance_uuid: str, block_migration: bool) -> None:
        if block_migration and self.instances_dir is not None:
            shutil.rmtree(instances_dir_entry(self.instances_dir, instance_uuid), ignore_errors=True)

    def abort_live_migration(self, ref: InstanceRef) -> bool:
        with self._lock:
            self.calls.append(("abort_live_migration", canonical_uuid(ref.instance_uuid)))
            job = self.migration_jobs.get(canonical_uuid(ref.instance_uuid))
            if job is None:
                return False
            job.set()
            return True

    def force_complete_live_migration(self, ref: InstanceRef) -> str:
        with self._lock:
            self.calls.append(("force_complete_live_migration", canonical_uuid(ref.instance_uuid)))
            if canonical_uuid(ref.instance_uuid) not in self.migration_jobs:
                raise DriverError(f"no migration of instance {ref.instance_uuid} is running")
            if self.migration_gate is not None:
                self.migration_gate.set()
            return "post-copy"

    def post_live_migration(self, ref: InstanceRef, *, migration_id: int) -> int:
        with self._lock:
            domain = self._record_and_get("post_live_migration", ref)
            if domain.power_state != rpc.RUNNING:
                raise DriverError(f"the guest of instance {ref.instance_uuid} does not run here after its migration")
            marker = self._instance_file(ref, LIVE_MIGRATION_MARKER)
            if marker is not None and _marker(marker.parent, LIVE_MIGRATION_MARKER) == migration_id:
                marker.unlink()
            return domain.power_state

    def rollback_live_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self.calls.append(("rollback_live_migration", instance_uuid))
            domain = self.domains.get(instance_uuid)
            if domain is not None:
                if domain.power_state in (rpc.RUNNING, rpc.PAUSED):
                    raise DriverError(f"the guest of instance {instance_uuid} runs on this host; left alone")
                del self.domains[instance_uuid]
            if self.instances_dir is not None:
                instance_dir = instances_dir_entry(self.instances_dir, instance_uuid)
                if _marker(instance_dir, LIVE_MIGRATION_MARKER) == migration_id:
                    shutil.rmtree(instance_dir, ignore_errors=True)

    # --- rescue ----------------------------------------------------------------------------------------

    def rescue(self, ref: InstanceRef, rescue_image: ImageSpec, rescue_image_path: Path) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            domain = self._record_and_get("rescue", ref)
            if not Path(rescue_image_path).is_file():
                raise DriverError(f"rescue image {rescue_image_path} does not exist")
            if instance_uuid not in self.rescued:
                if domain.root_volume:
                    raise InvalidRequest(f"instance {instance_uuid} has no local disk to rescue")
                self.rescued[instance_uuid] = dataclasses.replace(domain, power_state=rpc.SHUTDOWN, vnc_port=None)
                domain.power_state, domain.vnc_port = rpc.SHUTDOWN, None
                rescue_disk = self._instance_file(ref, "disk.rescue")
                if rescue_disk is not None:
                    create_private_file(rescue_disk)
            domain.rescue_image = rescue_image.id
            if domain.power_state != rpc.RUNNING:
                self._boot(domain)
            return domain.power_state

    def unrescue(self, ref: InstanceRef) -> int:
        instance_uuid = canonical_uuid(ref.instance_uuid)
        with self._lock:
            self._record_and_get("unrescue", ref)
            kept = self.rescued.pop(instance_uuid, None)
            if kept is not None:
                self.domains[instance_uuid] = kept
                rescue_disk = self._instance_file(ref, "disk.rescue")
                if rescue_disk is not None:
                    rescue_disk.unlink(missing_ok=True)
            domain = self._get(instance_uuid)
            if domain.power_state != rpc.RUNNING:
                self._boot(domain)
            return domain.power_state

    def vnc_address(self, ref: InstanceRef) -> tuple[str | None, int | None]:
        with self._lock:
            domain = self._get(ref.instance_uuid)
            if domain.vnc_port is None:
                self._close_screens_of_the_gone()
                return None, None
            return self.vnc_host, domain.vnc_port

    def _screen_port(self, domain_name: str) -> int:
        """The VNC port of a guest that starts: its screen's (opened now), or only a number."""
        return self.screens.port_for(domain_name) if self.screens is not None else next(self._ports)

    def _close_screens_of_the_gone(self) -> None:
        """The screens of guests that no longer run (stopped, gone, moved away) close."""
        if self.screens is not None:
            showing = {domain.name for domain in self.domains.values() if domain.vnc_port is not None}
            for name in self.screens.open_for() - showing:
                self.screens.close(name)

    def list_domains(self) -> DomainInventory:
        with self._lock:
            self._close_screens_of_the_gone()
            return DomainInventory(
                instances={uuid: domain.power_state for uuid, domain in self.domains.items()},
                foreign=sorted(self.foreign),
            )

    def domain_stats(self) -> list[DomainStats]:
        """Fixed counters for every running domain (the numbers its diagnostics show), one tap per NIC."""
        with self._lock:
            return [
                DomainStats(
                    instance_uuid=uuid,
                    vcpus=1,
                    cpu_time_ns=17300000000,
                    memory_maximum_kib=524288,
                    memory_actual_kib=524288,
                    memory_used_kib=262144,
                    disks=(DiskCounters("vda", 262144, 112, 5778432, 488),),
                    nics=tuple(
                        NicCounters(nic.mac, f"tap{n}", 2070139, 26701, 0, 0, 140208, 662, 0, 0)
                        for n, nic in enumerate(domain.nics)
                    ),
                )
                for uuid, domain in sorted(self.domains.items())
                if domain.power_state == rpc.RUNNING
            ]

    def host_resources(self) -> HostResources:
        return self.resources

    def host_usage(self) -> HostUsage | None:
        return self.usage

    # --- helpers ---------------------------------------------------------------------------------------

    def _boot(self, domain: FakeDomain) -> None:
        domain.power_state = rpc.RUNNING
        domain.vnc_port = self._screen_port(domain.name)
        domain.boots += 1
        if self.boot_messages:
            for instance_uuid, known in self.domains.items():
                if known is domain:
                    lines = (
                        f"fake driver: boot {domain.boots} of {domain.name} on a simulated host\n"
                        f"{domain.name}: simulated guest running\n"
                        f"{domain.name} login: \n"
                    )
                    self.console_logs[instance_uuid] = self.console_logs.get(instance_uuid, b"") + lines.encode()

    def _instance_file(self, ref: InstanceRef, name: str) -> Path | None:
        if self.instances_dir is None:
            return None
        return instances_dir_entry(self.instances_dir, ref.instance_uuid) / name

    def _get(self, instance_uuid: str) -> FakeDomain:
        instance_uuid = canonical_uuid(instance_uuid)
        try:
            return self.domains[instance_uuid]
        except KeyError:
            raise DomainNotFound(instance_uuid) from None

    def _record_and_get(self, method: str, ref: InstanceRef) -> FakeDomain:
        self.calls.append((method, canonical_uuid(ref.instance_uuid)))
        return self._get(ref.instance_uuid)


def _marker(instance_dir: Path, name: str) -> int | None:
    try:
        return int((instance_dir / name).read_text().strip())
    except (OSError, ValueError):
        return None
