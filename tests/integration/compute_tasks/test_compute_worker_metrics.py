"""The real compute worker starts its metrics exporter from COMPUTE_METRICS_ADDRESS: a guest it built shows
in what the exporter answers over HTTP, to the token's holder only."""

import socket
import uuid

import pytest
import requests

from compute_tasks import rpc
from compute_tasks.rpc import BuildRequest, FlavorSpec, InstanceBuilt, InstanceRef, NicSpec
from tests.integration.compute_tasks.test_compute_worker import (  # noqa: F401 - the worker fixture and what it needs
    broker,
    control_plane,
    host,
    image,
    log_tail,
    pytestmark,
    worker,
)
from tests.processes import wait_until
from tests.prometheus import value

TOKEN = "worker-metrics-token"


@pytest.fixture
def metrics_url(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The worker fixture starts the worker with this process's environment.
    monkeypatch.setenv("COMPUTE_METRICS_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setenv("COMPUTE_METRICS_TOKEN", TOKEN)
    return f"http://127.0.0.1:{port}/metrics"


def scrape(url: str, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(url, headers=headers, timeout=10)


def test_the_worker_exports_its_guests(metrics_url, worker, host, image):  # noqa: F811 - fixtures
    conductor, _state_dir, log_path = worker
    request = BuildRequest(
        instance_uuid=str(uuid.uuid4()),
        domain_name=f"instance-{uuid.uuid4().hex[:8]}",
        flavor=FlavorSpec(name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1),
        image=image,
        nics=[NicSpec(mac="52:54:00:00:00:43", network="port", device=f"tap{uuid.uuid4().hex[:11]}")],
    )
    conductor.wait_for(rpc.HEARTBEAT)  # ready: the exporter starts with the heartbeats

    def listening():
        try:
            return scrape(metrics_url)
        except requests.ConnectionError:
            return None

    try:
        first = wait_until(listening, 15, message="the exporter listening")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{log_tail(log_path)}") from None
    assert first.status_code == 200
    assert value(first.text, "compute_host_info", host=host) == 1

    rpc.build_and_run_instance(host, request)
    InstanceBuilt.from_dict(conductor.wait_for(rpc.INSTANCE_BUILT))
    try:
        text = scrape(metrics_url).text
        guest = request.instance_uuid
        assert value(text, "compute_domain_cpu_seconds_total", instance_uuid=guest) > 0
        assert value(text, "compute_domain_disk_write_bytes_total", instance_uuid=guest, device="vda") > 0
        assert value(text, "compute_domain_network_receive_bytes_total", instance_uuid=guest, mac="52:54:00:00:00:43")
        assert value(text, "compute_image_cache_images") == 1
        assert value(text, "compute_libvirt_call_duration_seconds_count", operation="domain_stats") >= 1

        assert scrape(metrics_url, token=None).status_code == 401
        assert scrape(metrics_url, token="not-it").status_code == 401
    finally:
        rpc.terminate_instance(host, InstanceRef(instance_uuid=request.instance_uuid, domain_name=request.domain_name))
        conductor.wait_for(rpc.ACTION_DONE, lambda body: body["action"] == "terminate")
