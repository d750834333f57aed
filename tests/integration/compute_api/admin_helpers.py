"""Helpers for the tests of the compute API's admin resources: compute hosts as their heartbeats leave
them, and microversion headers (with a way to reach versions above the advertised maximum, for shapes
that are implemented ahead of it)."""

from datetime import timedelta

import factory
from django.utils import timezone

from portal.api import microversion
from portal.models import ComputeHost

BASE = "/compute/v2.1"


def v(version: str) -> dict:
    return {"HTTP_OPENSTACK_API_VERSION": f"compute {version}"}


def allow_version(monkeypatch, version: str) -> None:
    """Let requests ask for ``version`` even if the API advertises less."""
    if microversion.APIVersion(version) > microversion.MAX_VERSION:
        monkeypatch.setattr(microversion, "MAX_VERSION", microversion.APIVersion(version))


class ComputeHostFactory(factory.django.DjangoModelFactory):
    """An up, enabled host with a fresh heartbeat."""

    class Meta:
        model = ComputeHost

    name = factory.Sequence(lambda n: f"compute{n}")
    last_heartbeat = factory.LazyFunction(timezone.now)
    vcpus = 8
    memory_mb = 16384
    disk_gb = 200
    hypervisor_type = "QEMU"
    hypervisor_version = 8002000
    cpu_arch = "x86_64"
    uptime = " 10:00:00 up 3 days,  2:33,  1 user,  load average: 0.10, 0.20, 0.30"


def stale(host: ComputeHost) -> ComputeHost:
    """Make the host look down: its last heartbeat is older than the service-down time."""
    ComputeHost.objects.filter(pk=host.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    host.refresh_from_db()
    return host
