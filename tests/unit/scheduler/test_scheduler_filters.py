import pytest
from scheduler_builders import NOW, make_context, make_host, make_spec

from scheduler.filters import FILTERS, ComputeFilter, CoreFilter, DiskFilter, RamFilter

pytestmark = pytest.mark.unit


def passes(host_filter, host, spec=None, ctx=None):
    return host_filter.host_passes(host, spec or make_spec(), ctx or make_context())


def test_registry_is_keyed_by_each_filter_name():
    assert (FILTERS["ComputeFilter"], FILTERS["RamFilter"], FILTERS["CoreFilter"], FILTERS["DiskFilter"]) == (
        ComputeFilter,
        RamFilter,
        CoreFilter,
        DiskFilter,
    )
    assert all(name == cls.name for name, cls in FILTERS.items())
    assert len(FILTERS) == 14


# ComputeFilter


@pytest.mark.parametrize(
    ("age", "up"),
    [(0, True), (59.999, True), (60, True), (60.001, False), (3600, False), (-30, True)],
)
def test_compute_filter_judges_heartbeat_age_relative_to_now(age, up):
    assert passes(ComputeFilter(), make_host(last_heartbeat=NOW - age)) is up


def test_compute_filter_uses_the_configured_service_down_time():
    host = make_host(last_heartbeat=NOW - 20)
    assert passes(ComputeFilter(), host, ctx=make_context(service_down_time=30))
    assert not passes(ComputeFilter(), host, ctx=make_context(service_down_time=10))


def test_compute_filter_judges_against_the_given_now_not_the_wall_clock():
    host = make_host(last_heartbeat=1000.0)
    assert passes(ComputeFilter(), host, ctx=make_context(now=1060.0))
    assert not passes(ComputeFilter(), host, ctx=make_context(now=1060.5))


def test_compute_filter_rejects_a_host_that_never_reported():
    host = make_host(last_heartbeat=None)
    assert not passes(ComputeFilter(), host)
    assert ComputeFilter().rejection_reason(host, make_spec(), make_context()) == "down"


def test_compute_filter_rejects_a_disabled_host_even_when_up():
    host = make_host(enabled=False, disabled_reason="maintenance")
    assert not passes(ComputeFilter(), host)
    assert ComputeFilter().rejection_reason(host, make_spec(), make_context()) == "disabled"


def test_compute_filter_calls_a_host_both_disabled_and_down_disabled():
    host = make_host(enabled=False, last_heartbeat=NOW - 3600)
    assert ComputeFilter().rejection_reason(host, make_spec(), make_context()) == "disabled"


# RamFilter


def test_ram_filter_exact_fit_passes_and_one_mb_more_fails():
    host = make_host(memory_mb_total=4096, memory_mb_used=2048)
    assert passes(RamFilter(), host, make_spec(memory_mb=2048))
    assert not passes(RamFilter(), host, make_spec(memory_mb=2049))


def test_ram_filter_applies_the_allocation_ratio():
    host = make_host(memory_mb_total=4096, memory_mb_used=4096, ram_allocation_ratio=1.5)
    assert passes(RamFilter(), host, make_spec(memory_mb=2048))
    assert not passes(RamFilter(), host, make_spec(memory_mb=2049))


def test_ram_filter_keeps_reserved_host_memory_for_the_host():
    host = make_host(memory_mb_total=4096, memory_mb_used=1024, reserved_host_memory_mb=1024)
    assert passes(RamFilter(), host, make_spec(memory_mb=2048))
    assert not passes(RamFilter(), host, make_spec(memory_mb=2049))


def test_ram_filter_reserved_memory_is_not_overcommitted():
    host = make_host(memory_mb_total=4000, ram_allocation_ratio=2.0, reserved_host_memory_mb=1000)
    assert passes(RamFilter(), host, make_spec(memory_mb=7000))
    assert not passes(RamFilter(), host, make_spec(memory_mb=7001))


# CoreFilter


def test_core_filter_exact_fit_passes_and_one_vcpu_more_fails():
    host = make_host(vcpus_total=4, vcpus_used=2, cpu_allocation_ratio=1.0)
    assert passes(CoreFilter(), host, make_spec(vcpus=2))
    assert not passes(CoreFilter(), host, make_spec(vcpus=3))


def test_core_filter_applies_the_default_overcommit_ratio():
    host = make_host(vcpus_total=4, vcpus_used=14)
    assert passes(CoreFilter(), host, make_spec(vcpus=2))
    assert not passes(CoreFilter(), host, make_spec(vcpus=3))


def test_core_filter_never_gives_one_instance_more_vcpus_than_the_host_has():
    host = make_host(vcpus_total=4, vcpus_used=0, cpu_allocation_ratio=16.0)
    assert passes(CoreFilter(), host, make_spec(vcpus=4))
    assert not passes(CoreFilter(), host, make_spec(vcpus=5))


# DiskFilter


def test_disk_filter_exact_fit_passes_and_one_gb_more_fails():
    host = make_host(disk_gb_total=100, disk_gb_used=60)
    assert passes(DiskFilter(), host, make_spec(root_gb=40))
    assert not passes(DiskFilter(), host, make_spec(root_gb=41))


def test_disk_filter_applies_the_allocation_ratio():
    host = make_host(disk_gb_total=100, disk_gb_used=100, disk_allocation_ratio=2.0)
    assert passes(DiskFilter(), host, make_spec(root_gb=100))
    assert not passes(DiskFilter(), host, make_spec(root_gb=101))


def test_disk_filter_counts_ephemeral_and_swap():
    host = make_host(disk_gb_total=30)
    assert passes(DiskFilter(), host, make_spec(root_gb=20, ephemeral_gb=9, swap_mb=1024))
    assert not passes(DiskFilter(), host, make_spec(root_gb=20, ephemeral_gb=9, swap_mb=1025))
