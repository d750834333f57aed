import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import SchedulerConfig, select_hosts
from scheduler.weighers import WEIGHERS, BaseHostWeigher, RAMWeigher

pytestmark = pytest.mark.unit


class FreeDiskWeigher(BaseHostWeigher):
    name = "FreeDiskWeigher"

    def weigh(self, host, spec):
        return host.free_disk_gb


def rank(hosts, **weighers):
    config = SchedulerConfig(enabled_filters=(), weighers=weighers)
    return select_hosts(hosts, make_spec(), now=NOW, config=config)


def names(selection):
    return [host.host for host in selection.hosts]


def test_registry_is_keyed_by_each_weigher_name():
    assert WEIGHERS["RAMWeigher"] is RAMWeigher
    assert all(name == cls.name for name, cls in WEIGHERS.items())
    assert set(WEIGHERS) == {
        "RAMWeigher",
        "CPUWeigher",
        "DiskWeigher",
        "NumInstancesWeigher",
        "ServerGroupSoftAffinityWeigher",
        "ServerGroupSoftAntiAffinityWeigher",
        "BuildFailureWeigher",
    }


def test_ram_weigher_scores_free_ram_under_the_ratio():
    host = make_host(memory_mb_total=1000, memory_mb_used=200, ram_allocation_ratio=1.5, reserved_host_memory_mb=100)
    assert RAMWeigher().weigh(host, make_spec()) == 1200
    assert RAMWeigher().weigh_all([host, make_host(memory_mb_total=10)], make_spec()) == [1200, 10]


def test_positive_ram_multiplier_spreads_onto_the_emptiest_host():
    hosts = [
        make_host("a", memory_mb_used=8000),
        make_host("b", memory_mb_used=0),
        make_host("c", memory_mb_used=4000),
    ]
    assert names(rank(hosts, RAMWeigher=1.0)) == ["b", "c", "a"]


def test_negative_ram_multiplier_stacks_onto_the_fullest_host():
    hosts = [
        make_host("a", memory_mb_used=8000),
        make_host("b", memory_mb_used=0),
        make_host("c", memory_mb_used=4000),
    ]
    assert names(rank(hosts, RAMWeigher=-1.0)) == ["a", "c", "b"]


def test_weights_are_min_max_normalised_then_multiplied():
    hosts = [
        make_host("a", memory_mb_total=300),
        make_host("b", memory_mb_total=100),
        make_host("c", memory_mb_total=200),
    ]
    selection = rank(hosts, RAMWeigher=2.0)
    assert names(selection) == ["a", "c", "b"]
    assert selection.weights == pytest.approx([2.0, 1.0, 0.0])


def test_equal_scores_weigh_zero_without_dividing_by_zero_and_keep_the_given_order():
    hosts = [make_host(name) for name in ("c", "a", "b")]
    selection = rank(hosts, RAMWeigher=1.0)
    assert names(selection) == ["c", "a", "b"]
    assert selection.weights == [0.0, 0.0, 0.0]


def test_a_single_host_is_weighed_zero():
    selection = rank([make_host("only")], RAMWeigher=1.0)
    assert names(selection) == ["only"]
    assert selection.weights == [0.0]


def test_a_zero_multiplier_turns_a_weigher_off():
    hosts = [make_host("a", memory_mb_used=8000), make_host("b")]
    assert names(rank(hosts, RAMWeigher=0.0)) == ["a", "b"]


def test_normalisation_puts_weighers_of_different_units_on_one_scale(monkeypatch):
    monkeypatch.setitem(WEIGHERS, FreeDiskWeigher.name, FreeDiskWeigher)
    # Raw disk numbers are tiny next to MB of RAM; after scaling each to 0..1 the multipliers decide.
    hosts = [
        make_host("ram-rich", memory_mb_total=32768, disk_gb_total=100),
        make_host("disk-rich", memory_mb_total=16384, disk_gb_total=1000),
        make_host("middle", memory_mb_total=24576, disk_gb_total=550),
    ]

    selection = rank(hosts, RAMWeigher=1.0, FreeDiskWeigher=3.0)

    assert names(selection) == ["disk-rich", "middle", "ram-rich"]
    assert selection.weights == pytest.approx([3.0, 2.0, 1.0])


def test_equal_scores_of_one_weigher_leave_the_other_to_decide(monkeypatch):
    monkeypatch.setitem(WEIGHERS, FreeDiskWeigher.name, FreeDiskWeigher)
    hosts = [make_host("small", disk_gb_total=100), make_host("big", disk_gb_total=200)]
    selection = rank(hosts, RAMWeigher=5.0, FreeDiskWeigher=1.0)
    assert names(selection) == ["big", "small"]
    assert selection.weights == pytest.approx([1.0, 0.0])
