"""Host weighers and their registry.

A weigher counts when its name is a key of ``SchedulerConfig.weighers``, with the multiplier as the
value. To add one, write a ``BaseHostWeigher`` subclass in the module for its family and add it to
``WEIGHERS``.
"""

from __future__ import annotations

from scheduler.weighers.base import BaseHostWeigher
from scheduler.weighers.build_failure import BuildFailureWeigher
from scheduler.weighers.ram import RAMWeigher
from scheduler.weighers.resources import CPUWeigher, DiskWeigher, NumInstancesWeigher
from scheduler.weighers.server_group import ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher

WEIGHERS: dict[str, type[BaseHostWeigher]] = {
    cls.name: cls
    for cls in (
        RAMWeigher,
        CPUWeigher,
        DiskWeigher,
        NumInstancesWeigher,
        ServerGroupSoftAffinityWeigher,
        ServerGroupSoftAntiAffinityWeigher,
        BuildFailureWeigher,
    )
}

__all__ = [
    "WEIGHERS",
    "BaseHostWeigher",
    "BuildFailureWeigher",
    "CPUWeigher",
    "DiskWeigher",
    "NumInstancesWeigher",
    "RAMWeigher",
    "ServerGroupSoftAffinityWeigher",
    "ServerGroupSoftAntiAffinityWeigher",
]
