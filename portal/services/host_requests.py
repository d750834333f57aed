"""What the control plane tells a host about an instance: the one place these messages are built."""

from __future__ import annotations

import re

from compute_tasks import rpc
from portal.models import Image, Instance

from . import instance_ports, volumes
from .images import image_build_spec


def instance_ref(instance: Instance, request_id: str = "", *, reboot_type: str = "SOFT") -> rpc.InstanceRef:
    """Enough for a host to find the instance's domain."""
    return rpc.InstanceRef(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        request_id=request_id,
        reboot_type=reboot_type,
    )


def flavor_spec(instance: Instance) -> rpc.FlavorSpec:
    return rpc.FlavorSpec(
        name=instance.flavor_name,
        vcpus=instance.vcpus,
        memory_mb=instance.memory_mb,
        root_gb=instance.root_gb,
        extra_specs=dict(instance.flavor_extra_specs),
    )


def build_request(
    instance: Instance,
    request_id: str,
    *,
    alternates: list[str] = (),  # type: ignore[assignment]
    image: Image | None = None,
    flavor: rpc.FlavorSpec | None = None,
) -> rpc.BuildRequest:
    """Everything a host needs to make the instance's guest: from its own image unless ``image`` (a
    shelved or moved disk) is given, with its own flavor unless ``flavor`` (a resize's new one) is."""
    if image is None and instance.image_ref:
        # Its image row as the instance's relation holds it (read with it by the scheduler), when it is that.
        image = instance.image if instance.image_id == instance.image_ref else Image.objects.get(pk=instance.image_ref)
    # A server booted from a volume has no image of its own: its root disk comes with its volumes.
    spec = image_build_spec(image=image) if image is not None else None
    nics = []
    if instance.networks == "auto":
        nics.append(rpc.NicSpec(mac=instance.mac_address, network="user"))
    elif instance.networks == "ports":
        nics = port_nics(instance)
    return rpc.BuildRequest(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        flavor=flavor or flavor_spec(instance),
        image=rpc.ImageSpec(**spec) if spec is not None else None,
        nics=nics,
        user_data=instance.user_data,
        request_id=request_id,
        attempt=instance.build_attempts,
        alternates=list(alternates),
        # ``has_volumes``: known already when the instance was read with it (the scheduler's batch).
        block_devices=volumes.attached_connections(instance) if getattr(instance, "has_volumes", True) else [],
        metadata=guest_metadata(instance) if instance.config_drive else None,
    )


def port_nics(instance: Instance) -> list[rpc.NicSpec]:
    """The server's ports as NICs, in the order they were made."""
    return [instance_ports.port_nic(port) for port in instance_ports.instance_ports(instance)]


def guest_metadata(instance: Instance) -> rpc.InstanceMetadata:
    """What the guest reads from its config drive."""
    return rpc.InstanceMetadata(
        uuid=str(instance.uuid),
        name=instance.name,
        hostname=instance.hostname or hostname_from(instance.name),
        project_id=instance.project_id,
        availability_zone=instance.availability_zone,
        launch_index=instance.launch_index,
        meta={str(key): str(value) for key, value in (instance.metadata or {}).items()},
        public_keys={instance.key_name: instance.key_data} if instance.key_name and instance.key_data else {},
        network_data=instance_ports.network_data(instance) if instance.networks == "ports" else {},
        files=[rpc.InjectedFile(path=f["path"], contents=f["contents"]) for f in instance.personality or []],
    )


def hostname_from(name: str) -> str:
    """A DNS label made from a server name, as the guest's host name."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "server"
