"""Each host's recent history of its guests' figures: what the portal's instance graphs draw.

Kept where the figures are born, as Proxmox keeps its RRDs on each node: a thread of the worker samples
the running guests every ``COMPUTE_GRAPHS_INTERVAL`` seconds (``ComputeDriver.domain_stats``, the libvirt
sources of the diagnostics and the metrics exporter) into round-robin rings of a fixed size, one ring per
resolution, and the control plane asks the guest's host for a window when a page wants one (a request
and a signed reply through the broker, like the diagnostics). Nothing about a guest's figures crosses
the network unless someone looks. ``docs/observability.md`` has the reasons and the costs.

What a ring holds is bounded whatever happens: ``RESOLUTIONS`` slots per series, ``MAX_SERIES`` series
per guest (the CPU, four memory figures, four per disk and four per NIC, the devices past the limit
left out), a guest's rings only while the host has its domain. Counters become rates between two
samples (a counter that went back, as after a guest's restart, gives no rate for that step); a slot of
a coarse ring holds the average of the samples that fell in it.

The rings are written to ``<state dir>/graphs/<uuid>.ring`` every ``SAVE_EVERY`` samples and when the
worker stops, and read back at start: a restarted worker keeps its graphs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import struct
import threading
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from compute_tasks.config import canonical_uuid
from compute_tasks.drivers.base import DomainStats
from compute_tasks.private_files import FILE_MODE, private_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    """``points`` slots of ``step`` seconds each: a window of ``step * points`` seconds."""

    name: str
    step: int
    points: int

    @property
    def seconds(self) -> int:
        return self.step * self.points


# An hour at 10 s, a day at 5 min, a week at 30 min: 984 slots per series.
RESOLUTIONS = (Resolution("hour", 10, 360), Resolution("day", 300, 288), Resolution("week", 1800, 336))

MAX_DISKS = 8
MAX_NICS = 8
GAUGES = ("cpu_percent", "memory_used_mib", "memory_available_mib", "memory_balloon_mib", "memory_maximum_mib")
DISK_SERIES = ("read_bytes", "write_bytes", "read_ops", "write_ops")  # per second
NIC_SERIES = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")  # per second, from the guest's side
MAX_SERIES = len(GAUGES) + MAX_DISKS * len(DISK_SERIES) + MAX_NICS * len(NIC_SERIES)

# Samples between two saves: five minutes at the default interval. A save rewrites every guest's file
# (some 130 KB each), so this is what a crash may lose against what the disk is written.
SAVE_EVERY = 30
_MAGIC = b"RING1\n"
_NAN = float("nan")
_MIB = 1024


class Ring:
    """``points`` slots of ``step`` seconds for a set of named series; a slot is the average of the samples
    taken in it. A slot's index is its step number modulo ``points``, so a slot older than the window is
    overwritten, not kept: nothing grows."""

    def __init__(self, resolution: Resolution) -> None:
        self.resolution = resolution
        self.slots = array("q", [-1]) * resolution.points  # the step number each index holds now
        self.values: dict[str, array] = {}  # float32 averages, NaN where nothing was sampled
        self.counts: dict[str, array] = {}  # samples averaged into each slot

    def add(self, at: float, sample: dict[str, float]) -> None:
        step, points = self.resolution.step, self.resolution.points
        slot = int(at // step)
        index = slot % points
        if self.slots[index] != slot:
            self.slots[index] = slot
            for name in self.values:
                self.values[name][index] = _NAN
                self.counts[name][index] = 0
        for name, value in sample.items():
            if name not in self.values:
                if len(self.values) >= MAX_SERIES:
                    continue
                self.values[name] = array("f", [_NAN]) * points
                self.counts[name] = array("H", [0]) * points
            values, counts = self.values[name], self.counts[name]
            seen = counts[index]
            values[index] = value if seen == 0 else values[index] + (value - values[index]) / (seen + 1)
            counts[index] = min(seen + 1, 0xFFFF)

    def window(self, now: float, seconds: float) -> tuple[int, dict[str, list[float | None]]]:
        """The start (unix seconds) of the first slot and every series' values from there to the slot of
        ``now``: at most ``points`` of them, None where nothing was sampled; series with no value in the
        window are left out."""
        step, points = self.resolution.step, self.resolution.points
        last = int(now // step)
        count = max(1, min(points, math.ceil(seconds / step)))
        first = last - count + 1
        series: dict[str, list[float | None]] = {}
        for name, values in self.values.items():
            column: list[float | None] = []
            for slot in range(first, last + 1):
                index = slot % points
                value = values[index] if self.slots[index] == slot else _NAN
                column.append(None if math.isnan(value) else round(value, 3))
            if any(value is not None for value in column):
                series[name] = column
        return first * step, series

    def newest(self) -> int:
        return max(self.slots)

    # --- the ring file ------------------------------------------------------------------------------

    def header(self) -> dict:
        return {"step": self.resolution.step, "points": self.resolution.points, "series": list(self.values)}

    def payload(self) -> bytes:
        parts = [self.slots.tobytes()]
        for name in self.values:
            parts.append(self.values[name].tobytes())
            parts.append(self.counts[name].tobytes())
        return b"".join(parts)

    def load(self, header: dict, data: memoryview) -> int:
        """Fill from a file's part for this ring; how many bytes it took. ``ValueError`` for a part that
        does not fit this resolution."""
        points = self.resolution.points
        if header.get("step") != self.resolution.step or header.get("points") != points:
            raise ValueError("a ring of another resolution")
        names = [str(name) for name in header.get("series", [])][:MAX_SERIES]
        sizes = [8 * points] + [4 * points, 2 * points] * len(names)
        if sum(sizes) > len(data):
            raise ValueError("a truncated ring")
        offset = 0
        slots = array("q")
        slots.frombytes(data[offset : offset + sizes[0]])
        offset += sizes[0]
        values: dict[str, array] = {}
        counts: dict[str, array] = {}
        for name in names:
            values[name] = array("f")
            values[name].frombytes(data[offset : offset + 4 * points])
            offset += 4 * points
            counts[name] = array("H")
            counts[name].frombytes(data[offset : offset + 2 * points])
            offset += 2 * points
        self.slots, self.values, self.counts = slots, values, counts
        return offset


def sample_of(stats: DomainStats, previous: tuple[float, DomainStats] | None, at: float) -> dict[str, float]:
    """One sample of a guest: its memory as the balloon reports it now, and, given the previous reading,
    its CPU use (% of all its vCPUs) and its devices' rates per second since then."""
    sample = {
        "memory_used_mib": stats.memory_used_kib / _MIB,
        "memory_balloon_mib": stats.memory_actual_kib / _MIB,
        "memory_maximum_mib": stats.memory_maximum_kib / _MIB,
    }
    if stats.memory_available_kib is not None:
        sample["memory_available_mib"] = stats.memory_available_kib / _MIB
    if previous is None:
        return sample
    then, before = previous
    elapsed = at - then
    if elapsed <= 0:
        return sample

    def rate(now: int, earlier: int) -> float | None:
        # A counter that went back was reset (the guest restarted, a disk was replaced): no rate this step.
        return None if now < earlier else (now - earlier) / elapsed

    cpu = rate(stats.cpu_time_ns, before.cpu_time_ns)
    if cpu is not None and stats.vcpus > 0:
        sample["cpu_percent"] = min(100.0, cpu / 1e9 / stats.vcpus * 100)
    disks_before = {disk.device: disk for disk in before.disks}
    for disk in stats.disks[:MAX_DISKS]:
        old = disks_before.get(disk.device)
        if old is None:
            continue
        for name, now, earlier in (
            ("read_bytes", disk.read_bytes, old.read_bytes),
            ("write_bytes", disk.write_bytes, old.write_bytes),
            ("read_ops", disk.read_requests, old.read_requests),
            ("write_ops", disk.write_requests, old.write_requests),
        ):
            value = rate(now, earlier)
            if value is not None:
                sample[f"disk.{disk.device}.{name}"] = value
    nics_before = {nic.mac: nic for nic in before.nics}
    for nic in stats.nics[:MAX_NICS]:
        old = nics_before.get(nic.mac)
        if old is None:
            continue
        for name, now, earlier in (
            ("rx_bytes", nic.rx_bytes, old.rx_bytes),
            ("tx_bytes", nic.tx_bytes, old.tx_bytes),
            ("rx_packets", nic.rx_packets, old.rx_packets),
            ("tx_packets", nic.tx_packets, old.tx_packets),
        ):
            value = rate(now, earlier)
            if value is not None:
                sample[f"nic.{nic.mac}.{name}"] = value
    return sample


