"""The interface between the compute manager and a hypervisor.

A driver sees only dataclasses: the rpc messages (``BuildRequest``, ``InstanceRef``) and the small
result types below. It never reports anything itself; the manager turns its results and exceptions into
messages for the conductor.

Rules every driver keeps:

- An instance is found by its uuid, never by its name. Domains the cloud creates carry the instance
  uuid as their hypervisor uuid *and* a metadata element in ``INSTANCE_METADATA_NS``; anything without
  that element is foreign and is never touched, only reported.
- Every method may be called again with the same arguments (tasks are delivered at least once):
  ``power_on`` of a running domain, ``power_off`` of a stopped one and ``destroy`` of an absent one
  succeed without doing anything.
- Methods that act on one instance raise ``DomainNotFound`` when it does not exist (except ``destroy``),
  and ``DriverError`` for everything else, with a message an operator can read.
"""

from __future__ import annotations

import abc
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_tasks.rpc import BuildRequest, ImageSpec, InstanceRef, NicSpec, VolumeConnection

INSTANCE_METADATA_NS = "http://cloud.invalid/xmlns/compute/instance/1.0"
INSTANCE_METADATA_PREFIX = "cloud"

# Moving a server (resize, cold migration) keeps the source's instance directory under this suffix until
# the move is confirmed or reverted, so that the destination may be the same host.
RESIZE_SUFFIX = "_resize"
# In the directory of an instance made by a finish_migration: the id of that migration. It tells the
# guest a migration made from the one it replaced when both live on one host.
MIGRATION_MARKER = "migration"


def resize_dir(instance_dir: Path) -> Path:
    return instance_dir.with_name(instance_dir.name + RESIZE_SUFFIX)


def migration_of(instance_dir: Path) -> int | None:
    """The migration that made the instance in ``instance_dir``, or None (a build, or no directory)."""
    try:
        return int((instance_dir / MIGRATION_MARKER).read_text().strip())
    except (OSError, ValueError):
        return None


# In an instance directory a live migration's prepare made on the destination: the migration's id. It tells
# a rollback what it may remove; the step after the migration (post) removes it.
LIVE_MIGRATION_MARKER = "live-migration"


# The address QEMU's user-mode network hands to the first guest interface on it.
USER_NETWORK_GUEST_ADDRESS = "10.0.2.15"


class DriverError(Exception):
    """The hypervisor could not do what was asked.

    ``reschedulable`` says whether another host might succeed where this one failed: a libvirt error
    might not recur elsewhere, a request the hypervisor can never satisfy (flavor disk smaller than the
    image, an invalid name) would.
    """

    def __init__(self, message: str, *, reschedulable: bool = True) -> None:
        super().__init__(message)
        self.reschedulable = reschedulable


class InvalidRequest(DriverError):
    """The request can never be satisfied, on this host or any other."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reschedulable=False)


class DomainNotFound(DriverError):
    def __init__(self, instance_uuid: str) -> None:
        super().__init__(f"instance {instance_uuid} has no domain on this host", reschedulable=False)
        self.instance_uuid = instance_uuid


@dataclass(frozen=True)
class SpawnResult:
    power_state: int
    vnc_host: str | None
    vnc_port: int | None
    addresses: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class HostResources:
    vcpus: int
    memory_mb: int
    disk_gb: int
    hypervisor_type: str
    hypervisor_version: int
    cpu_arch: str


@dataclass(frozen=True)
class HostUsage:
    """What the host's CPUs and memory are doing: CPU time since boot in nanoseconds, busy and all (busy
    over all between two readings is the use), and the memory in use less buffers and page cache, MiB."""

    cpu_busy_ns: int
    cpu_total_ns: int
    memory_used_mb: int


@dataclass(frozen=True)
class DomainInventory:
    """Every domain on the host: the cloud's by instance uuid, and the names of the others."""

    instances: dict[str, int] = field(default_factory=dict)  # instance uuid -> power state
    foreign: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MigrationStats:
    """How far a live migration is (bytes), from its migration job."""

    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0


