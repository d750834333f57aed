"""Every filter's inlined ``filter_all`` must agree with its per-host ``host_passes``, and ``applies``
must only ever say False when every host would pass."""

import itertools

import pytest
from scheduler_builders import NOW, make_context, make_host, make_spec

from scheduler import GroupSpec
from scheduler.aggregates import merge_metadata
from scheduler.filters import FILTERS

pytestmark = pytest.mark.unit

PROJECT = "c0ffee00c0ffee00c0ffee00c0ffee00"
OTHER_PROJECT = "dead0000dead0000dead0000dead0000"

METADATA = [
    {},
    {"availability_zone": "az1", "ssd": "true"},
    {"availability_zone": "az2", "filter_tenant_id": PROJECT, "max_instances_per_host": "2"},
    {"filter_tenant_id_2": f"{OTHER_PROJECT},x", "ssd": "false"},
]


def _host_grid():
    hosts = []
    grid = itertools.product(
        (True, False),  # enabled
        (None, 0, 61),  # heartbeat age
        (8, 16),  # vCPUs
        (0, 14336, 14337),  # RAM used
        (0, 31),  # vCPUs used
        (0, 181),  # disk used
        range(len(METADATA)),
        (("x86_64", "QEMU", 8_002_000), ("aarch64", "TEST", 2_000)),
        (0, 3),  # instances
    )
    for index, (enabled, age, vcpus, used_mb, used_vcpus, used_gb, meta, (arch, hv, version), count) in enumerate(grid):
        metadata = merge_metadata([METADATA[meta]])
        name = f"compute-{index}"
        hosts.append(
            make_host(
                name,
                enabled=enabled,
                last_heartbeat=None if age is None else NOW - age,
                vcpus_total=vcpus,
                memory_mb_used=used_mb,
                vcpus_used=used_vcpus,
                disk_gb_used=used_gb,
                aggregate_metadata=metadata,
                availability_zone=min(metadata.get("availability_zone", {"nova"})),
                max_instances=2 if meta == 2 else None,
                cpu_arch=arch,
                hypervisor_type=hv,
                hypervisor_version=version,
                num_instances=count,
                instance_uuids=frozenset({f"vm-{index % 7}"}),
            )
        )
    return hosts


HOSTS = _host_grid()
MEMBERS = {host.host: 1 for host in HOSTS[::5]}

# A request that makes each filter do real work.
SPECS = {
    "ComputeFilter": make_spec(),
    "AvailabilityZoneFilter": make_spec(availability_zone="az1"),
    "RamFilter": make_spec(memory_mb=2048),
    "CoreFilter": make_spec(vcpus=9),
    "DiskFilter": make_spec(root_gb=20),
    "NumInstancesFilter": make_spec(),
    "ComputeCapabilitiesFilter": make_spec(flavor_extra_specs={"capabilities:cpu_arch": "x86_64"}),
    "ImagePropertiesFilter": make_spec(image_properties={"hw_architecture": "amd64", "img_hv_type": "qemu"}),
    "AggregateInstanceExtraSpecsFilter": make_spec(flavor_extra_specs={"ssd": "true"}),
    "AggregateMultiTenancyIsolation": make_spec(project_id=PROJECT),
    "SameHostFilter": make_spec(scheduler_hints={"same_host": ["vm-1", "vm-2"]}),
    "DifferentHostFilter": make_spec(scheduler_hints={"different_host": "vm-3"}),
    "ServerGroupAntiAffinityFilter": make_spec(group=GroupSpec(uuid="g", policy="anti-affinity", members=MEMBERS)),
    "ServerGroupAffinityFilter": make_spec(group=GroupSpec(uuid="g", policy="affinity", members=MEMBERS)),
}


def test_every_registered_filter_has_a_request_that_exercises_it():
    assert set(SPECS) == set(FILTERS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_all_keeps_exactly_the_hosts_that_pass_in_order(name):
    host_filter = FILTERS[name]()
    spec = SPECS[name]
    ctx = make_context(max_instances_per_host=3)
    assert host_filter.applies(spec, ctx)

    kept = host_filter.filter_all(HOSTS, spec, ctx)

    assert kept == [host for host in HOSTS if host_filter.host_passes(host, spec, ctx)]
    assert 0 < len(kept) < len(HOSTS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_a_filter_that_does_not_apply_would_pass_every_host(name):
    host_filter = FILTERS[name]()
    plain = make_spec(vcpus=1, memory_mb=1, root_gb=0, project_id=PROJECT)
    ctx = make_context()
    if host_filter.applies(plain, ctx):
        return  # filters that always apply are covered by the test above
    assert all(host_filter.host_passes(host, plain, ctx) for host in HOSTS)
