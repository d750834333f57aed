"""Servers asked for by users: create (the API and the portal both call ``servers_create``) and delete.

Every other action lives in ``portal.services.actions``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import transaction

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Flavor, Image, Instance, InstanceTag, Keypair, ServerGroup
from portal.selectors.hosts import host_is_up
from portal.states import TaskState, VmState

from . import instance_ports, lifecycle, quotas, volumes
from .host_requests import hostname_from, instance_ref


class InvalidRequest(Exception):
    """The request names something that cannot be used (the API answers 400)."""


def random_mac() -> str:
    # fa:16:3e is the locally administered prefix OpenStack clouds use for instance NICs.
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def new_reservation_id() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"


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


def check_image_fits(image: Image, *, memory_mb: int, root_gb: int | None, disk: str = "Flavor's disk") -> None:
    """InvalidRequest unless ``image`` can boot with this much memory and root disk (create, rebuild);
    ``disk`` names the root disk in the refusal (a new root volume's size is the user's, not the flavor's).
    ``root_gb`` None: the root disk is an existing volume, whose host checks the image fits when writing it."""
    if image.status != Image.Status.ACTIVE:
        raise InvalidRequest(f"Image {image.id} is not active.")
    if image.min_ram and memory_mb < image.min_ram:
        raise InvalidRequest(f"Flavor's memory is too small for requested image (needs {image.min_ram} MB).")
    if root_gb is None:
        return
    if image.min_disk and root_gb < image.min_disk:
        raise InvalidRequest(f"{disk} is too small for requested image (needs {image.min_disk} GB).")
    if image.size and root_gb and image.size > root_gb * 1024**3:
        raise InvalidRequest(f"{disk} is too small for requested image.")


@dataclass(frozen=True)
class ServerSpec:
    """What a create request asks for, once its references are resolved (the same for the API and the
    portal). ``requested_host`` is the only host the servers may go to (``force_host`` bypasses most
    filters there); callers check that the caller may ask for either."""

    name: str
    flavor: Flavor
    image: Image | None
    networks: str | tuple[instance_ports.NetworkRequest, ...] = "auto"  # or "none", or what to plug
    user_data: str | None = None
    personality: Sequence[Mapping[str, str]] = ()  # [{"path", "contents" (base64)}], before 2.57
    keypair: Keypair | None = None
    metadata: dict[str, str] | None = None
    description: str | None = None
    availability_zone: str | None = None
    hostname: str = ""  # the guest's host name (2.90); empty: made from the name
    access_ip_v4: str = ""
    access_ip_v6: str = ""
    tags: Sequence[str] = ()
    scheduler_hints: dict[str, Any] = field(default_factory=dict)
    server_group: ServerGroup | None = None
    config_drive: bool = False
    block_devices: Sequence[volumes.BootVolume] = ()
    user_token: str | None = None
    requested_host: str = ""
    force_host: bool = False
    security_groups: tuple = ()  # the groups the server's new ports are in; () for the project's default


def servers_create(*, ctx: RequestContext, spec: ServerSpec, min_count: int = 1, max_count: int = 1) -> list[Instance]:
    """Create up to ``max_count`` servers as one request (all in one transaction, one reservation id), at
    least ``min_count``: as in Nova, when the quota has room for fewer than ``max_count`` but at least
    ``min_count``, that many are made; else QuotaExceeded names the whole request."""
    min_count = max(1, min(min_count, max_count))
    _check_spec(spec)
    reservation_id = new_reservation_id()
    with transaction.atomic():
        count = _count_within_quota(ctx, spec.flavor, min_count, max_count)
        return [
            _instance_create(
                ctx=ctx,
                spec=replace(spec, name=spec.name if count == 1 else f"{spec.name}-{index + 1}"),
                reservation_id=reservation_id,
                launch_index=index,
            )
            for index in range(count)
        ]


def _check_spec(spec: ServerSpec) -> None:
    if spec.flavor.disabled:
        raise InvalidRequest(f"Flavor {spec.flavor.flavorid} is disabled and cannot be used.")
    if spec.image is not None:
        check_image_fits(spec.image, memory_mb=spec.flavor.memory_mb, root_gb=spec.flavor.root_gb)
    elif not any(volume.boot_index == 0 for volume in spec.block_devices):
        raise InvalidRequest("A server needs an image or a boot volume.")


def _count_within_quota(ctx: RequestContext, flavor: Flavor, min_count: int, max_count: int) -> int:
    """How many of the request fit the quota: ``max_count`` if they do, else the most that do down to
    ``min_count``; the refusal names the whole request (locks the project row)."""
    for count in range(max_count, min_count - 1, -1):
        try:
            quotas.instance_quota_check(
                project=ctx.project,
                user=ctx.user,
                instances=count,
                cores=count * flavor.vcpus,
                ram=count * flavor.memory_mb,
            )
        except quotas.QuotaExceeded as exc:
            if count == max_count:
                refusal = exc
            continue
        return count
    raise refusal


def instance_create(
    *, ctx: RequestContext, spec: ServerSpec, reservation_id: str | None = None, launch_index: int = 0
) -> Instance:
    """One new instance, as ``servers_create`` makes each of a request's: its instances, cores and RAM
    checked under the project's lock, then recorded and handed to the conductor once committed."""
    _check_spec(spec)
    with transaction.atomic():
        quotas.instance_quota_check(
            project=ctx.project, user=ctx.user, cores=spec.flavor.vcpus, ram=spec.flavor.memory_mb
        )
        return _instance_create(
            ctx=ctx, spec=spec, reservation_id=reservation_id or new_reservation_id(), launch_index=launch_index
        )


def _instance_create(*, ctx: RequestContext, spec: ServerSpec, reservation_id: str, launch_index: int) -> Instance:
    """Record one new instance in BUILD/scheduling and hand it to the conductor once committed.

    Runs inside ``servers_create``'s transaction, after its check of the instances, cores and RAM of the
    whole request: that check holds the project's lock until the request commits, so the usage it counted
    cannot change before these instances are recorded. The quotas of one server (metadata, files, group
    members) are checked here.

    The keypair's public key is copied into the instance: deleting or replacing the key pair later does
    not change what the instance was booted with. The hints, group and requested host are kept for the
    scheduler.
    """
    flavor, image, keypair = spec.flavor, spec.image, spec.keypair
    requested_host = spec.requested_host
    with transaction.atomic(savepoint=False):
        quotas.quota_check(
            project=ctx.project, user=ctx.user, resource="metadata_items", delta=len(spec.metadata or {})
        )
        quotas.personality_quota_check(project=ctx.project, user=ctx.user, files=spec.personality)
        if spec.server_group is not None:
            quotas.quota_check(
                project=ctx.project, user=ctx.user, resource="server_group_members", group=spec.server_group
            )
        instance = Instance.objects.create(
            name=spec.name,
            description=spec.description,
            project=ctx.project,
            user=ctx.user,
            flavor=flavor,
            flavor_name=flavor.name,
            flavor_ref=flavor.flavorid,
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
            availability_zone=spec.availability_zone or "",
            pinned_availability_zone=spec.availability_zone or None,
            networks=_networks_kind(spec.networks),
            mac_address=random_mac() if _networks_kind(spec.networks) == "auto" else "",
            user_data=spec.user_data,
            personality=[{"path": f["path"], "contents": f["contents"]} for f in spec.personality],
            key_name=keypair.name if keypair else None,
            key_data=keypair.public_key if keypair else None,
            metadata=spec.metadata or {},
            reservation_id=reservation_id,
            launch_index=launch_index,
            hostname=spec.hostname or hostname_from(spec.name),
            access_ip_v4=spec.access_ip_v4,
            access_ip_v6=spec.access_ip_v6,
            scheduler_hints=dict(spec.scheduler_hints or {}),
            server_group=spec.server_group,
            requested_host=requested_host,
            force_host=spec.force_host and bool(requested_host),
            config_drive=spec.config_drive or settings.CLOUD["FORCE_CONFIG_DRIVE"],
        )
        InstanceTag.objects.bulk_create(InstanceTag(instance=instance, tag=tag) for tag in dict.fromkeys(spec.tags))
        if spec.block_devices:
            volumes.block_devices_create(instance=instance, volumes=spec.block_devices)
        if instance.networks == "ports":
            requests = "auto" if spec.networks == "auto" else list(spec.networks)
            instance_ports.ports_allocate(
                ctx=ctx, instance=instance, requests=requests, security_groups=spec.security_groups or None
            )
        lifecycle.action_open(
            instance=instance, action="create", ctx=ctx, event="api_create", details=requested_host_note(instance)
        )
        # New volumes are made by the conductor, in the project of the token it asks Cinder with.
        makes_volumes = any(volume.is_new for volume in spec.block_devices)
        request = rpc.ScheduleRequest(
            instance_uuid=str(instance.uuid),
            request_id=ctx.request_id,
            user_token=(spec.user_token or "") if makes_volumes else "",
        )
        # Robust: when the broker cannot take the message the boot is still accepted; the row is the
        # intention and the reaper sends the request again.
        transaction.on_commit(lambda: rpc.schedule_and_build(request), robust=True)
    return instance


def _networks_kind(networks: str | tuple) -> str:
    """What ``Instance.networks`` records: "ports" (the network controller's), "none", or "auto" (one QEMU
    user-mode NIC, when the cloud's network mode is "user")."""
    if networks == "none":
        return "none"
    if networks == "auto" and settings.CLOUD["NETWORK"]["mode"] == "user":
        return "auto"
    return "ports"


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
        from .moves import moves_cleanup_on_delete  # moves build on this module

        moves_cleanup_on_delete(instance)
        if instance.host_id is None:
            lifecycle.mark_deleted(instance=instance, expected_task_states=[TaskState.DELETING], event="delete_local")
            return
        host = instance.host.name
        ref = instance_ref(instance, ctx.request_id)
        if not host_is_up(instance.host):
            # As Nova's local delete: a host that is down cannot confirm, so the instance is gone now
            # (and its quota free). The terminate still waits in the host's queue and removes the
            # domain and disk when the host comes back.
            lifecycle.mark_deleted(
                instance=instance, expected_task_states=[TaskState.DELETING], event="delete_local_host_down"
            )
        transaction.on_commit(lambda: rpc.terminate_instance(host, ref), robust=True)
