"""How a server looks in the compute API, per microversion: plain dicts built from an Instance.

``server_detail`` is ``GET /servers/{id}`` (and each entry of ``/servers/detail``). The responses to
``PUT /servers/{id}`` and to ``rebuild`` show fewer attributes before 2.75 (``server_brief``), as the
compute API defines them. Microversions implemented here: 2.1 to 2.104 for servers (the last step that
changes a server's shape is 2.100).
"""

from __future__ import annotations

import hashlib

from django.conf import settings

from portal.selectors import security_groups as group_selectors
from portal.selectors.hosts import host_is_up
from portal.selectors.instances import latest_fault
from portal.selectors.users import api_user_id
from portal.selectors.volumes import instance_volumes
from portal.services.host_requests import hostname_from
from portal.states import api_status, server_progress

from .links import links

# Statuses that carry ``progress`` (Nova's), and those that carry the ``fault``.
_PROGRESS_STATUSES = {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}
_FAULT_STATUSES = {"ERROR", "DELETED"}


def iso(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def host_id(instance) -> str:
    """The opaque per-project host identifier: equal for servers on the same host, nothing more."""
    if instance.host_id is None:
        return ""
    return hashlib.sha224(f"{instance.project_id}{instance.host.name}".encode()).hexdigest()


def instance_tags(instance) -> list[str]:
    prefetched = getattr(instance, "tag_list", None)
    if prefetched is not None:
        return [t.tag for t in prefetched]
    return list(instance.tags.order_by("tag").values_list("tag", flat=True))


def _addresses(instance, *, extended: bool) -> dict:
    if not instance.addresses or instance.vm_state == "building":
        return {}
    by_network: dict[str, list] = {}
    label = settings.CLOUD["NETWORK"]["label"]
    for a in instance.addresses:
        entry = {"version": a.get("version", 4), "addr": a["addr"]}
        if extended:
            entry["OS-EXT-IPS:type"] = a.get("type", "fixed")
            entry["OS-EXT-IPS-MAC:mac_addr"] = a.get("mac") or instance.mac_address
        # A port's address names its network; a user-mode NIC's is on the one network labelled in settings.
        name = a.get("network") if instance.networks == "ports" else None
        by_network.setdefault(name or label, []).append(entry)
    return by_network


def server_addresses(instance) -> dict:
    """The server's addresses by network, each only ``version`` and ``addr`` (``/servers/{id}/ips``)."""
    return _addresses(instance, extended=False)


def _flavor(instance, version) -> dict:
    if version >= "2.47":
        return {
            "vcpus": instance.vcpus,
            "ram": instance.memory_mb,
            "disk": instance.root_gb,
            "ephemeral": instance.ephemeral_gb,
            "swap": instance.swap,
            "original_name": instance.flavor_name,
            "extra_specs": dict(instance.flavor_extra_specs),
        }
    # The flavor's id even when the flavor was deleted since, as Nova shows it.
    flavor_id = instance.flavor.flavorid if instance.flavor else instance.flavor_ref
    return {"id": flavor_id, "links": [links("flavors", flavor_id)[1]]}


def _host_status(instance) -> str:
    if instance.host is None:
        return ""
    if not instance.host.enabled:
        return "MAINTENANCE"
    return "UP" if host_is_up(instance.host) else "DOWN"


def _fault(instance, ctx) -> dict | None:
    fault = latest_fault(instance)
    if fault is None:
        return None
    body = {"code": fault.code, "created": iso(fault.created_at), "message": fault.message}
    if ctx.is_admin or fault.code != 500:
        body["details"] = fault.details
    return body


# The image properties the compute API knows (its image metadata fields and their legacy names): from 2.98
# a server shows those of its image, and no others.
_IMAGE_PROPERTY_PREFIXES = ("hw_", "img_", "os_")
_IMAGE_PROPERTY_NAMES = {
    "traits_required",
    "architecture",
    "owner_id",
    "vmware_disktype",
    "vmware_image_version",
    "vmware_ostype",
    "auto_disk_config",
    "ipxe_boot",
    "xenapi_device_id",
    "xenapi_image_compression_level",
    "vmware_linked_clone",
    "xenapi_use_agent",
    "xenapi_skip_agent_inject_ssh",
    "xenapi_skip_agent_inject_files_at_boot",
    "cache_in_nova",
    "vm_mode",
    "bittorrent",
    "mappings",
    "block_device_mapping",
    "bdm_v2",
}


def _image_properties(instance) -> dict:
    properties = instance.image.properties if instance.image_id is not None and instance.image else {}
    return {
        str(key): value
        for key, value in (properties or {}).items()
        if value is not None and (str(key).startswith(_IMAGE_PROPERTY_PREFIXES) or key in _IMAGE_PROPERTY_NAMES)
    }


def _image(instance, version) -> dict | str:
    # A server booted from a volume shows "" for its image, as the compute API does.
    if instance.image_ref is None:
        return ""
    image_id = str(instance.image_ref)
    image = {"id": image_id, "links": [links("images", image_id)[1]]}
    if version >= "2.98":
        image["properties"] = _image_properties(instance)
    return image


def _scheduler_hints(instance) -> dict:
    """The hints the server was booted with, each a list of strings as the compute API keeps them."""
    hints = {}
    for key, value in (instance.scheduler_hints or {}).items():
        values = value if isinstance(value, list) else [value]
        hints[str(key)] = [v if isinstance(v, str) else str(v) for v in values]
    return hints


def _volumes_attached(instance, version) -> list[dict]:
    volumes = []
    for mapping in instance_volumes(instance):
        entry = {"id": mapping.volume_id}
        if version >= "2.3":
            entry["delete_on_termination"] = mapping.delete_on_termination
        volumes.append(entry)
    return volumes


def server_summary(instance) -> dict:
    server_id = str(instance.uuid)
    return {"id": server_id, "name": instance.name, "links": links("servers", server_id)}


def _base(instance, request, ctx, *, extended_addresses: bool) -> dict:
    """The attributes every full view of a server has, whatever else the request shows."""
    version = request.api_version
    status = api_status(instance.vm_state, instance.task_state)
    body = {
        **server_summary(instance),
        "status": status,
        "tenant_id": instance.project_id,
        "user_id": api_user_id(instance.user),
        "metadata": dict(instance.metadata),
        "hostId": host_id(instance),
        "image": _image(instance, version),
        "flavor": _flavor(instance, version),
        "created": iso(instance.created_at),
        "updated": iso(instance.updated_at),
        "addresses": _addresses(instance, extended=extended_addresses),
        "accessIPv4": instance.access_ip_v4,
        "accessIPv6": instance.access_ip_v6,
        "OS-DCF:diskConfig": "MANUAL",
    }
    if status in _FAULT_STATUSES:
        fault = _fault(instance, ctx)
        if fault is not None:
            body["fault"] = fault
    if status in _PROGRESS_STATUSES:
        body["progress"] = server_progress(instance.vm_state, instance.task_state, instance.step_progress)
    return body


def _versioned(body: dict, instance, request, *, server_groups: bool) -> dict:
    version = request.api_version
    if version >= "2.9":
        body["locked"] = bool(instance.locked)
    if version >= "2.19":
        body["description"] = instance.description
    if version >= "2.26":
        body["tags"] = instance_tags(instance)
    if version >= "2.63":
        body["trusted_image_certificates"] = None
    if server_groups and version >= "2.71":
        body["server_groups"] = [str(instance.server_group.uuid)] if instance.server_group_id else []
    if version >= "2.73":
        body["locked_reason"] = instance.locked_reason if instance.locked else None
    return body


def _extended(body: dict, instance, request, ctx, *, user_data: bool = True) -> None:
    """The admin-only extended server attributes, and host_status (2.16)."""
    version = request.api_version
    if not ctx.is_admin:
        return
    host = instance.host.name if instance.host else None
    body["OS-EXT-SRV-ATTR:host"] = host
    body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = host
    body["OS-EXT-SRV-ATTR:instance_name"] = instance.domain_name
    if version >= "2.3":
        body.update(
            {
                "OS-EXT-SRV-ATTR:reservation_id": instance.reservation_id,
                "OS-EXT-SRV-ATTR:launch_index": instance.launch_index,
                "OS-EXT-SRV-ATTR:hostname": instance.hostname or hostname_from(instance.name),
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
            }
        )
        if user_data:
            body["OS-EXT-SRV-ATTR:user_data"] = instance.user_data
    if version >= "2.16":
        body["host_status"] = _host_status(instance)


def server_detail(instance, request, ctx) -> dict:
    """``GET /servers/{id}``: every attribute the microversion and the caller's role show."""
    body = _base(instance, request, ctx, extended_addresses=True)
    body.update(
        {
            "OS-EXT-AZ:availability_zone": instance.availability_zone,
            "config_drive": "True" if instance.config_drive else "",
            "key_name": instance.key_name,
            "OS-SRV-USG:launched_at": iso(instance.launched_at),
            "OS-SRV-USG:terminated_at": iso(instance.terminated_at),
            "OS-EXT-STS:vm_state": instance.vm_state,
            "OS-EXT-STS:task_state": instance.task_state,
            "OS-EXT-STS:power_state": instance.power_state,
            "os-extended-volumes:volumes_attached": _volumes_attached(instance, request.api_version),
        }
    )
    if instance.networks != "none":
        names = group_selectors.server_group_names(instance) if instance.networks == "ports" else ["default"]
        if names:
            body["security_groups"] = [{"name": n} for n in names]
    _extended(body, instance, request, ctx)
    version = request.api_version
    if version >= "2.90":
        # Everyone sees the host name from 2.90 (admins saw it already from 2.3).
        body["OS-EXT-SRV-ATTR:hostname"] = instance.hostname or hostname_from(instance.name)
    if version >= "2.96":
        body["pinned_availability_zone"] = instance.pinned_availability_zone
    if version >= "2.100":
        body["scheduler_hints"] = _scheduler_hints(instance)
    # The detail list leaves server_groups out, as the compute API does; show includes them.
    return _versioned(body, instance, request, server_groups=not getattr(request, "server_list", False))


def server_brief(instance, request, ctx, *, rebuild: bool = False) -> dict:
    """The answer to ``PUT /servers/{id}`` and ``rebuild``: before 2.75 a smaller view than ``show``
    (no status extensions, no usage, no availability zone); from 2.75 the full one."""
    version = request.api_version
    if version >= "2.75":
        body = server_detail(instance, request, ctx)
        if rebuild:
            body.pop("OS-EXT-SRV-ATTR:user_data", None)
    else:
        body = _versioned(
            _base(instance, request, ctx, extended_addresses=False), instance, request, server_groups=True
        )
    if rebuild:
        if version >= "2.54":
            body["key_name"] = instance.key_name
        if version >= "2.57":
            body["user_data"] = instance.user_data
    return body
