"""Instance requests from users: create, delete, start, stop, reboot."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Flavor, Image, Instance, InstanceAction, InstanceTag, Keypair, Project, ServerGroup
from portal.selectors.hosts import host_is_up
from portal.states import TaskState, VmState

from . import lifecycle, quotas, volumes


class InvalidRequest(Exception):
    """The request names something that cannot be used (the API answers 400)."""


def random_mac() -> str:
    # fa:16:3e is the locally administered prefix OpenStack clouds use for instance NICs.
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def new_reservation_id() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


def hostname_from(name: str) -> str:
    """A DNS label made from a server name, as the guest's host name."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "server"


def requested_host_note(instance: Instance) -> str:
    """What an instance's events say about the host its request named; empty when it named none."""
    if not instance.requested_host:
        return ""
    if instance.force_host:
        return (
            f"Host {instance.requested_host} forced (zone:host): the scheduler considers only this host and "
            "runs only the filters a forced host does not bypass."
        )
    return f"Host {instance.requested_host} requested: the scheduler considers only this host and runs every filter."


def check_image_fits(image: Image, *, memory_mb: int, root_gb: int, disk: str = "Flavor's disk") -> None:
    """InvalidRequest unless ``image`` can boot with this much memory and root disk (create, rebuild);
    ``disk`` names the root disk in the refusal (a new root volume's size is the user's, not the flavor's)."""
    if image.status != Image.Status.ACTIVE:
        raise InvalidRequest(f"Image {image.id} is not active.")
    if image.min_ram and memory_mb < image.min_ram:
        raise InvalidRequest(f"Flavor's memory is too small for requested image (needs {image.min_ram} MB).")
    if image.min_disk and root_gb < image.min_disk:
        raise InvalidRequest(f"{disk} is too small for requested image (needs {image.min_disk} GB).")
    if image.size and root_gb and image.size > root_gb * 1024**3:
        raise InvalidRequest(f"{disk} is too small for requested image.")


def instance_create(
    *,
    ctx: RequestContext,
    name: str,
    flavor: Flavor,
    image: Image | None,
    networks: str = "auto",
    user_data: str | None = None,
    keypair: Keypair | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    availability_zone: str | None = None,
    reservation_id: str | None = None,
    launch_index: int = 0,
    tags: Sequence[str] = (),
    scheduler_hints: dict[str, Any] | None = None,
    server_group: ServerGroup | None = None,
    config_drive: bool = False,
    block_devices: Sequence[volumes.BootVolume] = (),
    user_token: str | None = None,
    requested_host: str = "",
    force_host: bool = False,
) -> Instance:
    """Record a new instance in BUILD/scheduling and hand it to the conductor once committed.

    ``keypair``'s public key is copied into the instance: deleting or replacing the key pair later does
    not change what the instance was booted with. ``scheduler_hints`` and ``server_group`` are kept for
    the scheduler, and so is ``requested_host``, the only host it may go to (``force_host`` bypasses
    most filters there; callers check that the caller may ask for either).
    """
    if flavor.disabled:
        raise InvalidRequest(f"Flavor {flavor.flavorid} is disabled and cannot be used.")
    if image is not None:
        check_image_fits(image, memory_mb=flavor.memory_mb, root_gb=flavor.root_gb)
    elif not any(volume.boot_index == 0 for volume in block_devices):
        raise InvalidRequest("A server needs an image or a boot volume.")

    with transaction.atomic():
        # One creator per project at a time: usage counted here cannot change under us.
        Project.objects.select_for_update().get(pk=ctx.project.pk)
        quotas.instance_quota_check(project=ctx.project, user=ctx.user, cores=flavor.vcpus, ram=flavor.memory_mb)
        quotas.quota_check(project=ctx.project, user=ctx.user, resource="metadata_items", delta=len(metadata or {}))
        if server_group is not None:
            quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_group_members", group=server_group)
        instance = Instance.objects.create(
            name=name,
            description=description,
            project=ctx.project,
            user=ctx.user,
            flavor=flavor,
            flavor_name=flavor.name,
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            root_gb=flavor.root_gb,
            ephemeral_gb=flavor.ephemeral_gb,
            swap=flavor.swap,
            flavor_extra_specs=dict(flavor.extra_specs),
            image=image,
            image_ref=image.id if image is not None else None,
            vm_state=VmState.BUILDING,
            task_state=TaskState.SCHEDULING,
            task_deadline=lifecycle.lease_deadline(TaskState.SCHEDULING),
            # The zone asked for; empty means any, and the conductor records the chosen host's zone.
            availability_zone=availability_zone or "",
            networks=networks,
            mac_address=random_mac() if networks == "auto" else "",
            user_data=user_data,
            key_name=keypair.name if keypair else None,
            key_data=keypair.public_key if keypair else None,
            metadata=metadata or {},
            reservation_id=reservation_id or new_reservation_id(),
            launch_index=launch_index,
            hostname=hostname_from(name),
            scheduler_hints=dict(scheduler_hints or {}),
            server_group=server_group,
            requested_host=requested_host,
            force_host=force_host and bool(requested_host),
            config_drive=config_drive or settings.CLOUD["FORCE_CONFIG_DRIVE"],
        )
        InstanceTag.objects.bulk_create(InstanceTag(instance=instance, tag=tag) for tag in dict.fromkeys(tags))
        if block_devices:
            volumes.block_devices_create(instance=instance, volumes=block_devices)
        action = InstanceAction.objects.create(
            instance=instance, action="create", request_id=ctx.request_id, user=ctx.user, project=ctx.project
        )
        lifecycle.record_event(action, "api_create", details=requested_host_note(instance))
        # New volumes are made by the conductor, in the project of the token it asks Cinder with.
        makes_volumes = any(volume.is_new for volume in block_devices)
        request = rpc.ScheduleRequest(
            instance_uuid=str(instance.uuid),
            request_id=ctx.request_id,
            user_token=(user_token or "") if makes_volumes else "",
        )
        # Robust: when the broker cannot take the message the boot is still accepted; the row is the
        # intention and the reaper sends the request again.
        transaction.on_commit(lambda: rpc.schedule_and_build(request), robust=True)
    return instance


