"""Our scheduler and OpenStack Nova's, side by side in one run, over the same seeded hosts and request.

Nova is installed from the package registry into its own virtualenv (``var/bench-nova-venv``, made on
first use, never the project's ``.venv``); ``bench/support/nova_scheduler_runner.py`` runs Nova's own filter
handler and weight handler there. Ours runs here. One JSON line per host count with ``hosts``,
``ours_median_ms``, ``nova_median_ms`` and ``ratio`` (Nova's median over ours).

The filters are the ones both schedulers have; ours also runs AvailabilityZoneFilter and the RAM, vCPU
and disk filters (Nova leaves capacity to its Placement service), so ours does more work per host. The
weighers and their multipliers are the same on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on the path, and bench/scheduler.py would shadow the
# scheduler package.
sys.path[0] = str(ROOT)

from bench.scheduler import measure  # noqa: E402
from bench.support.scheduler_hosts import REQUEST, synthetic_hosts  # noqa: E402
from scheduler import SchedulerConfig  # noqa: E402

NOVA_REQUIREMENT = os.environ.get("BENCH_NOVA_REQUIREMENT", "nova==34.0.0")
NOVA_VENV = Path(os.environ.get("BENCH_NOVA_VENV", ROOT / "var" / "bench-nova-venv"))
RUNNER = ROOT / "bench" / "support" / "nova_scheduler_runner.py"

SHARED_FILTERS = [
    "ComputeFilter",
    "NumInstancesFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "AggregateInstanceExtraSpecsFilter",
    "AggregateMultiTenancyIsolation",
    "SameHostFilter",
    "DifferentHostFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
]
# Weigher -> (Nova's multiplier option, multiplier): Nova's defaults, which ours share.
WEIGHERS = {
    "RAMWeigher": ("ram_weight_multiplier", 1.0),
    "CPUWeigher": ("cpu_weight_multiplier", 1.0),
    "DiskWeigher": ("disk_weight_multiplier", 1.0),
    "NumInstancesWeigher": ("num_instances_weight_multiplier", 0.0),
    "ServerGroupSoftAffinityWeigher": ("soft_affinity_weight_multiplier", 1.0),
    "ServerGroupSoftAntiAffinityWeigher": ("soft_anti_affinity_weight_multiplier", 1.0),
    "BuildFailureWeigher": ("build_failure_weight_multiplier", 1_000_000.0),
}


def nova_python() -> Path:
    """The Python of Nova's virtualenv, made and filled on first use."""
    python = NOVA_VENV / "bin" / "python"
    probe = [str(python), "-c", "import nova.scheduler.filters"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"installing {NOVA_REQUIREMENT} into {NOVA_VENV} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(NOVA_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", NOVA_REQUIREMENT], check=True)
    subprocess.run(probe, check=True)
    return python


def run_nova(python: Path, count: int, runs: int) -> dict:
    job = {
        "hosts": synthetic_hosts(count),
        "request": REQUEST,
        "filters": SHARED_FILTERS,
        "weighers": list(WEIGHERS),
        "weight_multipliers": dict(WEIGHERS.values()),
        "runs": runs,
    }
    # Not from the repository's folder: nothing of ours may shadow Nova's modules.
    done = subprocess.run(
        [str(python), str(RUNNER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
        cwd=NOVA_VENV,
    )
    if done.returncode != 0:
        raise SystemExit(f"Nova's scheduler run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, action="append", help="host count (repeatable)")
    args = parser.parse_args()
    python = nova_python()
    ours_config = SchedulerConfig(weighers={name: multiplier for name, (_, multiplier) in WEIGHERS.items()})
    for count in args.hosts or (100, 1000, 10000):
        runs = max(10, min(200, 100_000 // count))
        ours = measure(count, runs=max(runs, 20), config=ours_config)
        nova = run_nova(python, count, runs)
        print(
            json.dumps(
                {
                    "scenario": "scheduler_vs_nova",
                    "hosts": count,
                    "ours_median_ms": ours["median_ms"],
                    "nova_median_ms": round(nova["median_ms"], 3),
                    "ratio": round(nova["median_ms"] / ours["median_ms"], 1),
                    "ours_p95_ms": ours["p95_ms"],
                    "nova_p95_ms": round(nova["p95_ms"], 3),
                    "ours_filters": ours["filters"],
                    "nova_filters": len(SHARED_FILTERS),
                    "weighers": len(WEIGHERS),
                    "ours_passing_hosts": ours["passing_hosts"],
                    "nova_passing_hosts": nova["passing_hosts"],
                    "nova_version": nova["nova_version"],
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