@dataclass(frozen=True)
class Window:
    """What a graph draws: ``len(series[name])`` points ``step`` seconds apart from ``start``."""

    resolution: str
    start: int
    step: int
    series: dict[str, list[float | None]]


def resolution_for(seconds: float) -> Resolution:
    """The finest resolution whose window covers ``seconds``; the coarsest for anything longer."""
    for resolution in RESOLUTIONS:
        if seconds <= resolution.seconds:
            return resolution
    return RESOLUTIONS[-1]


class GuestGraphs:
    """The rings of every guest of one host, thread-safe: the sampler writes, answers to the control plane
    read."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._rings: dict[str, list[Ring]] = {}
        self._previous: dict[str, tuple[float, DomainStats]] = {}
        self._lock = threading.Lock()
        self._samples = 0

    def __len__(self) -> int:
        return len(self._rings)

    def record(self, stats: Iterable[DomainStats], defined: Iterable[str], at: float) -> None:
        """One sample of each running guest at ``at``; the rings of guests whose domain is no longer on
        the host (deleted, moved away) go, with their file."""
        stats = list(stats)
        running = {guest.instance_uuid for guest in stats}
        defined = set(defined) | running
        with self._lock:
            for guest in stats:
                rings = self._rings.get(guest.instance_uuid)
                if rings is None:
                    rings = self._rings[guest.instance_uuid] = [Ring(r) for r in RESOLUTIONS]
                sample = sample_of(guest, self._previous.get(guest.instance_uuid), at)
                self._previous[guest.instance_uuid] = (at, guest)
                for ring in rings:
                    ring.add(at, sample)
            for instance_uuid in list(self._previous):
                if instance_uuid not in running:
                    del self._previous[instance_uuid]  # stopped: its next run starts its counters again
            gone = [instance_uuid for instance_uuid in self._rings if instance_uuid not in defined]
            for instance_uuid in gone:
                del self._rings[instance_uuid]
                self._previous.pop(instance_uuid, None)
            self._samples += 1
        for instance_uuid in gone:
            with contextlib.suppress(FileNotFoundError):
                self._path(instance_uuid).unlink()

    def window(self, instance_uuid: str, seconds: float, now: float) -> Window | None:
        """The guest's last ``seconds`` at the finest resolution that covers them (a week at most), or
        None when the host has no history of it."""
        resolution = resolution_for(seconds)
        with self._lock:
            rings = self._rings.get(instance_uuid)
            if rings is None:
                return None
            ring = rings[RESOLUTIONS.index(resolution)]
            start, series = ring.window(now, min(seconds, resolution.seconds))
        return Window(resolution.name, start, resolution.step, series)

    def due_to_save(self) -> bool:
        return self._samples % SAVE_EVERY == 0

    # --- files ----------------------------------------------------------------------------------------

    def save(self) -> None:
        """Write every guest's rings, each file replaced whole (a crash leaves the old one or the new)."""
        private_dir(self.directory)
        with self._lock:
            contents = {
                instance_uuid: _encode(rings)
                for instance_uuid, rings in self._rings.items()
                if max(ring.newest() for ring in rings) >= 0
            }
        for instance_uuid, data in contents.items():
            path = self._path(instance_uuid)
            temporary = path.with_suffix(".tmp")
            fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.replace(temporary, path)

    def load(self) -> None:
        """Read back the rings a previous run saved; a file that cannot be read is removed."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("*.ring"):
            try:
                instance_uuid = canonical_uuid(path.stem)
                rings = _decode(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("dropping the graphs file %s, which cannot be read: %s", path, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            with self._lock:
                self._rings.setdefault(instance_uuid, rings)

    def _path(self, instance_uuid: str) -> Path:
        return self.directory / f"{canonical_uuid(instance_uuid)}.ring"


def _encode(rings: list[Ring]) -> bytes:
    header = json.dumps([ring.header() for ring in rings], separators=(",", ":")).encode()
    return _MAGIC + struct.pack("<I", len(header)) + header + b"".join(ring.payload() for ring in rings)


def _decode(data: bytes) -> list[Ring]:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise ValueError("not a ring file")
    (length,) = struct.unpack_from("<I", data, len(_MAGIC))
    offset = len(_MAGIC) + 4
    try:
        headers = json.loads(data[offset : offset + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"a damaged header: {exc}") from None
    if not isinstance(headers, list) or len(headers) != len(RESOLUTIONS):
        raise ValueError("rings of other resolutions")
    offset += length
    view = memoryview(data)
    rings = []
    for resolution, header in zip(RESOLUTIONS, headers, strict=True):
        ring = Ring(resolution)
        offset += ring.load(header if isinstance(header, dict) else {}, view[offset:])
        rings.append(ring)
    return rings


class GraphSampler(threading.Thread):
    """Calls ``sample()`` (which records into ``graphs``) every ``interval`` seconds, and saves the rings
    now and then and when stopped. A failed sample is logged and the next one tried: graphs must never
    stop a host."""

    def __init__(self, graphs: GuestGraphs, sample: Callable[[], None], interval: float) -> None:
        super().__init__(name="compute-graphs", daemon=True)
        self._graphs = graphs
        self._sample = sample
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            self._graphs.load()
        except Exception:
            log.exception("reading the saved graphs failed")
        while not self._stopped.wait(self._interval):
            self.sample()
        self._save()

    def sample(self) -> None:
        try:
            self._sample()
        except Exception as exc:
            log.warning("sampling the guests for their graphs failed: %s", exc)
            return
        if self._graphs.due_to_save():
            self._save()

    def _save(self) -> None:
        try:
            self._graphs.save()
        except Exception:
            log.exception("saving the graphs failed")

    def stop(self) -> None:
        self._stopped.set()