def _ref(instance: Instance, request_id: str, reboot_type: str = "SOFT") -> rpc.InstanceRef:
    return rpc.InstanceRef(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        request_id=request_id,
        reboot_type=reboot_type,
    )


def instance_delete(*, ctx: RequestContext, instance: Instance) -> None:
    """Delete: at once when no host holds the instance, else by the host, which reports back."""
    if instance.vm_state == VmState.DELETED:
        return
    if instance.task_state == TaskState.DELETING:
        return  # already on its way; deleting twice is not an error
    with transaction.atomic():
        try:
            lifecycle.action_begin(instance=instance, action="delete", ctx=ctx)
        except lifecycle.StateConflict:
            if instance.vm_state == VmState.DELETED or instance.task_state == TaskState.DELETING:
                return  # a concurrent delete got there first
            raise
        if instance.host_id is None:
            lifecycle.mark_deleted(instance=instance, expected_task_states=[TaskState.DELETING], event="delete_local")
            return
        host = instance.host.name
        ref = _ref(instance, ctx.request_id)
        if not host_is_up(instance.host):
            # As Nova's local delete: a host that is down cannot confirm, so the instance is gone now
            # (and its quota free). The terminate still waits in the host's queue and removes the
            # domain and disk when the host comes back.
            lifecycle.mark_deleted(
                instance=instance, expected_task_states=[TaskState.DELETING], event="delete_local_host_down"
            )
        transaction.on_commit(lambda: rpc.terminate_instance(host, ref), robust=True)


_SENDERS = {
    "start": rpc.start_instance,
    "stop": rpc.stop_instance,
    "reboot": rpc.reboot_instance,
    "reboot_hard": rpc.reboot_instance,
}


def instance_power_action(*, ctx: RequestContext, instance: Instance, action: str) -> None:
    """start, stop, reboot (soft) or reboot_hard: claim the task state, then ask the host."""
    if instance.host_id is None:
        verb = action.replace("_hard", "")
        raise lifecycle.StateConflict(
            f"Cannot '{verb}' instance {instance.uuid} while it is in vm_state {instance.vm_state}"
        )
    with transaction.atomic():
        lifecycle.action_begin(instance=instance, action=action, ctx=ctx)
        host = instance.host.name
        ref = _ref(instance, ctx.request_id, "HARD" if action == "reboot_hard" else "SOFT")
        send = _SENDERS[action]
        transaction.on_commit(lambda: send(host, ref))
