"""What each filter beyond capacity means: zones, capabilities, image properties, aggregates, tenants,
hints, instance counts and hard server-group policies."""

import pytest
from scheduler_builders import NOW, make_context, make_host, make_spec

from scheduler import GroupSpec, SchedulerConfig, select_hosts
from scheduler.aggregates import merge_metadata
from scheduler.filters import (
    AggregateInstanceExtraSpecsFilter,
    AggregateMultiTenancyIsolation,
    AvailabilityZoneFilter,
    ComputeCapabilitiesFilter,
    DifferentHostFilter,
    ImagePropertiesFilter,
    NumInstancesFilter,
    SameHostFilter,
    ServerGroupAffinityFilter,
    ServerGroupAntiAffinityFilter,
)
from scheduler.filters.image_properties import canonical_arch, libvirt_version_tuple, version_satisfies

pytestmark = pytest.mark.unit


def passes(host_filter, host, spec, ctx=None):
    ctx = ctx or make_context()
    # A filter that does not apply lets every host through; the engine then skips it.
    return not host_filter.applies(spec, ctx) or host_filter.host_passes(host, spec, ctx)


def meta(**values):
    return merge_metadata([{key: str(value) for key, value in values.items()}])


# AvailabilityZoneFilter


def test_zone_filter_only_applies_to_requests_that_name_a_zone():
    host = make_host(availability_zone="az1")
    assert passes(AvailabilityZoneFilter(), host, make_spec())
    assert passes(AvailabilityZoneFilter(), host, make_spec(availability_zone="az1"))
    assert not passes(AvailabilityZoneFilter(), host, make_spec(availability_zone="az2"))


# ComputeCapabilitiesFilter


@pytest.mark.parametrize(
    ("specs", "ok"),
    [
        ({"capabilities:hypervisor_type": "QEMU"}, True),
        ({"capabilities:hypervisor_type": "s== TEST"}, False),
        ({"capabilities:cpu_info:arch": "<or> aarch64 <or> x86_64"}, True),
        ({"capabilities:hypervisor_version": ">= 8000000"}, True),
        ({"capabilities:hypervisor_version": ">= 9000000"}, False),
        ({"capabilities:free_ram_mb": ">= 16384"}, True),
        ({"capabilities:vcpus_total": "= 16"}, False),
        ({"capabilities:no_such_thing": "1"}, False),  # an unknown capability is never satisfied
        ({"hw:cpu_policy": "dedicated", "ssd": "true"}, True),  # other scopes are not this filter's
    ],
)
def test_capabilities_filter(specs, ok):
    host = make_host(hypervisor_type="QEMU", hypervisor_version=8_002_000, cpu_arch="x86_64", vcpus_total=8)
    assert passes(ComputeCapabilitiesFilter(), host, make_spec(flavor_extra_specs=specs)) is ok


# ImagePropertiesFilter


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        ({}, None),
        ({"hw_architecture": "x86_64"}, None),
        ({"architecture": "amd64"}, None),  # the older key and an alias
        ({"hw_architecture": "aarch64"}, "other architecture"),
        ({"img_hv_type": "qemu"}, None),  # case does not matter
        ({"img_hv_type": "xen"}, "other hypervisor type"),
        ({"hw_vm_mode": "hvm"}, None),
        ({"hw_vm_mode": "xen"}, "unsupported VM mode"),
        ({"img_hv_requested_version": ">=8.0"}, None),
        ({"img_hv_requested_version": ">=8.0, <8.2"}, "hypervisor version"),
        ({"img_hv_requested_version": "~8"}, "hypervisor version"),  # unreadable never matches
    ],
)
def test_image_properties_filter(props, problem):
    host = make_host(hypervisor_type="QEMU", hypervisor_version=8_002_000, cpu_arch="x86_64")
    spec = make_spec(image_properties=props)
    assert passes(ImagePropertiesFilter(), host, spec) is (problem is None)
    if problem:
        assert ImagePropertiesFilter().rejection_reason(host, spec, make_context()) == problem


def test_image_properties_on_a_host_that_never_said_what_it_is():
    assert not passes(ImagePropertiesFilter(), make_host(), make_spec(image_properties={"hw_architecture": "x86_64"}))
    assert not passes(
        ImagePropertiesFilter(), make_host(), make_spec(image_properties={"img_hv_requested_version": ">=1"})
    )


def test_version_helpers():
    assert libvirt_version_tuple(8_002_001) == (8, 2, 1)
    assert version_satisfies((8, 2, 0), "8.2")
    assert not version_satisfies((8, 2, 0), "!=8.2.0")
    assert not version_satisfies((8, 2, 0), "")
    assert (canonical_arch("AMD64"), canonical_arch("arm64"), canonical_arch("i386")) == ("x86_64", "aarch64", "i686")


# AggregateInstanceExtraSpecsFilter


@pytest.mark.parametrize(
    ("specs", "ok"),
    [
        ({"ssd": "true"}, True),
        ({"aggregate_instance_extra_specs:ssd": "true"}, True),
        ({"aggregate_instance_extra_specs:ssd": "false"}, False),
        ({"ssd": "<or> yes <or> true"}, True),
        ({"rack": "r1", "ssd": "true"}, True),  # each key may be satisfied by another aggregate
        ({"gpu": "true"}, False),  # a key no aggregate of the host has
        ({"capabilities:cpu_arch": "x86_64", "quota:disk_read_iops_sec": "100"}, True),  # not this scope
    ],
)
def test_aggregate_instance_extra_specs_filter(specs, ok):
    host = make_host(aggregate_metadata=merge_metadata([{"ssd": "true"}, {"rack": "r1"}]))
    assert passes(AggregateInstanceExtraSpecsFilter(), host, make_spec(flavor_extra_specs=specs)) is ok


