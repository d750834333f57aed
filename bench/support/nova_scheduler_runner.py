"""Runs OpenStack Nova's own scheduler filters and weighers over the benchmark's hosts.

Not for the project's interpreter: ``bench/scheduler_vs_nova.py`` runs it with the Python of a separate
virtualenv that has Nova installed, passing the hosts and the request as JSON on stdin. It builds Nova's
``HostState`` objects the way Nova's host manager fills them from compute nodes, services and
aggregates, then times what Nova's FilterScheduler does per decision: the filter handler over all
hosts, then the weight handler over the survivors. Prints one JSON object.
"""

from __future__ import annotations

import datetime
import json
import logging
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")
# Records are made as in a deployment (Nova logs a warning for every host that is down), but not written.
logging.basicConfig(handlers=[logging.NullHandler()], level=logging.INFO)

import nova.conf  # noqa: E402
from nova import objects  # noqa: E402
from oslo_utils import timeutils  # noqa: E402

objects.register_all()
CONF = nova.conf.CONF
CONF([], project="nova", default_config_files=[])

from nova.scheduler import filters as nova_filters  # noqa: E402
from nova.scheduler import host_manager  # noqa: E402
from nova.scheduler import weights as nova_weights  # noqa: E402

CELL = "00000000-0000-4000-8000-00000000ce11"


def host_states(hosts: list[dict], now: datetime.datetime) -> list:
    states = []
    aggregate_id = 0
    for index, host in enumerate(hosts):
        state = host_manager.HostState(host["host"], host["host"], CELL)
        state.uuid = f"00000000-0000-4000-8000-{index:012d}"
        state.vcpus_total = host["vcpus"]
        state.vcpus_used = host["vcpus_used"]
        state.total_usable_ram_mb = host["memory_mb"]
        state.free_ram_mb = host["memory_mb"] - host["memory_mb_used"]
        state.total_usable_disk_gb = host["disk_gb"]
        state.disk_mb_used = host["disk_gb_used"] * 1024
        state.free_disk_mb = (host["disk_gb"] - host["disk_gb_used"]) * 1024
        state.num_instances = host["num_instances"]
        state.failed_builds = host["failed_builds"]
        state.hypervisor_type = host["hypervisor_type"]
        state.hypervisor_version = host["hypervisor_version"]
        state.supported_instances = [(host["cpu_arch"], "qemu", "hvm")]
        state.cpu_allocation_ratio = 4.0
        state.ram_allocation_ratio = 1.0
        state.disk_allocation_ratio = 1.0
        state.updated = now
        seen = now - datetime.timedelta(seconds=host["heartbeat_age"])
        state.service = {
            "host": host["host"],
            "binary": "nova-compute",
            "disabled": not host["enabled"],
            "disabled_reason": None if host["enabled"] else "maintenance",
            "last_seen_up": seen,
            "created_at": seen,
            "updated_at": seen,
        }
        aggregates = []
        for metadata in host["aggregates"]:
            aggregate_id += 1
            aggregates.append(
                objects.Aggregate(
                    id=aggregate_id, name=f"agg-{aggregate_id}", hosts=[host["host"]], metadata=dict(metadata)
                )
            )
        state.aggregates = aggregates
        states.append(state)
    return states


def request_spec(request: dict):
    flavor = objects.Flavor(
        flavorid="bench",
        name="m1.bench",
        vcpus=request["vcpus"],
        memory_mb=request["memory_mb"],
        root_gb=request["root_gb"],
        ephemeral_gb=0,
        swap=0,
        extra_specs=dict(request["flavor_extra_specs"]),
    )
    image = objects.ImageMeta.from_dict({"properties": dict(request["image_properties"])})
    return objects.RequestSpec(
        instance_uuid="00000000-0000-4000-8000-000000000001",
        flavor=flavor,
        image=image,
        project_id=request["project_id"],
        num_instances=1,
        instance_group=None,
        scheduler_hints={},
        ignore_hosts=None,
        force_hosts=None,
        force_nodes=None,
    )


def main() -> int:
    job = json.load(sys.stdin)
    for name, value in job["weight_multipliers"].items():
        CONF.set_override(name, value, group="filter_scheduler")
    filter_handler = nova_filters.HostFilterHandler()
    filter_classes = {cls.__name__: cls for cls in filter_handler.get_all_classes()}
    weight_handler = nova_weights.HostWeightHandler()
    weigher_classes = {cls.__name__: cls for cls in weight_handler.get_all_classes()}
    host_filters = [filter_classes[name]() for name in job["filters"]]
    weighers = [weigher_classes[name]() for name in job["weighers"]]

    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    # Nova judges heartbeats against its clock; fixed here, as ours is, so that every run sees the same
    # hosts up however long the runs take.
    timeutils.set_time_override(now)
    states = host_states(job["hosts"], now)
    spec = request_spec(job["request"])

    def decide():
        passing = filter_handler.get_filtered_objects(host_filters, states, spec)
        weighed = weight_handler.get_weighed_objects(weighers, passing, spec)
        return passing, weighed

    decide()  # warm-up
    timings = []
    for _ in range(job["runs"]):
        started = time.perf_counter()
        passing, weighed = decide()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    json.dump(
        {
            "nova_version": _version(),
            "median_ms": statistics.median(timings),
            "p95_ms": timings[max(0, int(len(timings) * 0.95) - 1)],
            "runs": len(timings),
            "passing_hosts": len(passing),
            "chosen": weighed[0].obj.host if weighed else None,
        },
        sys.stdout,
    )
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("nova")


if __name__ == "__main__":
    sys.exit(main())
