"""A simulated host of a COMPUTE_HOSTS worker sees only its own domains, and a host with no instance
directory does not read the hypervisor's list at all."""

import pytest

from compute_tasks.drivers.base import DomainInventory, DomainStats
from compute_tasks.fleet import HostScopedDriver

pytestmark = pytest.mark.unit

MINE, THEIRS = "0b0f6f9e-1111-4c1e-9d4e-000000000001", "0b0f6f9e-2222-4c1e-9d4e-000000000002"


class Hypervisor:
    """Every simulated host's domains, and how often each list was read."""

    def __init__(self):
        self.reads = 0

    def list_domains(self):
        self.reads += 1
        return DomainInventory(instances={MINE: 1, THEIRS: 1}, foreign=["not-ours"])

    def domain_stats(self):
        self.reads += 1
        return [stats(MINE), stats(THEIRS)]


def stats(instance_uuid: str) -> DomainStats:
    return DomainStats(
        instance_uuid=instance_uuid,
        vcpus=1,
        cpu_time_ns=0,
        memory_maximum_kib=1024,
        memory_actual_kib=1024,
        memory_used_kib=512,
    )


def test_a_host_lists_only_the_domains_in_its_instance_directory(tmp_path):
    hypervisor = Hypervisor()
    (tmp_path / "a" / MINE).mkdir(parents=True)
    host = HostScopedDriver(hypervisor, tmp_path / "a", reports_foreign=False)
    assert host.list_domains() == DomainInventory(instances={MINE: 1}, foreign=[])
    assert [row.instance_uuid for row in host.domain_stats()] == [MINE]
    first = HostScopedDriver(hypervisor, tmp_path / "first", reports_foreign=True)
    assert first.list_domains() == DomainInventory(instances={}, foreign=["not-ours"])


def test_a_host_without_instances_does_not_read_the_hypervisors_list(tmp_path):
    hypervisor = Hypervisor()
    (tmp_path / "empty").mkdir()
    for instances_dir in (tmp_path / "empty", tmp_path / "never-made"):
        host = HostScopedDriver(hypervisor, instances_dir, reports_foreign=False)
        assert host.list_domains() == DomainInventory(instances={}, foreign=[])
        assert host.domain_stats() == []
    assert hypervisor.reads == 0
