"""Run one benchmark scenario on two revisions of the project in one run, and print both and the ratio.

    bench/compare.py REV_A REV_B SCENARIO [--rounds N] [-- ARGS for the scenario]

Each revision is checked out into a temporary ``git worktree`` and its cloud started from there with
this checkout's virtualenv; the scenario's script is this checkout's (``bench/<SCENARIO>.py --root
<worktree>``), so both revisions are measured the same way. Revisions run one after the other, A then B,
``--rounds`` times (A B A B ...), on the same machine in the same hour: compare the ratio, not the
figures, with those of another run. Prints each run's JSON line as it comes, then one JSON line with
the machine's load before and after and, for each figure the scenario names, A's and B's medians and
B/A.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The figures each scenario is compared on, and which way is better.
FIGURES = {
    "boot_and_delete": {
        "cycles_per_s": "higher",
        "cloud_and_db_cpu_s_per_cycle": "lower",
        "cloud_cpu_s_per_cycle": "lower",
        "boot_p95_s": "lower",
    },
    "network_programming": {
        "cold_apply_ms": "lower",
        "reapply_unchanged_ms": "lower",
        "periodic_check_ms": "lower",
        "reapply_with_peers_ms": "lower",
    },
    "api_reads": {
        "server_show_per_cpu_s": "higher",
        "servers_detail_per_cpu_s": "higher",
        "flavors_detail_per_cpu_s": "higher",
        "servers_detail_1000_ms": "lower",
        "servers_detail_1000_queries": "lower",
        "portal_instances_1000_ms": "lower",
    },
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def checkout(revision: str, parent: Path) -> Path:
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    tree = parent / commit[:12]
    git("worktree", "add", "--detach", str(tree), commit)
    (tree / ".venv").symlink_to(ROOT / ".venv")
    return tree


def run_scenario(scenario: str, tree: Path, extra: list[str]) -> list[dict]:
    script = ROOT / "bench" / f"{scenario}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--root", str(tree), *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{scenario} on {tree.name} failed with exit code {done.returncode}")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for result in results:
        print(json.dumps({"revision_tree": tree.name, **result}), flush=True)
    return results


def summarise(scenario: str, runs: dict[str, list[list[dict]]], names: tuple[str, str]) -> list[dict]:
    """One line per result position (one per ``--hosts`` count, say): medians over rounds and B/A."""
    a_runs, b_runs = runs[names[0]], runs[names[1]]
    lines = []
    for position in range(min(len(a_runs[0]), len(b_runs[0]))):
        key = {k: a_runs[0][position][k] for k in ("hosts",) if k in a_runs[0][position]}
        line: dict = {"scenario": scenario, **key, "a": names[0], "b": names[1], "rounds": len(a_runs)}
        for figure, better in FIGURES.get(scenario, {}).items():
            a_values = [run[position].get(figure) for run in a_runs]
            b_values = [run[position].get(figure) for run in b_runs]
            if any(v is None for v in a_values + b_values):
                continue
            a_value, b_value = statistics.median(a_values), statistics.median(b_values)
            line[figure] = {
                "a": a_value,
                "b": b_value,
                "b_over_a": round(b_value / a_value, 3) if a_value else None,
                "better": better,
            }
        for side, side_runs in (("a", a_runs), ("b", b_runs)):
            failures = sum(run[position].get("errors", 0) for run in side_runs)
            if failures:
                line[f"{side}_errors"] = failures
        lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("scenario", help="a script of bench/, without .py: " + ", ".join(FIGURES))
    parser.add_argument("--rounds", type=int, default=1)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # the scenario's own arguments
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    if not (ROOT / "bench" / f"{args.scenario}.py").exists():
        parser.error(f"no scenario bench/{args.scenario}.py")
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        trees = {}
        try:
            for revision in (args.rev_a, args.rev_b):
                trees[revision] = checkout(revision, Path(tmp))
            runs: dict[str, list[list[dict]]] = {revision: [] for revision in trees}
            for _ in range(args.rounds):
                for revision, tree in trees.items():
                    runs[revision].append(run_scenario(args.scenario, tree, args.extra))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    names = (args.rev_a, args.rev_b)
    for line in summarise(args.scenario, runs, names):
        line["load_avg_before"] = load_before
        line["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
