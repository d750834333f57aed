"""What the API and conductor processes count as it happens.

Each process keeps its own values in ``settings.METRICS_DIR`` (prometheus_client's multiprocess mode)
and ``/metrics`` adds up every process's, so a scrape that lands on any API worker sees the counts of
every API worker and every conductor of the machine. Labels take a bounded set of values only: route
names (never paths), HTTP methods and statuses, scheduler filter names, task states.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, values

if values.ValueClass is values.MutexValue:
    # Each process would count for itself alone, and /metrics would show none of it.
    raise RuntimeError(
        "prometheus_client was imported before portal.settings set PROMETHEUS_MULTIPROC_DIR: import the settings first"
    )

# From a cached request answered in milliseconds to a slow one that ran into gunicorn's timeout.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
SCHEDULING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

api_requests = Counter(
    "cloud_api_requests",
    "HTTP requests the API answered, by route name, method and status.",
    ["route", "method", "status"],
)
api_request_duration = Histogram(
    "cloud_api_request_duration_seconds",
    "Time the API took to answer a request (up to the first byte of a streamed answer), by route and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
)

scheduling_decisions = Counter(
    "cloud_scheduler_decisions",
    "Scheduling requests the conductor decided: placed on a host, no valid host, or given up after lost races.",
    ["result"],
)
scheduling_duration = Histogram(
    "cloud_scheduler_duration_seconds",
    "Time from a scheduling request's start in the conductor to its hosts claimed (or its failure), by result.",
    ["result"],
    buckets=SCHEDULING_BUCKETS,
)
no_valid_host = Counter(
    "cloud_scheduler_no_valid_host",
    "Instances that found no valid host, by reason: the filter that removed the last hosts, 'no_hosts' when "
    "there were none, 'lost_races' when concurrent claims took every fitting host each time.",
    ["reason"],
)
claim_races = Counter(
    "cloud_scheduler_lost_races",
    "Claims taken again because a chosen host filled up between the decision and its row lock.",
)
build_failures = Counter(
    "cloud_conductor_build_failures",
    "Failed builds hosts reported, by the conductor's decision: rescheduled elsewhere or failed for good.",
    ["decision"],
)

reaper_actions = Counter(
    "cloud_reaper_actions",
    "What the reaper did: tasks ended after their lease ran out, scheduling requests and moves sent again.",
    ["action"],
)
reaper_expired_tasks = Counter(
    "cloud_reaper_expired_tasks",
    "Tasks the reaper ended because their lease ran out, by task state.",
    ["task_state"],
)

# The scheduling results and decisions, for dashboards and tests to name.
PLACED = "placed"
NO_VALID_HOST = "no_valid_host"
GAVE_UP = "gave_up"
RESCHEDULED = "rescheduled"
FAILED = "failed"
