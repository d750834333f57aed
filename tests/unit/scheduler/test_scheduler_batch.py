"""Placing a multi-create request, ranking only the best few, and checking a decision again."""

import random

import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import GroupSpec, SchedulerConfig, recheck_placements, select_hosts, select_hosts_for_batch

pytestmark = pytest.mark.unit

CONFIG = SchedulerConfig()


def specs(count, **overrides):
    return [make_spec(instance_uuid=f"vm-{index}", **overrides) for index in range(count)]


def test_each_instance_sees_the_ones_placed_before_it():
    hosts = [make_host("a", memory_mb_total=6144), make_host("b", memory_mb_total=4096)]
    batch = select_hosts_for_batch(hosts, specs(5), now=NOW, config=CONFIG)
    assert batch.failed is None
    assert [host.host for host in batch.chosen] == ["a", "b", "a", "b", "a"]
    # Each choice is the snapshot with the earlier claims consumed; the caller's hosts are untouched.
    assert batch.selections[2].hosts[0].memory_mb_used == 2048
    assert hosts[0].memory_mb_used == 0


def test_a_batch_that_does_not_fit_stops_at_the_first_instance_without_a_host():
    hosts = [make_host("a", memory_mb_total=4096), make_host("b", memory_mb_total=2048)]
    batch = select_hosts_for_batch(hosts, specs(4), now=NOW, config=CONFIG)
    assert len(batch.selections) == 3
    assert batch.failed is not None and batch.failed.hosts == []
    assert batch.failed.explanation.render() == (
        "No valid host was found for instance 4 of 4 (3 placed before it). "
        "2 hosts: RamFilter removed 2 (not enough RAM)"
    )


def test_hard_and_soft_group_policies_hold_across_the_batch():
    hosts = [make_host(name) for name in "abc"]
    spread = specs(4, group=GroupSpec(uuid="g", policy="anti-affinity"))
    batch = select_hosts_for_batch(hosts, spread, now=NOW, config=CONFIG)
    assert sorted(host.host for host in batch.chosen) == ["a", "b", "c"]
    assert "ServerGroupAntiAffinityFilter removed 3" in batch.failed.explanation.render()

    together = select_hosts_for_batch(
        hosts, specs(3, group=GroupSpec(uuid="g", policy="affinity")), now=NOW, config=CONFIG
    )
    assert len({host.host for host in together.chosen}) == 1

    soft = select_hosts_for_batch(
        hosts, specs(3, group=GroupSpec(uuid="g", policy="soft-anti-affinity")), now=NOW, config=CONFIG
    )
    assert sorted(host.host for host in soft.chosen) == ["a", "b", "c"]


def test_different_host_from_an_earlier_member_of_the_batch():
    hosts = [make_host("a"), make_host("b")]
    batch = [
        make_spec(instance_uuid="vm-0"),
        make_spec(instance_uuid="vm-1", scheduler_hints={"different_host": "vm-0"}),
    ]
    chosen = select_hosts_for_batch(hosts, batch, now=NOW, config=CONFIG).chosen
    assert chosen[0].host != chosen[1].host


@pytest.mark.parametrize("limit", [1, 3, 10, 50])
def test_a_limit_ranks_the_same_best_hosts_as_a_full_sort(limit):
    rng = random.Random(7)
    hosts = [
        make_host(f"h{index}", memory_mb_used=rng.choice((0, 1024, 2048, 4096)), vcpus_used=rng.randrange(0, 30))
        for index in range(40)
    ]
    full = select_hosts(hosts, make_spec(), now=NOW, config=CONFIG)
    cut = select_hosts(hosts, make_spec(), now=NOW, config=CONFIG, limit=limit)
    assert cut.hosts == full.hosts[:limit]
    assert cut.weights == full.weights[:limit]
    assert cut.explanation == full.explanation


def test_recheck_accepts_a_decision_that_still_fits_and_names_the_first_that_does_not():
    spec_list = specs(2)
    hosts = [make_host("a", memory_mb_total=4096)]
    assert recheck_placements(hosts, spec_list, ["a", "a"], now=NOW, config=CONFIG) is None

    # Someone else claimed 2 GB on "a" meanwhile: the second instance no longer fits.
    taken = [make_host("a", memory_mb_total=4096, memory_mb_used=2048)]
    failed = recheck_placements(taken, spec_list, ["a", "a"], now=NOW, config=CONFIG)
    assert failed is not None
    assert failed.explanation.render() == (
        "No valid host was found for instance 2 of 2 (1 placed before it). 1 host: RamFilter removed 1 (not enough RAM)"
    )


def test_recheck_enforces_the_group_as_it_grows():
    group = GroupSpec(uuid="g", policy="anti-affinity")
    spec_list = specs(2, group=group)
    hosts = [make_host("a"), make_host("b")]
    assert recheck_placements(hosts, spec_list, ["a", "b"], now=NOW, config=CONFIG) is None
    assert recheck_placements(hosts, spec_list, ["a", "a"], now=NOW, config=CONFIG) is not None
