"""Many simulated hosts in one process: each sees only its own domains.

libvirt's ``test:///default`` hypervisor is one in-memory machine per process, so every simulated host
of a COMPUTE_HOSTS worker would otherwise report every domain in it as its own, and the conductor would
tell each host to remove the others' domains as strays. A domain belongs to the simulated host whose
instance directory holds it (``<state>/<host>/instances/<uuid>``): the directory is made before the
domain and removed after it, and survives a restart of the worker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from compute_tasks.drivers.base import ComputeDriver, DomainInventory, DomainStats


class HostScopedDriver:
    """A driver as one simulated host sees it: the same calls, but ``list_domains`` keeps this host's
    instances only, and only the first host reports the hypervisor's foreign domains."""

    def __init__(self, driver: ComputeDriver, instances_dir: Path, *, reports_foreign: bool) -> None:
        self._driver = driver
        self._instances_dir = instances_dir
        self._reports_foreign = reports_foreign

    def list_domains(self) -> DomainInventory:
        if not self._reports_foreign and not self._holds_instances():
            # No instance directory, so no domain of this host (the directory comes first and goes last):
            # the hypervisor's list of every host's domains need not be read.
            return DomainInventory(instances={}, foreign=[])
        inventory = self._driver.list_domains()
        return DomainInventory(
            instances={
                uuid: state for uuid, state in inventory.instances.items() if (self._instances_dir / uuid).is_dir()
            },
            foreign=list(inventory.foreign) if self._reports_foreign else [],
        )

    def domain_stats(self) -> list[DomainStats]:
        if not self._holds_instances():
            return []
        return [stats for stats in self._driver.domain_stats() if (self._instances_dir / stats.instance_uuid).is_dir()]

    def _holds_instances(self) -> bool:
        try:
            with os.scandir(self._instances_dir) as entries:
                return any(entry.is_dir() for entry in entries)
        except FileNotFoundError:
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)
