"""What ``/metrics`` reads at scrape time: the cloud's state from the database, the queues from the broker.

None of it is kept in a process: each scrape asks the database (a constant number of queries, whatever
the size of the cloud) and the broker (one round trip for Redis), so every API process answers the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from compute_tasks import rpc
from portal.models import ComputeHost
from portal.selectors.cloud_state import console_session_counts, host_state_counts, instance_state_counts
from portal.selectors.quotas import cloud_usage

from .queues import BrokerUnavailable, queue_lengths

log = logging.getLogger(__name__)

# The label of an instance with no task running (Prometheus takes an empty label for a missing one).
NO_TASK = "none"


class CloudStateCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        yield self._instances()
        yield self._hosts()
        yield self._quota_usage()
        yield self._console_sessions()
        yield from self._queues()
        took = GaugeMetricFamily(
            "cloud_metrics_collect_duration_seconds", "Time this scrape took to read the database and the broker."
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _instances(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "cloud_instances",
            "Instances that are not deleted, by vm_state and task_state.",
            labels=["vm_state", "task_state"],
        )
        for (vm_state, task_state), count in sorted(instance_state_counts().items(), key=str):
            family.add_metric([vm_state, task_state or NO_TASK], count)
        return family

    def _hosts(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "cloud_compute_hosts",
            "Compute hosts by state (up: a heartbeat within SERVICE_DOWN_TIME and not forced down) and status.",
            labels=["state", "status"],
        )
        counts = host_state_counts()
        for up in (True, False):
            for enabled in (True, False):
                family.add_metric(
                    ["up" if up else "down", "enabled" if enabled else "disabled"], counts.get((up, enabled), 0)
                )
        return family

    def _quota_usage(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "cloud_quota_usage",
            "What all projects together use of each resource quotas count, in the quota's unit (ram and "
            "image_size_total in MiB).",
            labels=["resource"],
        )
        for resource, used in sorted(cloud_usage().items()):
            family.add_metric([resource], used)
        return family

    def _console_sessions(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "cloud_console_sessions",
            "Console sessions not closed: open, or stale (their proxy stopped checking them in).",
            labels=["state"],
        )
        for state, count in sorted(console_session_counts().items()):
            family.add_metric([state], count)
        return family

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        queues = [rpc.CONDUCTOR_QUEUE] + [
            rpc.compute_queue(name) for name in ComputeHost.objects.order_by("name").values_list("name", flat=True)
        ]
        up = GaugeMetricFamily("cloud_broker_up", "Whether the broker told the queues' lengths within the timeout.")
        try:
            lengths = queue_lengths(
                settings.CELERY_BROKER_URL, queues, timeout=settings.CLOUD["METRICS_BROKER_TIMEOUT"]
            )
        except BrokerUnavailable as exc:
            log.warning("metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = GaugeMetricFamily(
            "cloud_queue_messages",
            "Messages waiting in a Celery queue: the conductor's and each host's.",
            labels=["queue"],
        )
        for queue in queues:
            family.add_metric([queue], lengths.get(queue, 0))
        yield family
