"""Hypervisor drivers. ``load_driver`` picks one from the host configuration.

The libvirt driver is imported only when chosen, so a host running the fake driver needs no libvirt.
"""

from __future__ import annotations

from compute_tasks.config import HostConfig
from compute_tasks.drivers.base import ComputeDriver


def load_driver(config: HostConfig) -> ComputeDriver:
    if config.driver == "fake":
        from compute_tasks.drivers.fake import FakeDriver

        # Its guests print a line when they boot, so that the console output of a simulated server is
        # not empty, as a real one's is not once it booted; and show a (blank) screen to their consoles.
        return FakeDriver(
            instances_dir=config.instances_dir, vnc_host=config.vnc_address, boot_messages=True, screens=True
        )
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
