"""Host filters and their registry.

A filter is chosen by the name listed in ``SchedulerConfig.enabled_filters``. To add one, write a
``BaseHostFilter`` subclass in the module for its family and add it to ``FILTERS`` below.
"""

from __future__ import annotations

from scheduler.filters.aggregates import AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation
from scheduler.filters.availability_zone import AvailabilityZoneFilter
from scheduler.filters.base import BaseHostFilter
from scheduler.filters.capabilities import ComputeCapabilitiesFilter
from scheduler.filters.capacity import CoreFilter, DiskFilter, NumInstancesFilter, RamFilter
from scheduler.filters.compute import ComputeFilter
from scheduler.filters.image_properties import ImagePropertiesFilter
from scheduler.filters.same_host import DifferentHostFilter, SameHostFilter
from scheduler.filters.server_group import ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter

FILTERS: dict[str, type[BaseHostFilter]] = {
    cls.name: cls
    for cls in (
        ComputeFilter,
        AvailabilityZoneFilter,
        RamFilter,
        CoreFilter,
        DiskFilter,
        NumInstancesFilter,
        ComputeCapabilitiesFilter,
        ImagePropertiesFilter,
        AggregateInstanceExtraSpecsFilter,
        AggregateMultiTenancyIsolation,
        SameHostFilter,
        DifferentHostFilter,
        ServerGroupAntiAffinityFilter,
        ServerGroupAffinityFilter,
    )
}

__all__ = [
    "FILTERS",
    "AggregateInstanceExtraSpecsFilter",
    "AggregateMultiTenancyIsolation",
    "AvailabilityZoneFilter",
    "BaseHostFilter",
    "ComputeCapabilitiesFilter",
    "ComputeFilter",
    "CoreFilter",
    "DifferentHostFilter",
    "DiskFilter",
    "ImagePropertiesFilter",
    "NumInstancesFilter",
    "RamFilter",
    "SameHostFilter",
    "ServerGroupAffinityFilter",
    "ServerGroupAntiAffinityFilter",
]