@dataclass(frozen=True)
class DiskCounters:
    """One disk's I/O since its guest started: bytes and requests read and written."""

    device: str  # the guest's name for it: vda, hdd, ...
    read_bytes: int
    read_requests: int
    write_bytes: int
    write_requests: int
    errors: int = -1  # -1: the hypervisor does not count them


@dataclass(frozen=True)
class NicCounters:
    """One NIC's traffic since its guest started, from the guest's side as libvirt reports a tap's (rx: what
    the guest received). ``device`` is the host-side device (a user-mode NIC has none, and no counters)."""

    mac: str
    device: str | None
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_drop: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_drop: int


@dataclass(frozen=True)
class DomainStats:
    """What the hypervisor counts for one running guest of the cloud: CPU time, memory as its balloon
    reports it (KiB: ``used`` is what the guest uses of ``actual``), and every disk's and NIC's counters."""

    instance_uuid: str
    vcpus: int
    cpu_time_ns: int
    memory_maximum_kib: int
    memory_actual_kib: int
    memory_used_kib: int
    disks: tuple[DiskCounters, ...] = ()
    nics: tuple[NicCounters, ...] = ()
    # What the guest itself counts as its usable memory (the balloon driver's ``available``); None when
    # the guest does not report it.
    memory_available_kib: int | None = None