def test_aggregate_instance_extra_specs_on_a_host_in_no_aggregate():
    assert not passes(AggregateInstanceExtraSpecsFilter(), make_host(), make_spec(flavor_extra_specs={"ssd": "true"}))


# AggregateMultiTenancyIsolation


def test_tenant_isolation_keeps_reserved_hosts_for_their_projects_and_leaves_others_open():
    reserved = make_host(aggregate_metadata=meta(filter_tenant_id="p1,p2"))
    open_host = make_host(aggregate_metadata=meta(ssd="true"))
    assert passes(AggregateMultiTenancyIsolation(), reserved, make_spec(project_id="p2"))
    assert not passes(AggregateMultiTenancyIsolation(), reserved, make_spec(project_id="p3"))
    assert passes(AggregateMultiTenancyIsolation(), open_host, make_spec(project_id="p3"))
    assert passes(AggregateMultiTenancyIsolation(), make_host(), make_spec(project_id="p3"))


# SameHostFilter / DifferentHostFilter


def test_same_host_and_different_host():
    host = make_host(instance_uuids=frozenset({"vm-a"}))
    assert passes(SameHostFilter(), host, make_spec(scheduler_hints={"same_host": ["vm-b", "vm-a"]}))
    assert not passes(SameHostFilter(), host, make_spec(scheduler_hints={"same_host": "vm-b"}))
    assert not passes(DifferentHostFilter(), host, make_spec(scheduler_hints={"different_host": "vm-a"}))
    assert passes(DifferentHostFilter(), host, make_spec(scheduler_hints={"different_host": ["vm-b"]}))
    assert passes(SameHostFilter(), host, make_spec(scheduler_hints={"same_host": []}))


# NumInstancesFilter


def test_num_instances_uses_the_aggregates_limit_else_the_configured_one():
    ctx = make_context(max_instances_per_host=3)
    assert passes(NumInstancesFilter(), make_host(num_instances=2), make_spec(), ctx)
    assert not passes(NumInstancesFilter(), make_host(num_instances=3), make_spec(), ctx)
    assert passes(NumInstancesFilter(), make_host(num_instances=3, max_instances=4), make_spec(), ctx)
    assert not passes(NumInstancesFilter(), make_host(num_instances=1, max_instances=1), make_spec(), ctx)


# Server groups


def test_anti_affinity_counts_members_per_host_up_to_max_server_per_host():
    host = make_host("h1")
    one_there = GroupSpec(uuid="g", policy="anti-affinity", members={"h1": 1})
    assert not passes(ServerGroupAntiAffinityFilter(), host, make_spec(group=one_there))
    pairs = GroupSpec(uuid="g", policy="anti-affinity", max_server_per_host=2, members={"h1": 1})
    assert passes(ServerGroupAntiAffinityFilter(), host, make_spec(group=pairs))
    assert passes(ServerGroupAntiAffinityFilter(), make_host("h2"), make_spec(group=one_there))


def test_affinity_sends_members_to_the_groups_host_and_the_first_anywhere():
    members = GroupSpec(uuid="g", policy="affinity", members={"h1": 2})
    assert passes(ServerGroupAffinityFilter(), make_host("h1"), make_spec(group=members))
    assert not passes(ServerGroupAffinityFilter(), make_host("h2"), make_spec(group=members))
    empty = GroupSpec(uuid="g", policy="affinity")
    assert passes(ServerGroupAffinityFilter(), make_host("h2"), make_spec(group=empty))


def test_soft_policies_are_not_filters():
    soft = GroupSpec(uuid="g", policy="soft-anti-affinity", members={"h1": 5})
    assert passes(ServerGroupAntiAffinityFilter(), make_host("h1"), make_spec(group=soft))


def test_group_spec_checks_its_values():
    with pytest.raises(ValueError, match="policy"):
        GroupSpec(uuid="g", policy="together")
    with pytest.raises(ValueError, match="max_server_per_host"):
        GroupSpec(uuid="g", policy="anti-affinity", max_server_per_host=0)
    assert GroupSpec(uuid="g", policy="affinity", members={"h1": 0}).hosts == frozenset()


def test_the_explanation_names_every_filter_that_removed_hosts():
    hosts = [
        make_host("down", last_heartbeat=NOW - 3600),
        make_host("elsewhere", availability_zone="az2"),
        make_host("full", availability_zone="az1", memory_mb_used=16384),
        make_host("member", availability_zone="az1"),
        make_host("free", availability_zone="az1"),
    ]
    spec = make_spec(availability_zone="az1", group=GroupSpec(uuid="g", policy="anti-affinity", members={"member": 1}))
    selection = select_hosts(hosts, spec, now=NOW, config=SchedulerConfig())
    assert [host.host for host in selection.hosts] == ["free"]
    assert selection.explanation.render() == (
        "5 hosts: ComputeFilter removed 1 (down), AvailabilityZoneFilter removed 1 (in another availability zone), "
        "RamFilter removed 1 (not enough RAM), "
        "ServerGroupAntiAffinityFilter removed 1 (holds a member of the anti-affinity group), 1 left"
    )
