"""Choosing a compute host for an instance.

Pure Python on purpose: the conductor hands in plain snapshots and the current time, and gets back the
passing hosts ranked best first together with an explanation of every host that was removed.

    selection = select_hosts(host_states, spec, now=time.time(), config=config)
    host = selection.best()  # raises NoValidHost, whose text belongs in the instance's fault

A multi-create request is placed with ``select_hosts_for_batch``, which consumes each instance's
resources before placing the next.
"""

from scheduler.engine import (
    BatchSelection,
    Selection,
    check_config,
    recheck_placements,
    select_hosts,
    select_hosts_for_batch,
)
from scheduler.explain import Explanation
from scheduler.types import GroupSpec, HostState, NoValidHost, RequestSpec, SchedulerConfig

__all__ = [
    "BatchSelection",
    "Explanation",
    "GroupSpec",
    "HostState",
    "NoValidHost",
    "RequestSpec",
    "SchedulerConfig",
    "Selection",
    "check_config",
    "recheck_placements",
    "select_hosts",
    "select_hosts_for_batch",
]
