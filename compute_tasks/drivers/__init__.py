"""Hypervisor drivers. ``load_driver`` picks one from the host configuration.

The libvirt driver is imported only when chosen, so a host running the fake driver needs no libvirt.
"""

from __future__ import annotations

from compute_tasks.config import HostConfig
from compute_tasks.drivers.base import ComputeDriver


def load_driver(config: HostConfig) -> ComputeDriver:
    if config.driver == "fake":
        from compute_tasks.drivers.fake import FakeDriver

        return FakeDriver(instances_dir=config.instances_dir, vnc_host=config.vnc_address)
    if config.driver == "libvirt":
        from compute_tasks.drivers.libvirt_driver import LibvirtDriver

        return LibvirtDriver(
            uri=config.libvirt_uri,
            virt_type=config.virt_type,
            instances_dir=config.instances_dir,
            vnc_listen=config.vnc_listen,
            vnc_host=config.vnc_address,
            shutdown_timeout=config.shutdown_timeout,
            nfs_mount_point_base=config.nfs_mount_base,
            volume_detach_timeout=config.volume_detach_timeout,
            live_migration_bandwidth=config.live_migration_bandwidth,
        )
    raise ValueError(f"unknown compute driver {config.driver!r}")
