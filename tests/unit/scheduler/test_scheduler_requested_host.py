"""A request that names its host: every filter on that host alone, or (forced) only the filters a claim needs."""

import pytest
from scheduler_builders import NOW, make_host, make_spec

from scheduler import (
    GroupSpec,
    RequestSpec,
    SchedulerConfig,
    recheck_placements,
    select_hosts,
    select_hosts_for_batch,
)
from scheduler.filters import FILTERS

pytestmark = pytest.mark.unit

CONFIG = SchedulerConfig()


def select(hosts, spec):
    return select_hosts(hosts, spec, now=NOW, config=CONFIG)


def names(hosts):
    return [host.host for host in hosts]


def roomy_and_small():
    # "roomy" wins every weigher, so only the request can send an instance to "small".
    return [make_host("roomy", memory_mb_total=65536, vcpus_total=32), make_host("small", memory_mb_total=4096)]


def test_the_requested_host_is_chosen_when_another_would_win_by_weight():
    hosts = roomy_and_small()
    assert names(select(hosts, make_spec()).hosts) == ["roomy", "small"]

    selection = select(hosts, make_spec(requested_host="small"))

    assert names(selection.hosts) == ["small"]
    assert selection.alternates(3) == []  # nowhere else to go after a failed build
    step = selection.explanation.steps[0]
    assert (step.name, step.removed, step.reasons) == ("requested_host", 1, (("not the requested host", 1),))
    assert selection.explanation.render() == "The request named host small, which passes every filter."


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (make_host("h", memory_mb_used=15000), "RamFilter removed 1 (not enough RAM)"),
        (make_host("h", enabled=False), "ComputeFilter removed 1 (disabled)"),
        (make_host("h", last_heartbeat=NOW - 3600), "ComputeFilter removed 1 (down)"),
        (make_host("h", num_instances=50), "NumInstancesFilter removed 1 (too many instances)"),
    ],
)
def test_every_filter_still_runs_on_a_requested_host(host, why):
    hosts = [make_host("other"), host]
    selection = select(hosts, make_spec(requested_host="h"))
    assert selection.hosts == []
    # The sentence says which host was asked for and why it would not do, not how many others there were.
    assert selection.explanation.render() == f"No valid host was found. The request named host h: {why}"


def test_a_requested_zone_still_applies_to_a_requested_host():
    hosts = [make_host("h", availability_zone="az1")]
    selection = select(hosts, make_spec(requested_host="h", availability_zone="az2"))
    assert selection.explanation.render() == (
        "No valid host was found. The request named host h: "
        "AvailabilityZoneFilter removed 1 (in another availability zone)"
    )


@pytest.mark.parametrize("hosts", [[], [make_host("a"), make_host("b")]])
def test_a_requested_host_that_does_not_exist(hosts):
    for forced in (False, True):
        selection = select(hosts, make_spec(requested_host="ghost", force_host=forced))
        verb = "forced" if forced else "named"
        assert selection.explanation.render() == (
            f"No valid host was found. The request {verb} host ghost, which is not a compute host."
        )


def test_a_forced_host_bypasses_the_filters_a_claim_does_not_need():
    host = make_host(
        "h",
        availability_zone="az1",
        num_instances=50,
        cpu_arch="aarch64",
        aggregate_metadata={"filter_tenant_id": frozenset({"someone-else"})},
        instance_uuids=frozenset({"11111111-1111-1111-1111-111111111111"}),
    )
    demanding = {
        "project_id": "mine",
        "availability_zone": "az2",
        "image_properties": {"hw_architecture": "x86_64"},
        "flavor_extra_specs": {"capabilities:hypervisor_type": "QEMU", "ssd": "true"},
        "scheduler_hints": {"different_host": ["11111111-1111-1111-1111-111111111111"]},
    }
    assert select([host], make_spec(requested_host="h", **demanding)).hosts == []

    selection = select([host], make_spec(requested_host="h", force_host=True, **demanding))

    assert names(selection.hosts) == ["h"]
    assert [step.name for step in selection.explanation.steps] == [
        "requested_host",
        "ComputeFilter",
        "RamFilter",
        "CoreFilter",
        "DiskFilter",
        "ServerGroupAntiAffinityFilter",
        "ServerGroupAffinityFilter",
    ]
    assert selection.explanation.render() == (
        "The request forced host h, which passes the filters a forced host does not bypass."
    )


