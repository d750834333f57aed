"""How a server looks in the compute API, per microversion: plain dicts built from an Instance.

``server_detail`` is ``GET /servers/{id}`` (and each entry of ``/servers/detail``). The responses to
``PUT /servers/{id}`` and to ``rebuild`` show fewer attributes before 2.75 (``server_brief``), as the
compute API defines them. Microversions implemented here: 2.1 to 2.104 for servers (the last step that
changes a server's shape is 2.100).

``ServerViews`` works out once per request what its microversion and role show (and the links' base, the
network's label, the time that decides whether a host is up), then shows each server of a page with it.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.utils import timezone

from portal.selectors import security_groups as group_selectors
from portal.selectors.hosts import host_is_up
from portal.selectors.instances import latest_fault
from portal.selectors.users import api_user_id
from portal.selectors.volumes import instance_volumes
from portal.services.host_requests import hostname_from
from portal.states import api_status, server_progress

from .links import base_url, bookmark, links

# Statuses that carry ``progress`` (Nova's), and those that carry the ``fault``.
_PROGRESS_STATUSES = {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}
_FAULT_STATUSES = {"ERROR", "DELETED"}


def iso(value) -> str | None:
    """A timestamp as the compute API writes it: ``2026-12-06T14:36:32Z`` (UTC, whole seconds)."""
    if not value:
        return None
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031 (the fastest of the ways to write it)
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
    )


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


def _addresses(instance, label: str, *, extended: bool) -> dict:
    if not instance.addresses or instance.vm_state == "building":
        return {}
    by_network: dict[str, list] = {}
    ports = instance.networks == "ports"
    for a in instance.addresses:
        entry = {"version": a.get("version", 4), "addr": a["addr"]}
        if extended:
            entry["OS-EXT-IPS:type"] = a.get("type", "fixed")
            entry["OS-EXT-IPS-MAC:mac_addr"] = a.get("mac") or instance.mac_address
        # A port's address names its network; a user-mode NIC's is on the one network labelled in settings.
        name = a.get("network") if ports else None
        by_network.setdefault(name or label, []).append(entry)
    return by_network


def server_addresses(instance) -> dict:
    """The server's addresses by network, each only ``version`` and ``addr`` (``/servers/{id}/ips``)."""
    return _addresses(instance, settings.CLOUD["NETWORK"]["label"], extended=False)


def _fault(instance, is_admin: bool) -> dict | None:
    fault = latest_fault(instance)
    if fault is None:
        return None
    body = {"code": fault.code, "created": iso(fault.created_at), "message": fault.message}
    if is_admin or fault.code != 500:
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


def _scheduler_hints(instance) -> dict:
    """The hints the server was booted with, each a list of strings as the compute API keeps them."""
    hints = {}
    for key, value in (instance.scheduler_hints or {}).items():
        values = value if isinstance(value, list) else [value]
        hints[str(key)] = [v if isinstance(v, str) else str(v) for v in values]
    return hints


def server_summary(instance) -> dict:
    server_id = str(instance.uuid)
    return {"id": server_id, "name": instance.name, "links": links("servers", server_id)}


