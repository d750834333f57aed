"""What libvirt counts for a running domain: CPU time, the balloon's memory figures, each disk's and each
NIC's counters. Both the diagnostics of one server and the host's metrics exporter read them from here.

A statistic the hypervisor cannot give (a guest without a balloon, an empty CD-ROM drive, a user-mode NIC)
is left out, never an error.
"""

from __future__ import annotations

import contextlib

import libvirt

from compute_tasks.drivers import domain_xml
from compute_tasks.drivers.base import DiskCounters, DomainStats, NicCounters


def memory_stats(dom: libvirt.virDomain) -> dict[str, int]:
    """The balloon driver's figures in KiB (``actual``, ``unused``, ``available``, ``rss``, ...), or {}."""
    try:
        return dict(dom.memoryStats())
    except libvirt.libvirtError:
        return {}


def used_kib(memory: dict[str, int], current_kib: int) -> int:
    """What the guest uses of its memory: the balloon's size less what the guest reports unused, else what
    QEMU holds resident, else the domain's current memory."""
    if "actual" in memory and "unused" in memory:
        return memory["actual"] - memory["unused"]
    return memory.get("rss", current_kib)


def disk_counters(dom: libvirt.virDomain, xml: str) -> list[DiskCounters]:
    disks = []
    for dev in domain_xml.disk_targets(xml):
        try:
            rd_req, rd_bytes, wr_req, wr_bytes, errs = dom.blockStats(dev)
        except libvirt.libvirtError:
            continue  # an empty CD-ROM drive has nothing to count
        disks.append(DiskCounters(dev, rd_bytes, rd_req, wr_bytes, wr_req, errs))
    return disks


def nic_counters(dom: libvirt.virDomain, xml: str) -> list[tuple[str, str | None, NicCounters | None]]:
    """(MAC, host device, counters) of every NIC; no counters for one without a host device or whose
    device libvirt cannot read."""
    nics: list[tuple[str, str | None, NicCounters | None]] = []
    for mac, dev in domain_xml.nic_devices(xml):
        counters = None
        if dev:
            with contextlib.suppress(libvirt.libvirtError):
                counters = NicCounters(mac, dev, *dom.interfaceStats(dev))
        nics.append((mac, dev, counters))
    return nics


def domain_stats(dom: libvirt.virDomain, instance_uuid: str) -> DomainStats:
    xml = dom.XMLDesc(0)
    _state, max_kib, current_kib, num_cpus, cpu_time = dom.info()
    memory = memory_stats(dom)
    return DomainStats(
        instance_uuid=instance_uuid,
        vcpus=num_cpus,
        cpu_time_ns=cpu_time,
        memory_maximum_kib=max_kib,
        memory_actual_kib=memory.get("actual", current_kib),
        memory_used_kib=used_kib(memory, current_kib),
        memory_available_kib=memory.get("available"),
        disks=tuple(disk_counters(dom, xml)),
        nics=tuple(counters for _mac, _dev, counters in nic_counters(dom, xml) if counters is not None),
    )
