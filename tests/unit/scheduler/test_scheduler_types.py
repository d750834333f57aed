import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import SchedulerConfig
from scheduler.filters import FILTERS
from scheduler.types import (
    DEFAULT_CPU_ALLOCATION_RATIO,
    DEFAULT_DISK_ALLOCATION_RATIO,
    DEFAULT_RAM_ALLOCATION_RATIO,
)
from scheduler.weighers import WEIGHERS

pytestmark = pytest.mark.unit


def test_default_allocation_ratios_overcommit_cpu_only():
    host = make_host()
    assert (host.cpu_allocation_ratio, host.ram_allocation_ratio, host.disk_allocation_ratio) == (
        4.0,
        1.0,
        1.0,
    )
    assert (DEFAULT_CPU_ALLOCATION_RATIO, DEFAULT_RAM_ALLOCATION_RATIO, DEFAULT_DISK_ALLOCATION_RATIO) == (
        4.0,
        1.0,
        1.0,
    )


def test_free_capacity_applies_ratios_and_keeps_reserved_memory_out_of_the_ratio():
    host = make_host(
        vcpus_total=8,
        vcpus_used=10,
        cpu_allocation_ratio=2.0,
        memory_mb_total=1000,
        memory_mb_used=300,
        ram_allocation_ratio=1.5,
        reserved_host_memory_mb=100,
        disk_gb_total=100,
        disk_gb_used=30,
        disk_allocation_ratio=1.2,
    )
    assert host.free_vcpus == 6
    assert host.free_ram_mb == 1100
    assert host.free_disk_gb == pytest.approx(90)


def test_free_capacity_can_go_negative_when_a_ratio_is_lowered():
    host = make_host(memory_mb_total=1000, memory_mb_used=1200, ram_allocation_ratio=1.0)
    assert host.free_ram_mb == -200


def test_host_state_is_frozen():
    host = make_host()
    with pytest.raises(AttributeError):
        host.memory_mb_used = 1  # type: ignore[misc]


def test_consume_returns_a_new_state_with_the_claim_added():
    host = make_host(vcpus_used=1, memory_mb_used=1000, disk_gb_used=10, num_instances=1)
    spec = make_spec(vcpus=2, memory_mb=512, root_gb=20, ephemeral_gb=5, swap_mb=1)

    after = host.consume(spec)

    assert (after.vcpus_used, after.memory_mb_used, after.disk_gb_used, after.num_instances) == (
        3,
        1512,
        36,
        2,
    )
    assert after.free_ram_mb == host.free_ram_mb - 512
    assert after.free_vcpus == host.free_vcpus - 2
    assert after.free_disk_gb == host.free_disk_gb - 26
    assert (host.vcpus_used, host.memory_mb_used, host.disk_gb_used, host.num_instances) == (1, 1000, 10, 1)
    assert after.host == host.host


def test_request_disk_counts_root_ephemeral_and_swap_rounded_up_to_whole_gb():
    assert make_spec(root_gb=10).disk_gb == 10
    assert make_spec(root_gb=10, ephemeral_gb=5, swap_mb=1).disk_gb == 16
    assert make_spec(root_gb=10, swap_mb=2048).disk_gb == 12


@pytest.mark.parametrize(
    ("heartbeat", "up"),
    [(NOW - 60, True), (NOW - 60.001, False), (NOW + 30, True), (None, False)],
)
def test_is_up_judges_heartbeat_age_against_the_given_clock(heartbeat, up):
    assert make_host(last_heartbeat=heartbeat).is_up(now=NOW, service_down_time=60) is up


def test_config_defaults():
    config = SchedulerConfig()
    assert config.enabled_filters[:3] == ("ComputeFilter", "AvailabilityZoneFilter", "RamFilter")
    assert set(config.enabled_filters) == set(FILTERS)
    assert set(config.weighers) == set(WEIGHERS)
    assert config.weighers["RAMWeigher"] == 1.0
    assert config.weighers["BuildFailureWeigher"] == 1_000_000.0
    assert config.max_instances_per_host == 50
    assert config.service_down_time == 60
    assert config.host_subset_size == 1


def test_config_defaults_are_not_shared_between_instances():
    first = SchedulerConfig()
    first.weighers["RAMWeigher"] = -1.0  # type: ignore[index]
    assert SchedulerConfig().weighers["RAMWeigher"] == 1.0


def test_config_accepts_a_list_of_filters_from_settings():
    assert SchedulerConfig(enabled_filters=["RamFilter"]).enabled_filters == ("RamFilter",)


@pytest.mark.parametrize("values", [{"service_down_time": 0}, {"host_subset_size": 0}, {"max_instances_per_host": 0}])
def test_config_rejects_nonsense_numbers(values):
    with pytest.raises(ValueError, match=next(iter(values))):
        SchedulerConfig(**values)


def test_config_from_settings_mapping_with_upper_case_keys():
    config = SchedulerConfig.from_mapping(
        {"ENABLED_FILTERS": ["ComputeFilter"], "WEIGHERS": {"RAMWeigher": -1.0}, "SERVICE_DOWN_TIME": 30}
    )
    assert config == SchedulerConfig(
        enabled_filters=("ComputeFilter",), weighers={"RAMWeigher": -1.0}, service_down_time=30
    )


def test_config_from_settings_mapping_names_unknown_keys():
    with pytest.raises(ValueError, match="unknown scheduler settings: filters"):
        SchedulerConfig.from_mapping({"FILTERS": ["ComputeFilter"]})
