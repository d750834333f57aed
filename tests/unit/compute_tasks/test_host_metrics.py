"""The compute host's exporter: real HTTP on 127.0.0.1 to the exporter of a libvirt driver on ``test:///default``.

libvirt's test hypervisor counts CPU time and disk and NIC traffic as functions of the clock, so what the
exporter says is checked to lie between two readings of libvirt's own, taken just before and just after.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import libvirt
import pytest
import requests

from compute_tasks import host_metrics
from compute_tasks.drivers.libvirt_driver import LibvirtDriver
from compute_tasks.images import ImageCache
from compute_tasks.rpc import BuildRequest, FlavorSpec, ImageSpec, InstanceRef, NicSpec
from tests.prometheus import dashboard_metric_names, family_names, samples, value

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed"),
]

URI = "test:///default"
TOKEN = "host-scraper-token"
FOREIGN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test hypervisor's own domain, "test"


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "base"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


@pytest.fixture
def driver(tmp_path):
    driver = LibvirtDriver(
        uri=URI,
        virt_type="qemu",
        instances_dir=tmp_path / "instances",
        vnc_listen="127.0.0.1",
        vnc_host="127.0.0.1",
        shutdown_timeout=1,
        poll_interval=0.05,
    )
    made: list[str] = []
    driver.made = made
    yield driver
    for instance_uuid in made:
        driver.destroy(InstanceRef(instance_uuid=instance_uuid, domain_name=""))


@pytest.fixture
def image_cache(tmp_path):
    cache = ImageCache(tmp_path / "images", timeout=1)
    cache.directory.mkdir()
    (cache.directory / "img-1").write_bytes(b"x" * 100_000)
    (cache.directory / "img-1.sha256").write_text("0" * 64)
    (cache.directory / "img-2.part").write_bytes(b"y" * 50_000)  # a download in progress: bytes, no image
    return cache


@pytest.fixture
def exporter(driver, image_cache):
    collector = host_metrics.HostCollector("hv-test", driver.domain_stats, image_cache.usage)
    host_metrics.registry.register(collector)
    exporter = host_metrics.MetricsExporter(("127.0.0.1", 0), TOKEN)
    exporter.start()
    yield exporter
    exporter.stop()
    host_metrics.registry.unregister(collector)


def url(exporter, path: str = "/metrics") -> str:
    host, port = exporter.address
    return f"http://{host}:{port}{path}"


def scrape(exporter) -> str:
    response = requests.get(url(exporter), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return response.text


def boot(driver, base_image, **overrides) -> BuildRequest:
    fields = {
        "instance_uuid": str(uuid.uuid4()),
        "domain_name": f"instance-{uuid.uuid4().hex[:8]}",
        "flavor": FlavorSpec(name="m1.tiny", vcpus=2, memory_mb=64, root_gb=1),
        "image": ImageSpec(id="base", url="http://unused", sha256="0" * 64, size=1),
        "nics": [NicSpec(mac="52:54:00:00:00:0b", network="port", device=f"tap{uuid.uuid4().hex[:11]}")],
    }
    fields.update(overrides)
    request = BuildRequest(**fields)
    driver.made.append(request.instance_uuid)
    driver.spawn(request, base_image)
    return request


def libvirt_reading(instance_uuid: str, device: str, tap: str) -> dict[str, float]:
    dom = libvirt.open(URI).lookupByUUIDString(instance_uuid)
    rd_req, rd_bytes, wr_req, wr_bytes, _errs = dom.blockStats(device)
    rx_bytes, rx_packets, _, _, tx_bytes, tx_packets, _, _ = dom.interfaceStats(tap)
    return {
        "cpu": dom.info()[4] / 1e9,
        "read_bytes": rd_bytes,
        "write_bytes": wr_bytes,
        "read_requests": rd_req,
        "write_requests": wr_req,
        "receive_bytes": rx_bytes,
        "receive_packets": rx_packets,
        "transmit_bytes": tx_bytes,
        "transmit_packets": tx_packets,
    }


def test_each_guest_s_counters_come_from_libvirt(driver, base_image, exporter):
    request = boot(driver, base_image)
    guest = request.instance_uuid
    tap = request.nics[0].device

    before = libvirt_reading(guest, "vda", tap)
    text = scrape(exporter)
    after = libvirt_reading(guest, "vda", tap)

    assert value(text, "compute_hypervisor_up") == 1
    assert value(text, "compute_host_info", host="hv-test") == 1
    assert before["cpu"] <= value(text, "compute_domain_cpu_seconds_total", instance_uuid=guest) <= after["cpu"]
    assert value(text, "compute_domain_vcpus", instance_uuid=guest) == 2
    assert value(text, "compute_domain_memory_maximum_bytes", instance_uuid=guest) == 64 * 1024 * 1024
    dom = libvirt.open(URI).lookupByUUIDString(guest)
    # The guest has no balloon on the test hypervisor: its memory is the domain's current memory, whole used.
    assert "actual" not in dom.memoryStats()
    current_bytes = dom.info()[2] * 1024
    assert value(text, "compute_domain_memory_balloon_bytes", instance_uuid=guest) == current_bytes
    assert value(text, "compute_domain_memory_used_bytes", instance_uuid=guest) == current_bytes
    for name in ("read_bytes", "write_bytes", "read_requests", "write_requests"):
        found = value(text, f"compute_domain_disk_{name}_total", instance_uuid=guest, device="vda")
        assert before[name] <= found <= after[name], name
        assert found > 0
    for name in ("receive_bytes", "receive_packets", "transmit_bytes", "transmit_packets"):
        found = value(text, f"compute_domain_network_{name}_total", instance_uuid=guest, mac="52:54:00:00:00:0b")
        assert before[name] <= found <= after[name], name
        assert found > 0


def test_only_the_cloud_s_running_guests_are_labels(driver, base_image, exporter):
    running = boot(driver, base_image).instance_uuid
    stopped = boot(driver, base_image).instance_uuid
    driver.power_off(InstanceRef(instance_uuid=stopped, domain_name=""))

    text = scrape(exporter)

    guests = {dict(labels).get("instance_uuid") for (_name, labels) in samples(text)} - {None}
    assert running in guests
    assert stopped not in guests
    assert FOREIGN_UUID not in text  # libvirt's own "test" domain runs too, and is none of ours
    assert value(text, "compute_domains") == len(guests)


def test_the_image_cache_is_measured(exporter):
    text = scrape(exporter)
    assert value(text, "compute_image_cache_images") == 1
    assert value(text, "compute_image_cache_bytes") >= 150_000


def test_libvirt_calls_are_timed_by_driver_method(driver, base_image, exporter):
    before = scrape(exporter)
    request = boot(driver, base_image)
    driver.power_state(InstanceRef(instance_uuid=request.instance_uuid, domain_name=""))
    after = scrape(exporter)

    def moved(operation):
        name = "compute_libvirt_call_duration_seconds_count"
        return value(after, name, operation=operation) - value(before, name, operation=operation)

    assert moved("power_state") == 1
    # The scrape before this one read the guests' statistics through libvirt too.
    assert moved("domain_stats") >= 1
    assert value(after, "compute_libvirt_call_duration_seconds_sum", operation="power_state") > 0


def test_a_scrape_still_answers_when_the_hypervisor_does_not(image_cache):
    def broken():
        raise RuntimeError("libvirtd is gone")

    collector = host_metrics.HostCollector("hv-test", broken, image_cache.usage)
    host_metrics.registry.register(collector)
    exporter = host_metrics.MetricsExporter(("127.0.0.1", 0), TOKEN)
    exporter.start()
    try:
        text = scrape(exporter)
    finally:
        exporter.stop()
        host_metrics.registry.unregister(collector)
    assert value(text, "compute_hypervisor_up") == 0
    assert value(text, "compute_image_cache_images") == 1


def test_a_missing_or_wrong_token_is_refused(exporter):
    refused = [
        requests.get(url(exporter), timeout=10),
        requests.get(url(exporter), headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=10),
        requests.get(url(exporter), headers={"Authorization": f"Bearer {TOKEN[:-1]}"}, timeout=10),
        requests.get(url(exporter), headers={"Authorization": "Bearer "}, timeout=10),
        requests.get(url(exporter), headers={"Authorization": TOKEN}, timeout=10),
        requests.get(url(exporter), auth=("scraper", TOKEN), timeout=10),
    ]
    for response in refused:
        assert response.status_code == 401
        assert "compute_" not in response.text
    assert requests.get(url(exporter, "/"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 404
    assert requests.get(url(exporter), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 200


def test_an_exporter_is_never_open():
    with pytest.raises(ValueError, match="token"):
        host_metrics.MetricsExporter(("127.0.0.1", 0), "")


@pytest.mark.parametrize(
    ("memory", "used"),
    [
        ({"actual": 2048, "unused": 512, "rss": 4000}, 1536),  # the guest's own report wins
        ({"actual": 2048, "rss": 1800}, 1800),  # no guest report: what QEMU holds
        ({}, 1024),  # no balloon at all: the domain's current memory
    ],
)
def test_memory_used_is_what_the_balloon_reports(memory, used):
    from compute_tasks.drivers.libvirt_stats import used_kib

    assert used_kib(memory, 1024) == used


def test_the_dashboard_asks_only_for_metrics_the_exporter_serves(driver, base_image, exporter):
    from pathlib import Path

    boot(driver, base_image)
    # prometheus_client adds each histogram's creation time as a family of its own.
    served = {name for name in family_names(scrape(exporter)) if not name.endswith("_created")}
    dashboard = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "compute-host.json"
    used = dashboard_metric_names(dashboard, ("compute_", "process_"))
    assert used - served == set()
    assert {name for name in served if name.startswith("compute_")} - used == {
        "compute_domain_memory_maximum_bytes",
        "compute_metrics_collect_duration_seconds",
    }
