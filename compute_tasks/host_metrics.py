"""The compute host's own Prometheus metrics, served by a thread of the worker on ``COMPUTE_METRICS_ADDRESS``.

Everything about the guests is read from the hypervisor at scrape time (``ComputeDriver.domain_stats``: the
same libvirt sources as a server's diagnostics), so nothing is kept for a guest that is gone, and the
only labels are the uuids of this host's running guests and their devices. Besides: the image cache's
size, and how long libvirt calls take (timed where the libvirt driver makes every call).

Access is the control plane's rule (``compute_tasks.scrape_auth``): ``Authorization: Bearer`` with
``COMPUTE_METRICS_TOKEN``, and the worker refuses to start an exporter without one.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from compute_tasks.drivers.base import DomainStats
from compute_tasks.scrape_auth import bearer_token_matches

log = logging.getLogger(__name__)

KIB = 1024

# The registry the exporter serves: this module's instruments and the collectors the worker adds. Not
# prometheus_client's global one, which holds whatever else the process happens to import.
registry = CollectorRegistry()
ProcessCollector(registry=registry)  # the worker's own CPU time, memory and open files

libvirt_call_duration = Histogram(
    "compute_libvirt_call_duration_seconds",
    "Time libvirt took to answer the driver, by the driver method that asked.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=registry,
)


class HostCollector(Collector):
    """The guests' counters and the image cache, read at each scrape."""

    def __init__(
        self, host: str, domain_stats: Callable[[], list[DomainStats]], image_usage: Callable[[], tuple[int, int]]
    ) -> None:
        self.host = host
        self._domain_stats = domain_stats
        self._image_usage = image_usage

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        started = time.perf_counter()
        up = GaugeMetricFamily("compute_hypervisor_up", "Whether the hypervisor answered this scrape.")
        try:
            domains = self._domain_stats()
        except Exception as exc:  # a scrape must still answer, and say the hypervisor did not
            log.warning("metrics: cannot read the guests' statistics: %s", exc)
            domains = None
        up.add_metric([], 0 if domains is None else 1)
        yield up
        info = GaugeMetricFamily("compute_host_info", "The compute host this exporter speaks for.", labels=["host"])
        info.add_metric([self.host], 1)
        yield info
        if domains is not None:
            yield from self._domains(domains)
        images, used = self._image_usage()
        yield GaugeMetricFamily("compute_image_cache_images", "Verified base images in the cache.", value=images)
        yield GaugeMetricFamily(
            "compute_image_cache_bytes", "Bytes the image cache takes on disk, partial downloads included.", value=used
        )
        yield GaugeMetricFamily(
            "compute_metrics_collect_duration_seconds",
            "Time this scrape took to read the hypervisor and the image cache.",
            value=time.perf_counter() - started,
        )

    def _domains(self, domains: list[DomainStats]) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        guest = ["instance_uuid"]
        count = GaugeMetricFamily("compute_domains", "Running guests of the cloud on this host.", value=len(domains))
        cpu = CounterMetricFamily("compute_domain_cpu_seconds", "CPU time the guest used, all vCPUs.", labels=guest)
        vcpus = GaugeMetricFamily("compute_domain_vcpus", "The guest's vCPUs.", labels=guest)
        memory = {
            "maximum": GaugeMetricFamily(
                "compute_domain_memory_maximum_bytes", "The most memory the guest may have.", labels=guest
            ),
            "balloon": GaugeMetricFamily(
                "compute_domain_memory_balloon_bytes", "The guest's memory as its balloon leaves it.", labels=guest
            ),
            "used": GaugeMetricFamily(
                "compute_domain_memory_used_bytes",
                "What the guest uses of its memory (the balloon less what the guest reports unused).",
                labels=guest,
            ),
        }
        disk = ["instance_uuid", "device"]
        disks = {
            name: CounterMetricFamily(
                f"compute_domain_disk_{name}", f"Disk {what} since the guest started.", labels=disk
            )
            for name, what in (
                ("read_bytes", "bytes read"),
                ("write_bytes", "bytes written"),
                ("read_requests", "read requests"),
                ("write_requests", "write requests"),
            )
        }
        nic = ["instance_uuid", "mac"]
        nics = {
            name: CounterMetricFamily(
                f"compute_domain_network_{name}", f"Network {what} since the guest started.", labels=nic
            )
            for name, what in (
                ("receive_bytes", "bytes the guest received"),
                ("receive_packets", "packets the guest received"),
                ("transmit_bytes", "bytes the guest sent"),
                ("transmit_packets", "packets the guest sent"),
            )
        }
        for stats in domains:
            labels = [stats.instance_uuid]
            cpu.add_metric(labels, stats.cpu_time_ns / 1e9)
            vcpus.add_metric(labels, stats.vcpus)
            memory["maximum"].add_metric(labels, stats.memory_maximum_kib * KIB)
            memory["balloon"].add_metric(labels, stats.memory_actual_kib * KIB)
            memory["used"].add_metric(labels, stats.memory_used_kib * KIB)
            for counters in stats.disks:
                device = [stats.instance_uuid, counters.device]
                disks["read_bytes"].add_metric(device, counters.read_bytes)
                disks["write_bytes"].add_metric(device, counters.write_bytes)
                disks["read_requests"].add_metric(device, counters.read_requests)
                disks["write_requests"].add_metric(device, counters.write_requests)
            for counters in stats.nics:
                interface = [stats.instance_uuid, counters.mac]
                nics["receive_bytes"].add_metric(interface, counters.rx_bytes)
                nics["receive_packets"].add_metric(interface, counters.rx_packets)
                nics["transmit_bytes"].add_metric(interface, counters.tx_bytes)
                nics["transmit_packets"].add_metric(interface, counters.tx_packets)
        yield from (count, cpu, vcpus, *memory.values(), *disks.values(), *nics.values())


class MetricsExporter:
    """``GET /metrics`` on ``address`` for whoever shows the token; its own thread, one more per request."""

    def __init__(self, address: tuple[str, int], token: str, served: CollectorRegistry = registry) -> None:
        if not token:
            raise ValueError("a metrics exporter needs a token: it is never open")
        handler = _handler(token, served)
        server_class = _IPv6Server if ":" in address[0] else ThreadingHTTPServer
        self._server = server_class(address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="compute-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return host, port

    def start(self) -> None:
        self._thread.start()
        log.info("metrics exporter listening on %s port %d", *self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(token: str, served: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        # A client that stops sending does not keep its thread for long.
        timeout = 10

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"not found\n", "text/plain")
                return
            if not bearer_token_matches(self.headers.get("Authorization"), token):
                self._answer(401, b"a bearer token is required\n", "text/plain", {"WWW-Authenticate": "Bearer"})
                return
            self._answer(200, generate_latest(served), CONTENT_TYPE_LATEST)

        def _answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
            log.debug("metrics: %s - %s", self.address_string(), format % args)

    return MetricsHandler
