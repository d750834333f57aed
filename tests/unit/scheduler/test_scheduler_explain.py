import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import Explanation, NoValidHost, SchedulerConfig, select_hosts
from scheduler.explain import FilterStep

pytestmark = pytest.mark.unit


def explain(hosts, spec=None, **config):
    return select_hosts(hosts, spec or make_spec(), now=NOW, config=SchedulerConfig(**config)).explanation


def down(name):
    return make_host(name, last_heartbeat=NOW - 3600)


def low_on_ram(name):
    return make_host(name, memory_mb_used=15000)


def test_mixed_removals_with_a_host_left():
    hosts = [down("d1"), down("d2"), *(low_on_ram(f"r{index}") for index in range(7)), make_host("ok")]
    assert (
        explain(hosts).render()
        == "10 hosts: ComputeFilter removed 2 (down), RamFilter removed 7 (not enough RAM), 1 left"
    )


def test_mixed_removals_with_no_host_left():
    hosts = [down("d1"), down("d2"), *(low_on_ram(f"r{index}") for index in range(8))]
    explanation = explain(hosts)
    assert explanation.no_valid_host
    assert str(explanation) == (
        "No valid host was found. 10 hosts: ComputeFilter removed 2 (down), RamFilter removed 8 (not enough RAM)"
    )


def test_no_compute_hosts():
    explanation = explain([])
    assert explanation.no_valid_host
    assert explanation.render() == "No valid host was found. There are no compute hosts."


def test_several_reasons_from_one_filter_are_counted_most_frequent_first():
    hosts = [make_host("off", enabled=False), down("d1"), down("d2"), make_host("ok")]
    assert explain(hosts).render() == "4 hosts: ComputeFilter removed 3 (2 down, 1 disabled), 1 left"


def test_ignore_hosts_are_listed_first():
    hosts = [make_host("tried"), down("d1"), make_host("ok")]
    spec = make_spec(ignore_hosts=frozenset({"tried", "not-a-host"}))
    assert (
        explain(hosts, spec).render()
        == "3 hosts: ignore_hosts removed 1 (excluded by the request), ComputeFilter removed 1 (down), 1 left"
    )


def test_every_capacity_filter_gives_its_reason():
    hosts = [
        make_host("ram", memory_mb_used=16000),
        make_host("cpu", vcpus_used=31),
        make_host("disk", disk_gb_used=190),
    ]
    assert explain(hosts).render() == (
        "No valid host was found. 3 hosts: RamFilter removed 1 (not enough RAM), "
        "CoreFilter removed 1 (not enough vCPUs), DiskFilter removed 1 (not enough disk)"
    )


def test_nothing_removed():
    assert explain([make_host("a"), make_host("b")]).render() == "2 hosts: none removed, 2 left"


def test_one_host_is_singular():
    assert explain([down("d1")]).render() == "No valid host was found. 1 host: ComputeFilter removed 1 (down)"


def test_steps_record_every_filter_that_ran_in_order():
    explanation = explain(
        [down("d1"), low_on_ram("r1"), make_host("ok")],
        enabled_filters=("ComputeFilter", "RamFilter", "CoreFilter", "AvailabilityZoneFilter", "DiskFilter"),
    )
    assert explanation.steps == (
        FilterStep("ComputeFilter", 3, 1, (("down", 1),)),
        FilterStep("RamFilter", 2, 1, (("not enough RAM", 1),)),
        FilterStep("CoreFilter", 1, 0),
        FilterStep("AvailabilityZoneFilter", 1, 0),  # does not apply to this request, recorded all the same
        FilterStep("DiskFilter", 1, 0),
    )
    assert explanation.remaining == 1


def test_as_dict_is_plain_data_with_the_sentence():
    explanation = Explanation(
        total_hosts=2, steps=(FilterStep("RamFilter", 2, 1, (("not enough RAM", 1),)),), remaining=1
    )
    assert explanation.as_dict() == {
        "total_hosts": 2,
        "remaining": 1,
        "instance_index": 0,
        "batch_size": 1,
        "steps": [{"name": "RamFilter", "hosts_before": 2, "removed": 1, "reasons": {"not enough RAM": 1}}],
        "summary": "2 hosts: RamFilter removed 1 (not enough RAM), 1 left",
    }


def test_no_valid_host_text_is_the_explanation():
    explanation = Explanation(total_hosts=0)
    error = NoValidHost(explanation)
    assert str(error) == explanation.render()
    assert error.explanation is explanation
