"""The weighers beyond RAM: vCPUs, disk, instance counts, soft server-group policies and build failures."""

import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import GroupSpec, SchedulerConfig, select_hosts
from scheduler.weighers import (
    BuildFailureWeigher,
    CPUWeigher,
    DiskWeigher,
    NumInstancesWeigher,
    ServerGroupSoftAffinityWeigher,
    ServerGroupSoftAntiAffinityWeigher,
)

pytestmark = pytest.mark.unit


def rank(hosts, spec=None, **weighers):
    config = SchedulerConfig(enabled_filters=(), weighers=weighers)
    return [host.host for host in select_hosts(hosts, spec or make_spec(), now=NOW, config=config).hosts]


def test_raw_scores():
    host = make_host(vcpus_total=8, vcpus_used=6, disk_gb_total=100, disk_gb_used=40, num_instances=3, failed_builds=2)
    spec = make_spec()
    assert CPUWeigher().weigh(host, spec) == 26  # 8 * 4.0 - 6
    assert DiskWeigher().weigh(host, spec) == 60
    assert NumInstancesWeigher().weigh(host, spec) == 3
    assert BuildFailureWeigher().weigh(host, spec) == -2
    for weigher in (CPUWeigher(), DiskWeigher(), NumInstancesWeigher(), BuildFailureWeigher()):
        assert weigher.weigh_all([host, make_host()], spec) == [
            weigher.weigh(host, spec),
            weigher.weigh(make_host(), spec),
        ]


def test_cpu_and_disk_spread_with_positive_and_pack_with_negative_multipliers():
    hosts = [make_host("busy", vcpus_used=20, disk_gb_used=150), make_host("idle")]
    assert rank(hosts, CPUWeigher=1.0) == ["idle", "busy"]
    assert rank(hosts, CPUWeigher=-1.0) == ["busy", "idle"]
    assert rank(hosts, DiskWeigher=1.0) == ["idle", "busy"]


def test_num_instances_weigher():
    hosts = [make_host("crowded", num_instances=9), make_host("quiet", num_instances=1)]
    assert rank(hosts, NumInstancesWeigher=-1.0) == ["quiet", "crowded"]
    assert rank(hosts, NumInstancesWeigher=1.0) == ["crowded", "quiet"]


def test_soft_affinity_prefers_the_host_with_most_members_and_soft_anti_affinity_the_fewest():
    hosts = [make_host("none"), make_host("two"), make_host("one")]
    together = make_spec(group=GroupSpec(uuid="g", policy="soft-affinity", members={"two": 2, "one": 1}))
    apart = make_spec(group=GroupSpec(uuid="g", policy="soft-anti-affinity", members={"two": 2, "one": 1}))
    assert rank(hosts, together, ServerGroupSoftAffinityWeigher=1.0) == ["two", "one", "none"]
    assert rank(hosts, apart, ServerGroupSoftAntiAffinityWeigher=1.0) == ["none", "one", "two"]
    # Each weigher only speaks for its own policy.
    assert not ServerGroupSoftAffinityWeigher().applies(apart)
    assert not ServerGroupSoftAntiAffinityWeigher().applies(make_spec())


def test_a_host_that_failed_builds_loses_to_any_host_that_did_not():
    hosts = [make_host("roomy-but-failing", memory_mb_total=65536, failed_builds=1), make_host("small")]
    assert rank(hosts, RAMWeigher=1.0, BuildFailureWeigher=1_000_000.0) == ["small", "roomy-but-failing"]
    assert rank(hosts, RAMWeigher=1.0) == ["roomy-but-failing", "small"]


def test_default_weighers_spread_by_free_resources():
    hosts = [make_host("half", memory_mb_used=8192, vcpus_used=16, disk_gb_used=100), make_host("empty")]
    assert rank(hosts, **SchedulerConfig().weighers) == ["empty", "half"]


def test_combined_weights_equal_the_textbook_sum_of_normalised_scores():
    """The engine folds the scaling into one pass; the result must be the plain definition's."""
    import random

    from scheduler.weighers import WEIGHERS

    rng = random.Random(3)
    hosts = [
        make_host(
            f"h{index}",
            memory_mb_used=rng.randrange(0, 16000),
            vcpus_used=rng.randrange(0, 32),
            disk_gb_used=rng.randrange(0, 200),
            num_instances=rng.randrange(0, 9),
            failed_builds=rng.randrange(0, 3),
        )
        for index in range(30)
    ]
    members = {f"h{index}": rng.randrange(0, 3) for index in range(30)}
    multipliers = {name: rng.choice((-2.0, -0.5, 0.5, 1.0, 3.0)) for name in WEIGHERS}
    for policy in ("soft-affinity", "soft-anti-affinity"):
        spec = make_spec(group=GroupSpec(uuid="g", policy=policy, members=members))
        selection = select_hosts(hosts, spec, now=NOW, config=SchedulerConfig(enabled_filters=(), weighers=multipliers))

        expected = dict.fromkeys((host.host for host in hosts), 0.0)
        for name, multiplier in multipliers.items():
            weigher = WEIGHERS[name]()
            if not weigher.applies(spec):
                continue
            raw = [weigher.weigh(host, spec) for host in hosts]
            low, high = min(raw), max(raw)
            for host, value in zip(hosts, raw, strict=True):
                expected[host.host] += 0.0 if high == low else (value - low) / (high - low) * multiplier

        got = dict(zip((host.host for host in selection.hosts), selection.weights, strict=True))
        assert got == pytest.approx(expected)
        assert selection.weights == sorted(selection.weights, reverse=True)