@pytest.mark.parametrize(
    ("host", "spec", "why"),
    [
        (make_host("h", memory_mb_used=15000), {}, "RamFilter removed 1 (not enough RAM)"),
        (make_host("h", vcpus_total=1), {}, "CoreFilter removed 1 (not enough vCPUs)"),
        (make_host("h", disk_gb_used=190), {}, "DiskFilter removed 1 (not enough disk)"),
        (make_host("h", enabled=False), {}, "ComputeFilter removed 1 (disabled)"),
        (make_host("h", last_heartbeat=None), {}, "ComputeFilter removed 1 (down)"),
        (
            make_host("h"),
            {"group": GroupSpec(uuid="g", policy="anti-affinity", members={"h": 1})},
            "ServerGroupAntiAffinityFilter removed 1 (holds a member of the anti-affinity group)",
        ),
        (
            make_host("h"),
            {"group": GroupSpec(uuid="g", policy="affinity", members={"elsewhere": 1})},
            "ServerGroupAffinityFilter removed 1 (not the affinity group's host)",
        ),
    ],
)
def test_a_forced_host_still_needs_room_a_working_host_and_the_groups_hard_policy(host, spec, why):
    selection = select([host], make_spec(requested_host="h", force_host=True, **spec))
    assert selection.hosts == []
    assert selection.explanation.render() == f"No valid host was found. The request forced host h: {why}"


def test_the_filters_a_forced_host_runs_are_those_guarding_a_claim():
    forced = sorted(name for name, cls in FILTERS.items() if cls.runs_for_forced_host)
    assert forced == [
        "ComputeFilter",
        "CoreFilter",
        "DiskFilter",
        "RamFilter",
        "ServerGroupAffinityFilter",
        "ServerGroupAntiAffinityFilter",
    ]


def test_a_forced_host_runs_only_the_enabled_filters():
    full = make_host("h", memory_mb_used=16384)
    config = SchedulerConfig(enabled_filters=("ComputeFilter", "NumInstancesFilter"))
    selection = select_hosts([full], make_spec(requested_host="h", force_host=True), now=NOW, config=config)
    assert names(selection.hosts) == ["h"]


def test_a_batch_on_a_requested_host_is_placed_there_whole_or_not_at_all():
    hosts = [*roomy_and_small(), make_host("h", memory_mb_total=6144)]
    batch = [make_spec(instance_uuid=f"vm-{index}", requested_host="h") for index in range(3)]
    placed = select_hosts_for_batch(hosts, batch, now=NOW, config=CONFIG)
    assert placed.failed is None
    assert names(placed.chosen) == ["h", "h", "h"]

    too_many = [make_spec(instance_uuid=f"vm-{index}", requested_host="h", force_host=True) for index in range(4)]
    failed = select_hosts_for_batch(hosts, too_many, now=NOW, config=CONFIG)
    assert failed.failed is not None
    assert failed.failed.explanation.render() == (
        "No valid host was found for instance 4 of 4 (3 placed before it). "
        "The request forced host h: RamFilter removed 1 (not enough RAM)"
    )


def test_the_recheck_under_the_lock_still_refuses_to_overcommit_a_forced_host():
    batch = [make_spec(instance_uuid=f"vm-{index}", requested_host="h", force_host=True) for index in range(2)]
    # The instance limit is bypassed for a forced host; its capacity is not.
    fits = [make_host("h", memory_mb_total=4096, num_instances=50)]
    assert recheck_placements(fits, batch, ["h", "h"], now=NOW, config=CONFIG) is None

    claimed_meanwhile = [make_host("h", memory_mb_total=4096, memory_mb_used=2048)]
    failed = recheck_placements(claimed_meanwhile, batch, ["h", "h"], now=NOW, config=CONFIG)
    assert failed is not None
    assert failed.explanation.render() == (
        "No valid host was found for instance 2 of 2 (1 placed before it). "
        "The request forced host h: RamFilter removed 1 (not enough RAM)"
    )


def test_the_explanation_as_data_names_the_requested_host():
    selection = select(roomy_and_small(), make_spec(requested_host="small", force_host=True))
    data = selection.explanation.as_dict()
    assert (data["requested_host"], data["forced_host"]) == ("small", True)
    assert data["steps"][0] == {
        "name": "requested_host",
        "hosts_before": 2,
        "removed": 1,
        "reasons": {"not the requested host": 1},
    }
    assert "requested_host" not in select(roomy_and_small(), make_spec()).explanation.as_dict()


def test_forcing_needs_a_host():
    with pytest.raises(ValueError, match="force_host"):
        RequestSpec(instance_uuid="x", vcpus=1, memory_mb=1, root_gb=1, force_host=True)
