"""Real hypervisor hosts side by side for tests: each its own libvirtd (scripts/libvirt_host.py) on its own
loopback address, with its own compute worker, state directory, VNC address and migration ports.

The libvirt cache of each address is kept in /var/tmp between runs, so a host starts in under a second
after the first run's QEMU capability probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import libvirt

from scripts.libvirt_host import LibvirtHost, default_cache_dir
from tests.processes import Cluster, Process


class LibvirtHosts:
    """The private libvirtds of one test module, by host name."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.hosts: dict[str, LibvirtHost] = {}

    def start(self, name: str, address: str) -> LibvirtHost:
        directory = self.work_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        host = LibvirtHost(directory, address, cache_dir=default_cache_dir(address))
        self.hosts[name] = host
        return host.start()

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()

    @contextlib.contextmanager
    def connection(self, name: str) -> Iterator[libvirt.virConnect]:
        """A connection of this process to the libvirtd of host ``name``, closed after the block."""
        conn = libvirt.open(self.hosts[name].uri)
        try:
            yield conn
        finally:
            conn.close()

    def domain_uuids(self, name: str) -> set[str]:
        """Every domain the libvirtd of host ``name`` knows, running or not."""
        with self.connection(name) as conn:
            return {domain.UUIDString() for domain in conn.listAllDomains()}

    def domain_states(self, name: str) -> dict[str, tuple[int, int]]:
        """The state and its reason (libvirt's numbers) of every domain the libvirtd of host ``name`` knows."""
        with self.connection(name) as conn:
            return {domain.UUIDString(): tuple(domain.state()) for domain in conn.listAllDomains()}

    def domain_xml(self, name: str, instance_uuid: str) -> str:
        """The live definition of a domain on host ``name``."""
        with self.connection(name) as conn:
            return conn.lookupByUUIDString(instance_uuid).XMLDesc(0)

    def logs(self) -> str:
        return "\n".join(f"===== libvirtd of {name} =====\n{host.log_tail()}" for name, host in self.hosts.items())


def holds(cluster: Cluster, name: str, instance_uuid: str) -> bool:
    """Whether host ``name`` still has anything of an instance: its domain or its directory. A host removes
    them in that order, so a test waiting for a leftover to go waits on this, not on the domain alone."""
    if instance_uuid in cluster.libvirt_hosts.domain_uuids(name):
        return True
    return cluster.instance_dir(name, instance_uuid).exists()


def start_compute_on(cluster: Cluster, name: str, host: LibvirtHost, **env: str) -> Process:
    """A compute worker for host ``name`` driving its private libvirtd, enrolled with its console address."""
    cluster.qemu_log_dirs.append(host.qemu_log_dir)
    settings = {**host.environment(), **env}
    return cluster.start_compute(
        name, uri=settings.pop("COMPUTE_LIBVIRT_URI"), console_address=host.vnc_listen, **settings
    )
