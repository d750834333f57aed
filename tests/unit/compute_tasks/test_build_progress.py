"""A host's reports of a build's steps and of its image download's percent, and how often they go out."""

import dataclasses
import time

import pytest

from compute_tasks import images as image_cache
from compute_tasks import rpc
from compute_tasks.config import HostConfig
from compute_tasks.drivers.fake import FakeDriver
from compute_tasks.manager import ComputeManager
from compute_tasks.progress import BuildSteps
from tests.unit.compute_tasks.test_compute_images import PAYLOAD, server, spec  # noqa: F401 - fixture
from tests.unit.compute_tasks.test_compute_manager import RecordingReporter, make_request

pytestmark = pytest.mark.unit


class ChunkedImages:
    """Hands out one base file after reporting its download in a hundred chunks, as the cache does,
    taking ``seconds`` in all."""

    def __init__(self, base, size=1000, seconds=0.0):
        self.base = base
        self.size = size
        self.seconds = seconds

    def fetch(self, image, on_progress=None):
        for received in range(10, self.size + 1, 10):
            time.sleep(self.seconds / 100)
            on_progress(received, self.size)
        return self.base


@pytest.fixture
def reporter():
    return RecordingReporter()


@pytest.fixture
def manager(tmp_path, reporter):
    config = HostConfig.from_env(
        {"COMPUTE_HOST": "hv-test", "COMPUTE_DRIVER": "fake", "COMPUTE_STATE_DIR": str(tmp_path / "state")}
    )
    driver = FakeDriver(instances_dir=config.instances_dir, vnc_host="192.0.2.5")
    base = tmp_path / "base.qcow2"
    base.write_bytes(b"base")
    return ComputeManager(config, driver, reporter, images=ChunkedImages(base))


def sent(reporter):
    return [(p.step, p.percent) for p in reporter.progress]


def test_a_quick_build_sends_no_progress_of_its_own(manager, reporter):
    manager.build_and_run_instance(make_request())

    assert sent(reporter) == []  # its report of the end is all the control plane needs
    assert reporter.only(rpc.InstanceBuilt).power_state == rpc.RUNNING


def test_a_slow_build_reports_the_step_it_is_in_once_the_quiet_time_is_over(manager, reporter, monkeypatch):
    monkeypatch.setattr(manager, "config", dataclasses.replace(manager.config, build_quiet_seconds=0.1))
    manager.images.seconds = 1.2
    request = make_request()

    manager.build_and_run_instance(request)

    # The timer tells the step it is in; then the download's percents (at most one a second) and the
    # later step at once.
    progress = sent(reporter)
    assert progress[0] == ("block_device_mapping", progress[0][1]) and progress[0][1] < 100
    assert progress[-2:] == [("block_device_mapping", 100), ("spawning", 0)]
    assert {(p.instance_uuid, p.host, p.request_id) for p in reporter.progress} == {
        (request.instance_uuid, "hv-test", "req-1")
    }


def test_without_a_quiet_time_every_step_goes_out_at_once(reporter):
    steps = BuildSteps(reporter, make_request(), "hv-test", quiet=0)
    steps.begin(rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING)
    for received in range(10, 1001, 10):
        steps.downloaded(received, 1000)
    steps.begin(rpc.BUILD_STEP_SPAWNING)
    steps.finish()
    steps.begin(rpc.BUILD_STEP_SPAWNING)  # after the end: nothing

    # A hundred chunks within a second: only the step's start and the whole image go out.
    assert sent(reporter) == [("block_device_mapping", 0), ("block_device_mapping", 100), ("spawning", 0)]


def test_download_percents_go_out_every_five_points_at_most(reporter):
    steps = BuildSteps(reporter, make_request(), "hv-test", quiet=0, interval=0)
    steps.begin(rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING)
    for received in range(1, 201):
        steps.downloaded(received, 200)

    assert [percent for _step, percent in sent(reporter)] == list(range(0, 101, 5))


def test_a_report_that_cannot_be_sent_does_not_stop_the_build(manager, reporter, monkeypatch):
    monkeypatch.setattr(manager, "config", dataclasses.replace(manager.config, build_quiet_seconds=0))
    tried = []

    def broken(progress):
        tried.append(progress)
        raise ConnectionError("broker away")

    reporter.build_progress = broken

    manager.build_and_run_instance(make_request())

    assert tried and reporter.only(rpc.InstanceBuilt).power_state == rpc.RUNNING


def test_the_cache_reports_each_chunk_and_a_cached_image_whole(server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(image_cache, "CHUNK_SIZE", 8192)
    cache = image_cache.ImageCache(tmp_path / "images", timeout=5)
    calls = []

    cache.fetch(spec(server), on_progress=lambda received, total: calls.append((received, total)))

    assert len(calls) == len(PAYLOAD) // 8192
    assert [received for received, _ in calls] == sorted(received for received, _ in calls)
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    calls.clear()
    cache.fetch(spec(server), on_progress=lambda received, total: calls.append((received, total)))
    assert calls == [(len(PAYLOAD), len(PAYLOAD))]