class ComputeDriver(abc.ABC):
    @abc.abstractmethod
    def spawn(
        self,
        request: BuildRequest,
        base_image_path: Path | None,
        *,
        power_on: bool = True,
        volume_images: Mapping[str, Path] | None = None,
    ) -> SpawnResult:
        """Create the instance's disk on top of the cached base image, define the domain and start it
        (or only define it, when ``power_on`` is False: a rebuilt server that was stopped).

        On failure the driver raises and may leave a partly made instance behind; the caller removes it
        with ``destroy``. A leftover instance directory without a domain (a build that died half way) is
        replaced.
        """

    # --- volumes ---------------------------------------------------------------------------------------
    #
    # ``request.block_devices`` of a build are Cinder volumes to plug in before the first start; the one
    # with ``boot_index`` 0 is the root disk instead of an overlay (``base_image_path`` is then None),
    # and one with an ``image`` gets that image written onto it first, from ``volume_images[volume_id]``.

    def attach_volume(self, ref: InstanceRef, volume: VolumeConnection) -> None:
        """Plug ``volume`` in as ``volume.device``: hot-plugged into a running guest, and in the domain's
        definition so that it stays across stops. A volume already attached is left as it is."""
        raise DriverError("this hypervisor driver cannot attach volumes", reschedulable=False)

    def detach_volume(self, ref: InstanceRef, volume: VolumeConnection) -> None:
        """Unplug ``volume`` (a running guest must release it, within the driver's timeout) and remove it
        from the definition. A volume that is not attached, or an instance without a domain, is done."""
        raise DriverError("this hypervisor driver cannot detach volumes", reschedulable=False)

    # --- interfaces ------------------------------------------------------------------------------------

    def port_devices(self) -> set[str] | None:
        """The host-side devices (taps) of the port NICs of the guests running here; None when the driver
        cannot tell (then any tap of a planned port is taken to be this host's)."""
        return None

    def announce(self, ref: InstanceRef) -> None:
        """Have a running guest's NICs announce their MACs (as after a migration), so that the switches
        beyond learn which host it is on now. Nothing to do for a driver whose guests have no NICs."""
        return None

    def attach_interface(self, ref: InstanceRef, nic: NicSpec) -> None:
        """Plug a port's NIC in: hot-plugged into a running guest, and in the definition so that it stays
        across stops. A NIC with that MAC already there is left as it is."""
        raise DriverError("this hypervisor driver cannot attach interfaces", reschedulable=False)

    def detach_interface(self, ref: InstanceRef, nic: NicSpec) -> None:
        """Unplug the NIC with ``nic.mac`` from the guest and its definition; one not there is done."""
        raise DriverError("this hypervisor driver cannot detach interfaces", reschedulable=False)

    # --- moving servers --------------------------------------------------------------------------------
    #
    # Resize and cold migration: ``migrate_disk`` on the source, ``finish_migration`` on the destination,
    # then ``confirm_migration`` on the source, or ``revert_migration`` on the destination followed by
    # ``finish_revert_migration`` on the source. The source and the destination may be one host: the
    # source's directory waits as ``<dir>_resize`` (``resize_dir``) and the new guest's directory carries
    # the migration's id (``MIGRATION_MARKER``), which is how each step tells the two guests apart.

    def migrate_disk(self, ref: InstanceRef, target: Path, *, disk_format: str = "qcow2") -> None:
        """Power the guest off (ACPI, then hard after the shutdown timeout), keep its definition in its
        directory, undefine the domain, rename the directory to ``<dir>_resize`` and write the root disk
        to ``target`` as one standalone image. When ``<dir>_resize`` exists already (a redelivery), only
        the copy is made again. A guest without a local root disk cannot be moved (``InvalidRequest``)."""
        raise DriverError("this hypervisor driver cannot migrate servers", reschedulable=False)

    def finish_migration(
        self, request: BuildRequest, disk_image_path: Path, *, migration_id: int, power_on: bool = True
    ) -> SpawnResult:
        """``spawn`` on the migrated disk, with its root disk grown to the new flavor's (never shrunk)
        and its directory marked with ``migration_id``. Raises, like ``spawn``, if the domain exists."""
        raise DriverError("this hypervisor driver cannot migrate servers", reschedulable=False)

    def confirm_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        """Remove ``<dir>_resize`` and any definition of the old guest; the guest of ``migration_id`` on
        this host, if any, stays. Nothing left to remove is not an error."""
        raise DriverError("this hypervisor driver cannot migrate servers", reschedulable=False)

    def revert_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        """Destroy the guest ``migration_id`` made here, as ``destroy`` does, never ``<dir>_resize``. A
        domain the migration did not make (the old guest, already back) is left alone."""
        raise DriverError("this hypervisor driver cannot migrate servers", reschedulable=False)

    def finish_revert_migration(self, ref: InstanceRef, *, migration_id: int, power_on: bool) -> int:
        """Move ``<dir>_resize`` back, define the kept definition again and start it if ``power_on``;
        return the power state. Done already (no ``<dir>_resize``, the domain defined) is not an error."""
        raise DriverError("this hypervisor driver cannot migrate servers", reschedulable=False)

    # --- live migration --------------------------------------------------------------------------------
    #
    # ``prepare_live_migration`` on the destination, ``live_migrate`` on the source (``abort`` and
    # ``force_complete`` act on its running job from other threads), then ``post_live_migration`` or
    # ``rollback_live_migration`` on the destination. QEMU carries the guest's memory and, with
    # ``block_migration``, its local disk; everything else the destination makes itself.

    def prepare_live_migration(
        self, request: BuildRequest, base_image_path: Path | None, *, migration_id: int, block_migration: bool
    ) -> None:
        """With ``block_migration``: the instance directory, marked with ``migration_id``, with an empty
        overlay of the root disk's size on ``base_image_path`` and the config drive made again. An
        existing directory not made by this migration is never touched (it may be the source's, shared):
        an error. Without: check the (shared) instance directory is here. Either way the instance must
        have no domain here. On failure, what it made is removed before it raises."""
        raise DriverError("this hypervisor driver cannot live-migrate servers", reschedulable=False)

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
        """Migrate the running guest to ``dest_uri`` and return once it runs there (its definition gone
        from here, its directory too after a block migration), calling ``on_progress`` about every
        second meanwhile. A guest no longer here has moved already: done. A migration job running
        already (an earlier delivery) is waited for. On failure or abort the guest runs on here and
        ``DriverError`` says why."""
        raise DriverError("this hypervisor driver cannot live-migrate servers", reschedulable=False)

    def abort_live_migration(self, ref: InstanceRef) -> bool:
        """Cancel the instance's running migration job; False when none runs."""
        raise DriverError("this hypervisor driver cannot live-migrate servers", reschedulable=False)

    def force_complete_live_migration(self, ref: InstanceRef) -> str:
        """Make the running migration finish: switch it to post-copy, or allow it the downtime it needs.
        Returns which of the two ("post-copy" or "downtime"); ``DriverError`` when no migration runs."""
        raise DriverError("this hypervisor driver cannot live-migrate servers", reschedulable=False)

    def post_live_migration(self, ref: InstanceRef, *, migration_id: int) -> int:
        """On the destination: the guest runs here (``DriverError`` if not); the prepare's marker goes.
        Returns the power state."""
        raise DriverError("this hypervisor driver cannot live-migrate servers", reschedulable=False)

    def completed_live_migration(self, ref: InstanceRef) -> MigrationStats | None:
        """On the destination, after the guest arrived: the final figures of the migration that brought it,
        when the hypervisor kept them (a short migration may end before the source saw any)."""
        return None

    def rollback_live_migration(self, ref: InstanceRef, *, migration_id: int) -> None:
        """On the destination, after a failed migration: a definition of the instance that does not run
        goes, and the directory ``migration_id``'s prepare made. A guest that runs here (the migration
        completed after all) is never touched: ``DriverError``. Nothing to remove is not an error."""
        raise DriverError("this hypervisor driver cannot live-migrate servers", reschedulable=False)

    # --- rescue ----------------------------------------------------------------------------------------

    def rescue(self, ref: InstanceRef, rescue_image: ImageSpec, rescue_image_path: Path) -> int:
        """Keep the guest's definition in its directory, power it off and boot it from an overlay of the
        rescue image as ``vda``, with its own root disk as ``vdb``; return the power state. A guest in
        rescue already is only started if it is not running."""
        raise DriverError("this hypervisor driver cannot rescue servers", reschedulable=False)

    def unrescue(self, ref: InstanceRef) -> int:
        """Stop the rescue guest, remove its rescue disk, define the kept definition again and start it.
        A guest that is not in rescue is only started."""
        raise DriverError("this hypervisor driver cannot rescue servers", reschedulable=False)

    @abc.abstractmethod
    def power_on(self, ref: InstanceRef) -> int:
        """Start a stopped domain (resume a paused one); return the new power state."""

    @abc.abstractmethod
    def power_off(self, ref: InstanceRef) -> int:
        """Ask the guest to shut down (ACPI) and wait up to the driver's shutdown timeout for it; then
        pull the plug. Return the new power state."""

    @abc.abstractmethod
    def reboot(self, ref: InstanceRef, *, hard: bool) -> int:
        """Restart the guest and return the new power state.

        Soft: an ACPI shutdown, waiting up to the shutdown timeout for the guest to power off, then a
        fresh start. A guest that ignores the request within the timeout gets a hard reboot instead,
        so a reboot always ends with the domain running. Hard: power off at once, then start.
        A stopped domain is simply started.
        """

    @abc.abstractmethod
    def pause(self, ref: InstanceRef) -> int:
        """Halt the guest's vCPUs, keeping it in memory; PAUSED. Pausing a paused domain does nothing;
        a domain that is not running cannot be paused (``DriverError``)."""

    @abc.abstractmethod
    def unpause(self, ref: InstanceRef) -> int:
        """Let a paused guest run again; RUNNING. A running domain is left as it is."""

    @abc.abstractmethod
    def suspend(self, ref: InstanceRef) -> int:
        """Save the guest's memory to disk and end its process (libvirt's managed save); SUSPENDED.
        A suspended domain is left as it is; one that is shut off cannot be suspended."""

    @abc.abstractmethod
    def resume(self, ref: InstanceRef) -> int:
        """Restore a suspended guest from its saved memory; RUNNING. A running domain is left as is."""

    @abc.abstractmethod
    def snapshot(self, ref: InstanceRef, target: Path, *, disk_format: str = "qcow2") -> int:
        """Write the instance's whole disk (its overlay and the base image beneath) to ``target`` as one
        standalone image, consistent as of one instant: a running guest is paused for the copy and
        resumed afterwards. Returns the power state the domain is left in (the one it had)."""

    @abc.abstractmethod
    def console_log(self, ref: InstanceRef, max_bytes: int) -> bytes:
        """The last ``max_bytes`` of what the guest wrote to its serial port (empty when it wrote
        nothing yet). ``DomainNotFound`` when the instance has no domain here."""

    @abc.abstractmethod
    def destroy(self, ref: InstanceRef) -> None:
        """Stop the domain, undefine it and remove the instance directory. An absent domain or directory
        is not an error. A foreign domain with the instance's uuid is never touched: that is an error."""

    @abc.abstractmethod
    def power_state(self, ref: InstanceRef) -> int:
        """The rpc power state of the instance's domain; ``DomainNotFound`` if it has none."""

    def addresses(self, ref: InstanceRef) -> list[dict[str, Any]] | None:
        """The addresses of the domain's NICs as far as the host knows them (``nic_addresses``), from its
        definition; None when the driver cannot tell."""
        return None

    def diagnostics(self, ref: InstanceRef) -> dict[str, Any]:
        """What the hypervisor says about the running guest now, as the fields of ``rpc.Diagnostics``
        but the instance and host: ``state``, ``driver``, ``hypervisor``, ``hypervisor_os``,
        ``num_cpus``/``num_disks``/``num_nics``, ``cpu_details`` (``id``, ``time`` in ns,
        ``utilisation``), ``memory_details`` (``maximum``, ``used``, MiB), ``disk_details``
        (``read_bytes``, ``read_requests``, ``write_bytes``, ``write_requests``, ``errors_count``),
        ``nic_details`` (``mac_address``, ``rx_octets``, ``rx_errors``, ``rx_drop``, ``rx_packets``,
        ``rx_rate``, and the same for ``tx``) and ``legacy``, the driver's own free-form dict.
        ``DomainNotFound`` when the instance has no domain here."""
        raise DriverError(f"this hypervisor driver reports no diagnostics (instance {ref.instance_uuid})")

    def domain_stats(self) -> list[DomainStats]:
        """The counters of every running guest of the cloud on this host (never a foreign domain's), read
        now; for the host's metrics exporter. A driver that cannot count reports none."""
        return []

    @abc.abstractmethod
    def vnc_address(self, ref: InstanceRef) -> tuple[str | None, int | None]:
        """Where the console proxy can reach the domain's VNC server, or (None, None) when it has none
        (a stopped domain, a hypervisor without graphics)."""

    @abc.abstractmethod
    def list_domains(self) -> DomainInventory:
        """Power states of the cloud's domains, and the names of the domains it did not make."""

    @abc.abstractmethod
    def host_resources(self) -> HostResources:
        """Capacity of the host, reported in every heartbeat."""

    def host_usage(self) -> HostUsage | None:
        """The host's CPU and memory use, reported in every heartbeat for the admins' host graphs; None
        when the hypervisor cannot tell."""
        return None

    def close(self) -> None:  # noqa: B027 - most drivers hold nothing to let go of
        """Let go of the hypervisor connection: the worker is stopping."""


def nic_addresses(nics: list[NicSpec]) -> list[dict[str, Any]]:
    """The addresses the guest will have, as far as the host can know them at boot.

    A fixed ``ip`` chosen by the control plane is reported as is. On QEMU's user-mode network the guest
    always gets the same private address. Addresses handed out later by a libvirt network's DHCP are
    not known at this point and are left out.
    """
    addresses: list[dict[str, Any]] = []
    for nic in nics:
        if nic.ip:
            addr = nic.ip
        elif nic.network == "user":
            addr = USER_NETWORK_GUEST_ADDRESS
        else:
            continue
        version = ipaddress.ip_address(addr).version
        addresses.append({"addr": addr, "version": version, "mac": nic.mac, "network": nic.network})
    return addresses


def read_tail(path: Path, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of a file that something else may still be appending to; b"" if absent."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(size - max_bytes, 0))
            return log.read(max_bytes)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise DriverError(f"cannot read {path}: {exc}") from exc
