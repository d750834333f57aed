"""Helpers of the servers API tests: versioned headers, a boot request, rows in given states."""

from __future__ import annotations

from django.utils import timezone

from portal.models import ComputeHost, Instance

BASE = "/compute/v2.1"

# The servers resource implements every microversion up to this one.
SERVER_MAX_VERSION = "2.104"


def v(version: str) -> dict:
    return {"HTTP_OPENSTACK_API_VERSION": f"compute {version}"}


def boot(caller, flavor, image, version="2.47", hints=None, **extra):
    body = {"server": {"name": "vm1", "imageRef": str(image.id), "flavorRef": flavor.flavorid, "networks": "auto"}}
    body["server"].update(extra)
    if hints is not None:
        body["os:scheduler_hints"] = hints
    return caller.client.post(f"{BASE}/servers", body, format="json", **v(version))


def booted(caller, flavor, image, **extra) -> Instance:
    response = boot(caller, flavor, image, **extra)
    assert response.status_code == 202, response.content
    return Instance.objects.get(uuid=response.json()["server"]["id"])


def on_host(instance: Instance, *, vm_state="active", task_state=None, power_state=1, host_name="hv1") -> Instance:
    """The instance as if a host had built it (no host process involved)."""
    host, _ = ComputeHost.objects.get_or_create(name=host_name, defaults={"last_heartbeat": timezone.now()})
    Instance.objects.filter(pk=instance.pk).update(
        host=host,
        vm_state=vm_state,
        task_state=task_state,
        power_state=power_state,
        addresses=[{"addr": "10.0.2.15", "version": 4, "mac": instance.mac_address}],
        launched_at=timezone.now(),
    )
    instance.refresh_from_db()
    return instance


def action(caller, instance, body, version="2.47"):
    return caller.client.post(f"{BASE}/servers/{instance.uuid}/action", body, format="json", **v(version))
