"""The host's rings of its guests' figures (compute_tasks.guest_graphs), and the manager's answers from them."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from compute_tasks import guest_graphs, rpc
from compute_tasks.config import ConfigError, HostConfig
from compute_tasks.drivers.base import DiskCounters, DomainStats, DriverError, HostUsage, NicCounters
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.guest_graphs import RESOLUTIONS, GuestGraphs, Ring, sample_of
from compute_tasks.manager import ComputeManager
from tests.file_modes import mode_of

pytestmark = pytest.mark.unit

HOUR, DAY, WEEK = RESOLUTIONS
T0 = 1_800_000_000.0  # a moment on a 30-minute boundary, so every ring's slots start together
GIB_KIB = 1024 * 1024


def stats(
    instance_uuid,
    *,
    cpu_s=0.0,
    vcpus=2,
    disk=(0, 0, 0, 0),
    nic=(0, 0, 0, 0),
    disks=("vda",),
    macs=("52:54:00:00:00:01",),
):
    read_bytes, read_ops, write_bytes, write_ops = disk
    rx_bytes, rx_packets, tx_bytes, tx_packets = nic
    return DomainStats(
        instance_uuid=instance_uuid,
        vcpus=vcpus,
        cpu_time_ns=int(cpu_s * 1e9),
        memory_maximum_kib=GIB_KIB,
        memory_actual_kib=GIB_KIB,
        memory_used_kib=GIB_KIB // 4,
        disks=tuple(DiskCounters(dev, read_bytes, read_ops, write_bytes, write_ops) for dev in disks),
        nics=tuple(
            NicCounters(mac, f"tap{n}", rx_bytes, rx_packets, 0, 0, tx_bytes, tx_packets, 0, 0)
            for n, mac in enumerate(macs)
        ),
    )


def test_counters_become_rates_and_cpu_a_share_of_all_vcpus():
    guest = str(uuid.uuid4())
    before = stats(guest, cpu_s=100, disk=(1000, 10, 0, 0), nic=(500, 5, 100, 1))
    # 10 s later: 15 CPU-seconds on 2 vCPUs is 75 %; 1 MiB written in 20 requests; 5 KB in, 1 KB out.
    after = stats(guest, cpu_s=115, disk=(1000, 10, 1 << 20, 20), nic=(5500, 55, 1100, 11))
    sample = sample_of(after, (T0, before), T0 + 10)
    assert "memory_available_mib" not in sample  # this guest's balloon driver does not say
    assert (
        sample_of(dataclasses.replace(after, memory_available_kib=900 * 1024), None, T0)["memory_available_mib"] == 900
    )
    assert sample["cpu_percent"] == pytest.approx(75.0)
    assert sample["memory_used_mib"] == 256
    assert sample["memory_balloon_mib"] == sample["memory_maximum_mib"] == 1024
    assert sample["disk.vda.write_bytes"] == pytest.approx((1 << 20) / 10)
    assert sample["disk.vda.write_ops"] == pytest.approx(2.0)
    assert sample["disk.vda.read_bytes"] == 0
    assert sample["nic.52:54:00:00:00:01.rx_bytes"] == pytest.approx(500.0)
    assert sample["nic.52:54:00:00:00:01.tx_packets"] == pytest.approx(1.0)


def test_the_first_reading_and_a_counter_that_went_back_give_no_rate():
    guest = str(uuid.uuid4())
    first = sample_of(stats(guest, cpu_s=50), None, T0)
    assert "cpu_percent" not in first and "disk.vda.read_bytes" not in first
    assert first["memory_used_mib"] == 256  # gauges need no previous reading
    restarted = sample_of(
        stats(guest, cpu_s=1, disk=(0, 0, 5, 1)), (T0, stats(guest, cpu_s=50, disk=(9, 9, 9, 9))), T0 + 10
    )
    assert "cpu_percent" not in restarted
    assert "disk.vda.write_bytes" not in restarted


def test_a_slot_averages_its_samples_and_a_window_is_never_longer_than_the_ring():
    ring = Ring(DAY)  # 5-minute slots
    ring.add(T0, {"cpu_percent": 20.0})
    ring.add(T0 + 10, {"cpu_percent": 40.0})
    ring.add(T0 + 20, {"cpu_percent": 60.0})
    ring.add(T0 + DAY.step, {"cpu_percent": 10.0})
    start, series = ring.window(T0 + DAY.step, 2 * DAY.step)
    assert start == T0
    assert series == {"cpu_percent": [40.0, 10.0]}
    # Asked for a year, it gives its day: the slots before it were never kept.
    start, series = ring.window(T0 + DAY.step, 365 * 86400)
    assert len(series["cpu_percent"]) == DAY.points
    assert series["cpu_percent"][-2:] == [40.0, 10.0]
    assert series["cpu_percent"][0] is None


def test_a_slot_from_a_lap_ago_is_overwritten_not_shown():
    ring = Ring(HOUR)
    ring.add(T0, {"cpu_percent": 99.0})
    later = T0 + HOUR.seconds  # the same index, one lap later
    ring.add(later, {"memory_used_mib": 5.0})
    _, series = ring.window(later, HOUR.seconds)
    assert "cpu_percent" not in series  # the old value was cleared when its slot came round again
    assert series["memory_used_mib"][-1] == 5.0
    assert len(series["memory_used_mib"]) == HOUR.points


@pytest.mark.parametrize(
    ("seconds", "resolution", "points"),
    [(1, "hour", 1), (60, "hour", 6), (3600, "hour", 360), (3601, "day", 13), (86400, "day", 288),
     (7 * 86400, "week", 336), (10**12, "week", 336)],
)  # fmt: skip
def test_any_range_is_answered_at_one_resolution_with_a_bounded_number_of_points(tmp_path, seconds, resolution, points):
    graphs = GuestGraphs(tmp_path)
    guest = str(uuid.uuid4())
    graphs.record([stats(guest)], [guest], T0)
    window = graphs.window(guest, seconds, T0)
    assert window.resolution == resolution
    assert {len(values) for values in window.series.values()} == {points}


def test_devices_past_the_limit_are_left_out_so_a_guest_has_a_bounded_number_of_series(tmp_path):
    graphs = GuestGraphs(tmp_path)
    guest = str(uuid.uuid4())
    disks = tuple(f"vd{chr(ord('a') + n)}" for n in range(20))
    macs = tuple(f"52:54:00:00:01:{n:02x}" for n in range(20))
    for step in range(3):
        graphs.record([stats(guest, cpu_s=step, disks=disks, macs=macs)], [guest], T0 + 10 * step)
    series = graphs.window(guest, 3600, T0 + 20).series
    assert len(series) <= guest_graphs.MAX_SERIES
    assert {name.split(".")[1] for name in series if name.startswith("disk.")} == set(disks[: guest_graphs.MAX_DISKS])
    assert len({name.split(".")[1] for name in series if name.startswith("nic.")}) == guest_graphs.MAX_NICS


def test_a_stopped_guest_keeps_its_graphs_and_one_gone_from_the_host_loses_them_and_their_file(tmp_path):
    graphs = GuestGraphs(tmp_path / "graphs")
    stays, goes = str(uuid.uuid4()), str(uuid.uuid4())
    graphs.record([stats(stays), stats(goes)], [stays, goes], T0)
    graphs.save()
    assert (tmp_path / "graphs" / f"{goes}.ring").exists()
    graphs.record([], [stays], T0 + 10)  # stays is defined but stopped; goes has no domain any more
    assert graphs.window(stays, 3600, T0 + 10) is not None
    assert graphs.window(goes, 3600, T0 + 10) is None
    assert not (tmp_path / "graphs" / f"{goes}.ring").exists()
    assert len(graphs) == 1


def test_rings_survive_a_restart_in_private_files_and_a_damaged_file_is_dropped(tmp_path):
    directory = tmp_path / "graphs"
    graphs = GuestGraphs(directory)
    guest = str(uuid.uuid4())
    for step in range(4):
        graphs.record([stats(guest, cpu_s=5 * step, disk=(0, 0, 4096 * step, step))], [guest], T0 + 10 * step)
    graphs.save()
    path = directory / f"{guest}.ring"
    assert mode_of(path) == 0o600 and mode_of(directory) == 0o700
    # Compact: per slot a step number, and a float32 and a uint16 per series; a small JSON header.
    slots = sum(r.points for r in RESOLUTIONS)
    series = len(graphs.window(guest, 60, T0 + 30).series)
    assert series == 12
    assert path.stat().st_size <= slots * 8 + series * slots * 6 + 1024
    (directory / "not-a-uuid.ring").write_bytes(b"junk")
    (directory / f"{uuid.uuid4()}.ring").write_bytes(b"RING1\n\xff\xff\xff\xff")

    again = GuestGraphs(directory)
    again.load()
    before = graphs.window(guest, WEEK.seconds, T0 + 30)
    after = again.window(guest, WEEK.seconds, T0 + 30)
    assert after == before
    assert after.series["cpu_percent"][-1] == pytest.approx(25.0)
    assert sorted(p.name for p in directory.iterdir()) == [path.name]


def test_a_file_of_other_resolutions_is_refused(tmp_path):
    directory = tmp_path / "graphs"
    graphs = GuestGraphs(directory)
    guest = str(uuid.uuid4())
    graphs.record([stats(guest)], [guest], T0)
    graphs.save()
    path = directory / f"{guest}.ring"
    data = path.read_bytes()
    length = int.from_bytes(data[6:10], "little")
    headers = json.loads(data[10 : 10 + length])
    headers[0]["step"] = 15
    header = json.dumps(headers, separators=(",", ":")).encode()
    path.write_bytes(data[:6] + len(header).to_bytes(4, "little") + header + data[10 + length :])
    again = GuestGraphs(directory)
    again.load()
    assert again.window(guest, 3600, T0) is None
    assert not path.exists()


# --- the manager -------------------------------------------------------------------------------------


class GraphsReporter:
    def __init__(self):
        self.sent = []
        self.progress = []  # the build's steps and download percents, kept apart from the results

    def build_progress(self, progress):
        self.progress.append(progress)

    def instance_built(self, result):
        self.sent.append(result)

    def heartbeat(self, beat):
        self.sent.append(beat)

    def reply_instance_graphs(self, reply_to, result):
        self.sent.append((reply_to, result))


class OneImage:
    def __init__(self, base):
        self.base = base

    def fetch(self, image, on_progress=None):
        return self.base


def build_request():
    return rpc.BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name="instance-1",
        flavor=rpc.FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=128, root_gb=1),
        image=rpc.ImageSpec(id="img-1", url="http://images/img-1?sig=s", sha256="a" * 64, size=4),
        nics=[rpc.NicSpec(mac="52:54:00:00:00:01", network="user")],
    )


@pytest.fixture
def config(tmp_path):
    return HostConfig.from_env(
        {"COMPUTE_HOST": "hv-test", "COMPUTE_DRIVER": "fake", "COMPUTE_STATE_DIR": str(tmp_path / "state")}
    )


@pytest.fixture
def reporter():
    return GraphsReporter()


@pytest.fixture
def driver(config):
    return FakeDriver(instances_dir=config.instances_dir)


@pytest.fixture
def manager(config, driver, reporter, tmp_path):
    base = tmp_path / "base"
    base.write_bytes(b"base")
    return ComputeManager(config, driver, reporter, images=OneImage(base))


def test_the_manager_samples_its_guests_and_answers_a_window_of_one(manager, driver, reporter):
    request = build_request()
    manager.build_and_run_instance(request)
    manager.sample_graphs()
    manager.get_instance_graphs(rpc.GraphsRequest(instance_uuid=request.instance_uuid, reply_to="reply.q", seconds=600))
    reply_to, answer = reporter.sent[-1]
    assert reply_to == "reply.q"
    assert answer.host == "hv-test" and answer.resolution == "hour" and answer.step == 10
    assert not answer.error and not answer.no_history
    assert len(answer.series["memory_used_mib"]) == 60
    assert answer.series["memory_used_mib"][-1] == 256  # the fake's 262144 KiB
    # The answer is what travels through the broker: plain JSON.
    assert rpc.InstanceGraphs.from_dict(json.loads(json.dumps(answer.to_dict()))) == answer


def test_a_guest_the_host_has_no_history_of_is_answered_so(manager, reporter):
    manager.get_instance_graphs(rpc.GraphsRequest(instance_uuid=str(uuid.uuid4()), reply_to="reply.q"))
    _, answer = reporter.sent[-1]
    assert answer.no_history and answer.series == {}


def test_heartbeats_carry_the_hosts_cpu_use_since_the_previous_beat_and_its_memory_in_use(manager, driver, reporter):
    driver.usage = HostUsage(cpu_busy_ns=1_000, cpu_total_ns=10_000, memory_used_mb=3000)
    first = manager.heartbeat()
    assert first.cpu_used_percent is None  # nothing to compare with yet
    assert first.memory_used_mb == 3000
    driver.usage = HostUsage(cpu_busy_ns=4_000, cpu_total_ns=14_000, memory_used_mb=3100)
    second = manager.heartbeat()
    assert second.cpu_used_percent == pytest.approx(75.0)
    assert second.memory_used_mb == 3100
    driver.usage = None
    assert manager.heartbeat().cpu_used_percent is None

    def broken():
        raise DriverError("reading the host's CPU and memory use failed: libvirt went away")

    driver.host_usage = broken
    third = manager.heartbeat()  # the beat still goes, without the figures
    assert third is not None and (third.cpu_used_percent, third.memory_used_mb) == (None, None)
    assert dataclasses.asdict(second)["cpu_used_percent"] == pytest.approx(75.0)


def test_the_sampling_interval_is_at_most_the_finest_step():
    base = {"COMPUTE_HOST": "hv", "COMPUTE_DRIVER": "fake"}
    assert HostConfig.from_env(base).graphs_interval == 10
    assert HostConfig.from_env({**base, "COMPUTE_GRAPHS_INTERVAL": "0"}).graphs_interval == 0
    assert HostConfig.from_env({**base, "COMPUTE_GRAPHS_INTERVAL": "2.5"}).graphs_interval == 2.5
    with pytest.raises(ConfigError, match="COMPUTE_GRAPHS_INTERVAL"):
        HostConfig.from_env({**base, "COMPUTE_GRAPHS_INTERVAL": "30"})


def test_a_hypervisor_that_cannot_tell_its_use_gives_none_not_an_error(tmp_path):
    from compute_tasks.drivers.libvirt_driver import LibvirtDriver

    driver = LibvirtDriver(
        uri="test:///default",  # libvirt's test driver has CPU counters but no node memory statistics
        virt_type="qemu",
        instances_dir=tmp_path / "instances",
        vnc_listen="127.0.0.1",
        vnc_host="127.0.0.1",
        shutdown_timeout=1,
        poll_interval=0.05,
    )
    try:
        assert driver.host_usage() is None
        assert driver.host_usage() is None  # and not asked again
    finally:
        driver.close()


def test_the_sampler_reads_back_at_start_survives_a_failed_sample_and_saves_when_stopped(tmp_path, caplog):
    import threading

    from compute_tasks.guest_graphs import GraphSampler

    directory = tmp_path / "graphs"
    before = GuestGraphs(directory)
    kept = str(uuid.uuid4())
    before.record([stats(kept)], [kept], T0)
    before.save()

    graphs = GuestGraphs(directory)
    calls = []
    sampled_twice = threading.Event()
    new = str(uuid.uuid4())

    def sample():
        calls.append(len(graphs))  # the saved guest is back before the first sample
        if len(calls) == 1:
            raise RuntimeError("libvirt went away")
        graphs.record([stats(new)], [kept, new], T0 + 10 * len(calls))
        if len(calls) >= 3:
            sampled_twice.set()

    sampler = GraphSampler(graphs, sample, interval=0.01)
    sampler.start()
    assert sampled_twice.wait(5)
    sampler.stop()
    sampler.join(5)
    assert not sampler.is_alive()
    assert calls[0] == 1
    assert "libvirt went away" in caplog.text
    assert sorted(p.name for p in directory.iterdir()) == sorted([f"{kept}.ring", f"{new}.ring"])