class ServerViews:
    """How servers look to one request: what its microversion and the caller's role show, worked out
    once, then applied to each server (a page of them, or one)."""

    def __init__(self, request, ctx):
        version = request.api_version
        self.is_admin = ctx.is_admin
        # The detail list leaves server_groups out, as the compute API does; show includes them.
        self.listing = getattr(request, "server_list", False)
        self.base = base_url()
        self.network_label = settings.CLOUD["NETWORK"]["label"]
        self.now = timezone.now()
        self.delete_on_termination = version >= "2.3"  # in volumes_attached
        self.extended_more = version >= "2.3"  # more admin attributes
        self.locked = version >= "2.9"
        self.host_status = version >= "2.16"
        self.description = version >= "2.19"
        self.tags = version >= "2.26"
        self.flavor_embedded = version >= "2.47"
        self.trusted_certificates = version >= "2.63"
        self.server_groups = version >= "2.71"
        self.locked_reason = version >= "2.73"
        self.full_brief = version >= "2.75"  # PUT and rebuild answer with the full view
        self.hostname = version >= "2.90"
        self.pinned_zone = version >= "2.96"
        self.image_properties = version >= "2.98"
        self.hints = version >= "2.100"
        # Per host, for a page of servers on few hosts: (project, host) -> hostId, host -> host_status.
        self._host_ids: dict[tuple, str] = {}
        self._host_statuses: dict[int, str] = {}

    def _host_id(self, instance) -> str:
        if instance.host_id is None:
            return ""
        key = (instance.project_id, instance.host_id)
        found = self._host_ids.get(key)
        if found is None:
            found = self._host_ids[key] = host_id(instance)
        return found

    def _host_status(self, instance) -> str:
        if instance.host_id is None:
            return ""
        found = self._host_statuses.get(instance.host_id)
        if found is None:
            host = instance.host
            up = host.enabled and host_is_up(host, self.now)
            found = "UP" if up else "MAINTENANCE" if not host.enabled else "DOWN"
            self._host_statuses[instance.host_id] = found
        return found

    def _flavor(self, instance) -> dict:
        if self.flavor_embedded:
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
        return {"id": flavor_id, "links": [bookmark("flavors", flavor_id, base=self.base)]}

    def _image(self, instance) -> dict | str:
        # A server booted from a volume shows "" for its image, as the compute API does.
        if instance.image_ref is None:
            return ""
        image_id = str(instance.image_ref)
        image = {"id": image_id, "links": [bookmark("images", image_id, base=self.base)]}
        if self.image_properties:
            image["properties"] = _image_properties(instance)
        return image

    def _volumes_attached(self, instance) -> list[dict]:
        if self.delete_on_termination:
            return [
                {"id": m.volume_id, "delete_on_termination": m.delete_on_termination}
                for m in instance_volumes(instance)
            ]
        return [{"id": m.volume_id} for m in instance_volumes(instance)]

    def _base(self, instance, *, extended_addresses: bool) -> dict:
        """The attributes every full view of a server has, whatever else the request shows."""
        server_id = str(instance.uuid)
        status = api_status(instance.vm_state, instance.task_state)
        body = {
            "id": server_id,
            "name": instance.name,
            "links": links("servers", server_id, base=self.base),
            "status": status,
            "tenant_id": instance.project_id,
            "user_id": api_user_id(instance.user),
            "metadata": dict(instance.metadata),
            "hostId": self._host_id(instance),
            "image": self._image(instance),
            "flavor": self._flavor(instance),
            "created": iso(instance.created_at),
            "updated": iso(instance.updated_at),
            "addresses": _addresses(instance, self.network_label, extended=extended_addresses),
            "accessIPv4": instance.access_ip_v4,
            "accessIPv6": instance.access_ip_v6,
            "OS-DCF:diskConfig": "MANUAL",
        }
        if status in _FAULT_STATUSES:
            fault = _fault(instance, self.is_admin)
            if fault is not None:
                body["fault"] = fault
        if status in _PROGRESS_STATUSES:
            body["progress"] = server_progress(instance.vm_state, instance.task_state, instance.step_progress)
        return body

    def _versioned(self, body: dict, instance, *, server_groups: bool) -> dict:
        if self.locked:
            body["locked"] = bool(instance.locked)
        if self.description:
            body["description"] = instance.description
        if self.tags:
            body["tags"] = instance_tags(instance)
        if self.trusted_certificates:
            body["trusted_image_certificates"] = None
        if server_groups and self.server_groups:
            body["server_groups"] = [str(instance.server_group.uuid)] if instance.server_group_id else []
        if self.locked_reason:
            body["locked_reason"] = instance.locked_reason if instance.locked else None
        return body

    def _extended(self, body: dict, instance, *, user_data: bool = True) -> None:
        """The admin-only extended server attributes, and host_status (2.16)."""
        if not self.is_admin:
            return
        host = instance.host.name if instance.host_id is not None else None
        body["OS-EXT-SRV-ATTR:host"] = host
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = host
        body["OS-EXT-SRV-ATTR:instance_name"] = instance.domain_name
        if self.extended_more:
            body["OS-EXT-SRV-ATTR:reservation_id"] = instance.reservation_id
            body["OS-EXT-SRV-ATTR:launch_index"] = instance.launch_index
            body["OS-EXT-SRV-ATTR:hostname"] = instance.hostname or hostname_from(instance.name)
            body["OS-EXT-SRV-ATTR:kernel_id"] = ""
            body["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
            body["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
            if user_data:
                body["OS-EXT-SRV-ATTR:user_data"] = instance.user_data
        if self.host_status:
            body["host_status"] = self._host_status(instance)

    def detail(self, instance) -> dict:
        """``GET /servers/{id}``: every attribute the microversion and the caller's role show."""
        body = self._base(instance, extended_addresses=True)
        body["OS-EXT-AZ:availability_zone"] = instance.availability_zone
        body["config_drive"] = "True" if instance.config_drive else ""
        body["key_name"] = instance.key_name
        body["OS-SRV-USG:launched_at"] = iso(instance.launched_at)
        body["OS-SRV-USG:terminated_at"] = iso(instance.terminated_at)
        body["OS-EXT-STS:vm_state"] = instance.vm_state
        body["OS-EXT-STS:task_state"] = instance.task_state
        body["OS-EXT-STS:power_state"] = instance.power_state
        body["os-extended-volumes:volumes_attached"] = self._volumes_attached(instance)
        if instance.networks != "none":
            names = group_selectors.server_group_names(instance) if instance.networks == "ports" else ["default"]
            if names:
                body["security_groups"] = [{"name": n} for n in names]
        self._extended(body, instance)
        if self.hostname:
            # Everyone sees the host name from 2.90 (admins saw it already from 2.3).
            body["OS-EXT-SRV-ATTR:hostname"] = instance.hostname or hostname_from(instance.name)
        if self.pinned_zone:
            body["pinned_availability_zone"] = instance.pinned_availability_zone
        if self.hints:
            body["scheduler_hints"] = _scheduler_hints(instance)
        return self._versioned(body, instance, server_groups=not self.listing)

    def brief(self, instance, *, rebuild: bool = False) -> dict:
        """The answer to ``PUT /servers/{id}`` and ``rebuild``: before 2.75 a smaller view than ``show``
        (no status extensions, no usage, no availability zone); from 2.75 the full one."""
        if self.full_brief:
            body = self.detail(instance)
            if rebuild:
                body.pop("OS-EXT-SRV-ATTR:user_data", None)
        else:
            body = self._versioned(self._base(instance, extended_addresses=False), instance, server_groups=True)
        return body


def server_detail(instance, request, ctx) -> dict:
    """``GET /servers/{id}``: every attribute the microversion and the caller's role show."""
    return ServerViews(request, ctx).detail(instance)


def server_brief(instance, request, ctx, *, rebuild: bool = False) -> dict:
    """The answer to ``PUT /servers/{id}`` and ``rebuild`` (``ServerViews.brief``), and on rebuild the
    key name (2.54) and user data (2.57)."""
    body = ServerViews(request, ctx).brief(instance, rebuild=rebuild)
    if rebuild:
        version = request.api_version
        if version >= "2.54":
            body["key_name"] = instance.key_name
        if version >= "2.57":
            body["user_data"] = instance.user_data
    return body
