"""What an instance's page shows besides the instance: its volumes, its network interfaces, its security groups,
its floating IPs, its action log with events, and its image."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch

from portal.auth.context import RequestContext
from portal.models import BlockDeviceMapping, Instance, InstanceAction, InstanceActionEvent
from portal.selectors import security_groups as group_selectors
from portal.selectors.flavors import flavors_visible
from portal.selectors.images import image_get
from portal.selectors.networks import networks_usable
from portal.selectors.router_listings import instance_floating_ips
from portal.selectors.volumes import instance_volumes
from portal.services import cinder, instance_ports
from portal.services import volumes as volume_services

from .floating_ips import InstanceAssociateForm, instance_form
from .presenters import present

ACTION_LOG_LENGTH = 20


@dataclass(frozen=True)
class VolumeRow:
    """One of the instance's volumes as its page lists it."""

    volume_id: str
    name: str
    size_gb: int | None
    device: str
    status: str
    root: bool
    delete_on_termination: bool
    can_detach: bool


@dataclass(frozen=True)
class VolumePanel:
    """The instance's volumes, and what can be attached to it now (only when the viewer may)."""

    enabled: bool  # this cloud has a block storage service
    rows: list[VolumeRow]
    attachable: list[dict]
    can_attach: bool
    error: str = ""


def volume_panel(instance: Instance, ctx: RequestContext) -> VolumePanel:
    """The instance's mappings from the database, their names and the project's free volumes from Cinder
    (one list call; when Cinder cannot answer the page still shows what the cloud itself knows)."""
    mappings = instance_volumes(instance)
    if not cinder.configured():
        return VolumePanel(enabled=False, rows=_rows(mappings, {}, False), attachable=[], can_attach=False)
    error = ""
    try:
        known = {v["id"]: v for v in volume_services.project_volumes(ctx=ctx)}
    except cinder.BlockStorageError as exc:
        known, error = {}, str(exc)
    writable = ctx.can_write and not (instance.locked and not ctx.is_admin) and not instance.task_state
    can_attach = writable and instance.vm_state in volume_services.ATTACHABLE_VM_STATES and bool(instance.host_id)
    can_detach = writable and instance.vm_state in volume_services.DETACHABLE_VM_STATES
    # In the order project_volumes gives them: by name.
    attachable = [v for v in known.values() if v.get("status") == "available" and not v.get("multiattach")]
    return VolumePanel(
        enabled=True,
        rows=_rows(mappings, known, can_detach),
        attachable=attachable,
        can_attach=can_attach and not error,
        error=error,
    )


def _rows(mappings: list[BlockDeviceMapping], known: dict[str, dict], can_detach: bool) -> list[VolumeRow]:
    rows = []
    for mapping in mappings:
        volume = known.get(mapping.volume_id, {})
        rows.append(
            VolumeRow(
                volume_id=mapping.volume_id,
                name=volume.get("name") or "",
                size_gb=volume.get("size") or mapping.volume_size,
                device=mapping.device,
                status=mapping.status,
                root=mapping.is_root,
                delete_on_termination=mapping.delete_on_termination,
                can_detach=can_detach and not mapping.is_root and mapping.status == BlockDeviceMapping.Status.ATTACHED,
            )
        )
    return rows


@dataclass(frozen=True)
class PortRow:
    """One of the instance's network interfaces as its page lists it."""

    port_id: str
    network_name: str
    addresses: list[str]
    mac_address: str
    status: str


@dataclass(frozen=True)
class InterfacePanel:
    """The instance's ports, and whether the viewer may plug one in or out now (and on which networks)."""

    rows: list[PortRow]
    user_mode: bool  # one QEMU user-mode NIC, not the network controller's ports
    can_change: bool
    networks: list  # the project's usable networks, when the viewer may attach


@dataclass(frozen=True)
class SecurityGroupPanel:
    """The groups the instance's ports are in, and (when the viewer may change them) the project's others."""

    groups: list
    can_change: bool
    others: list  # the project's groups the instance is not in


def security_group_panel(instance: Instance, ctx: RequestContext) -> SecurityGroupPanel:
    groups = group_selectors.server_groups(instance)
    can_change = ctx.can_write and instance.networks != "auto"  # as the API: a lock does not hold groups
    others = []
    if can_change:
        member = {g.pk for g in groups}
        others = [
            g
            for g in group_selectors.groups_visible(ctx).filter(project=ctx.project).prefetch_related(None)
            if g.pk not in member
        ]
    return SecurityGroupPanel(groups=groups, can_change=can_change, others=others)


def interface_panel(instance: Instance, ctx: RequestContext) -> InterfacePanel:
    rows = [
        PortRow(
            port_id=str(port.pk),
            network_name=port.network.name or str(port.network_id),
            addresses=[allocation.ip_address for allocation in port.fixed_ips.all()],
            mac_address=port.mac_address,
            status=port.status,
        )
        for port in instance_ports.instance_ports(instance)
    ]
    user_mode = instance.networks == "auto"
    can_change = (
        ctx.can_write
        and not user_mode
        and not (instance.locked and not ctx.is_admin)
        and not instance.task_state
        and instance.vm_state in instance_ports.INTERFACE_VM_STATES
        and bool(instance.host_id)
    )
    networks = list(networks_usable(ctx)) if can_change else []
    return InterfacePanel(rows=rows, user_mode=user_mode, can_change=can_change, networks=networks)


@dataclass(frozen=True)
class FloatingIPPanel:
    """The floating IPs that stand for the instance's addresses, and (when the viewer may change them) the
    form that points one more at it: a free one of the project or a new one, at one of its addresses."""

    rows: list
    can_change: bool
    form: InstanceAssociateForm | None


def floating_ip_panel(instance: Instance, ctx: RequestContext) -> FloatingIPPanel:
    can_change = ctx.can_write and instance.networks != "auto"  # a user-mode NIC has no address to point at
    return FloatingIPPanel(
        rows=instance_floating_ips(instance),
        can_change=can_change,
        form=instance_form(instance, ctx) if can_change else None,
    )


def detail_context(instance: Instance, ctx: RequestContext) -> dict:
    actions = list(
        InstanceAction.objects.filter(instance=instance)
        .select_related("user")
        .prefetch_related(Prefetch("events", queryset=InstanceActionEvent.objects.order_by("start_time", "id")))
        .order_by("-start_time", "-id")[:ACTION_LOG_LENGTH]
    )
    panel = volume_panel(instance, ctx)
    if instance.image_ref:
        image = image_get(ctx=ctx, image_id=instance.image_ref)  # a name the caller may see, else the id
        image_name = (image.name if image else None) or str(instance.image_ref)
    else:
        root = next((row for row in panel.rows if row.root), None)
        image_name = f"booted from volume {root.name or root.volume_id}" if root else "none"
    view = present(instance, ctx)
    flavors = []
    if view.can_resize:
        flavors = [
            flavor
            for flavor in flavors_visible(ctx).filter(disabled=False).order_by("vcpus", "memory_mb", "name")
            if flavor.pk != instance.flavor_id and flavor.root_gb >= instance.root_gb
        ]
    return {
        "view": view,
        "actions": actions,
        "image_name": image_name,
        "volumes": panel,
        "interfaces": interface_panel(instance, ctx),
        "security_groups": security_group_panel(instance, ctx),
        "floating_ips": floating_ip_panel(instance, ctx),
        "resize_flavors": flavors,
    }
