"""How networks, subnets and ports look in the networking API v2.0, and which attributes each filters and
sorts by. Provider and binding attributes are shown to admins only, as Neutron's policy has them."""

from __future__ import annotations

from django.db.models import Q

from portal.ids import is_uuid
from portal.models import FloatingIP, IPAllocation, Network, Port, Router, SecurityGroup, SecurityGroupRule, Subnet
from portal.services.network_errors import BadRequest

from .query import Attr


def timestamp(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _common(row) -> dict:
    return {
        "tenant_id": row.project_id or "",
        "project_id": row.project_id or "",
        "description": row.description,
        "tags": [],
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "revision_number": row.revision_number,
    }


def network_body(network: Network, is_admin: bool) -> dict:
    body = {
        "id": str(network.pk),
        "name": network.name,
        "admin_state_up": network.admin_state_up,
        "status": "ACTIVE" if network.admin_state_up else "DOWN",
        "subnets": [str(s.pk) for s in network.subnets.all()],
        "shared": network.shared,
        "router:external": network.external,
        "mtu": network.mtu,
        "port_security_enabled": network.port_security_enabled,
        "availability_zone_hints": [],
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "l2_adjacency": True,
        **_common(network),
    }
    if is_admin:
        body["provider:network_type"] = network.network_type
        body["provider:physical_network"] = network.physical_network
        body["provider:segmentation_id"] = network.segmentation_id
    return body


def subnet_body(subnet: Subnet, is_admin: bool) -> dict:
    return {
        "id": str(subnet.pk),
        "name": subnet.name,
        "network_id": str(subnet.network_id),
        "ip_version": subnet.ip_version,
        "cidr": subnet.cidr,
        "gateway_ip": subnet.gateway_ip,
        "allocation_pools": list(subnet.allocation_pools),
        "dns_nameservers": list(subnet.dns_nameservers),
        "host_routes": list(subnet.host_routes),
        "enable_dhcp": subnet.enable_dhcp,
        "subnetpool_id": None,
        "ipv6_ra_mode": None,
        "ipv6_address_mode": None,
        "service_types": [],
        **_common(subnet),
    }


def port_body(port: Port, is_admin: bool) -> dict:
    body = {
        "id": str(port.pk),
        "name": port.name,
        "network_id": str(port.network_id),
        "mac_address": port.mac_address,
        "admin_state_up": port.admin_state_up,
        "status": port.status,
        "device_id": port.device_id,
        "device_owner": port.device_owner,
        "fixed_ips": [{"subnet_id": str(a.subnet_id), "ip_address": a.ip_address} for a in port.fixed_ips.all()],
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "security_groups": [str(g.pk) for g in port.security_groups.all()],
        "port_security_enabled": port.port_security_enabled,
        "binding:vnic_type": "normal",
        **_common(port),
    }
    if is_admin:
        body["binding:host_id"] = port.host.name if port.host_id else ""
        body["binding:profile"] = {}
        body["binding:vif_type"] = port.vif_type
        body["binding:vif_details"] = (
            {"connectivity": "l2", "bridge_name": f"brq{str(port.network_id)[:11]}"} if port.host_id else {}
        )
    return body


_COMMON_ATTRS = {
    "id": Attr("pk", "uuid"),
    "name": Attr("name"),
    "description": Attr("description"),
    "tenant_id": Attr("project_id"),
    "project_id": Attr("project_id"),
    "revision_number": Attr("revision_number", "int"),
    "created_at": Attr("created_at", sortable=True),
    "updated_at": Attr("updated_at", sortable=True),
}

NETWORK_ATTRS = {
    **_COMMON_ATTRS,
    "admin_state_up": Attr("admin_state_up", "bool"),
    "status": Attr("admin_state_up", "status", sortable=False),
    "shared": Attr("shared", "bool"),
    "router:external": Attr("external", "bool"),
    "mtu": Attr("mtu", "int"),
    "port_security_enabled": Attr("port_security_enabled", "bool"),
    "provider:network_type": Attr("network_type", admin_only=True),
    "provider:physical_network": Attr("physical_network", admin_only=True),
    "provider:segmentation_id": Attr("segmentation_id", "int", admin_only=True),
}

SUBNET_ATTRS = {
    **_COMMON_ATTRS,
    "network_id": Attr("network_id", "uuid"),
    "ip_version": Attr("ip_version", "int"),
    "cidr": Attr("cidr"),
    "gateway_ip": Attr("gateway_ip"),
    "enable_dhcp": Attr("enable_dhcp", "bool"),
}

PORT_ATTRS = {
    **_COMMON_ATTRS,
    "network_id": Attr("network_id", "uuid"),
    "mac_address": Attr("mac_address"),
    "admin_state_up": Attr("admin_state_up", "bool"),
    "status": Attr("status"),
    "device_id": Attr("device_id"),
    "device_owner": Attr("device_owner"),
    "port_security_enabled": Attr("port_security_enabled", "bool"),
    "binding:host_id": Attr("host__name", admin_only=True),
}


def fixed_ips_filter(values: list[str]) -> Q:
    """``fixed_ips=ip_address=10.0.0.3&fixed_ips=subnet_id=…``: ports holding an address that matches each
    named part (repeated parts of one name: any of them)."""
    wanted: dict[str, list[str]] = {}
    for value in values:
        name, sep, wanted_value = value.partition("=")
        if not sep or name not in ("ip_address", "subnet_id", "ip_address_substr"):
            raise BadRequest(f"Invalid input for fixed_ips filter: '{value[:64]}'")
        wanted.setdefault(name, []).append(wanted_value)
    query = Q()
    if "ip_address" in wanted:
        query &= Q(fixed_ips__ip_address__in=wanted["ip_address"])
    if "subnet_id" in wanted:
        query &= Q(fixed_ips__subnet_id__in=[v for v in wanted["subnet_id"] if is_uuid(v)])
    for part in wanted.get("ip_address_substr", []):
        query &= Q(fixed_ips__ip_address__contains=part)
    return query


def rule_body(rule: SecurityGroupRule) -> dict:
    return {
        "id": str(rule.pk),
        "security_group_id": str(rule.security_group_id),
        "direction": rule.direction,
        "ethertype": rule.ethertype,
        "protocol": rule.protocol,
        "port_range_min": rule.port_range_min,
        "port_range_max": rule.port_range_max,
        "remote_ip_prefix": rule.remote_ip_prefix,
        "normalized_cidr": rule.normalized_cidr,
        "remote_group_id": str(rule.remote_group_id) if rule.remote_group_id else None,
        "remote_address_group_id": None,
        **_common(rule),
    }


def group_body(group: SecurityGroup, is_admin: bool = False) -> dict:
    return {
        "id": str(group.pk),
        "name": group.name,
        "stateful": group.stateful,
        "shared": False,
        "security_group_rules": [rule_body(r) for r in group.rules.all()],
        **_common(group),
    }


GROUP_ATTRS = {**_COMMON_ATTRS, "stateful": Attr("stateful", "bool")}

RULE_ATTRS = {
    **{k: v for k, v in _COMMON_ATTRS.items() if k != "name"},
    "security_group_id": Attr("security_group_id", "uuid"),
    "direction": Attr("direction"),
    "ethertype": Attr("ethertype"),
    "protocol": Attr("protocol"),
    "port_range_min": Attr("port_range_min", "int"),
    "port_range_max": Attr("port_range_max", "int"),
    "remote_ip_prefix": Attr("remote_ip_prefix"),
    "remote_group_id": Attr("remote_group_id", "uuid"),
}


def attach_gateway_ips(routers: list[Router]) -> None:
    """One query for the gateway addresses of every router listed (``router_body`` reads them)."""
    by_router: dict[str, list[dict]] = {str(r.pk): [] for r in routers}
    rows = IPAllocation.objects.filter(
        port__device_owner=Port.OWNER_ROUTER_GATEWAY, port__device_id__in=list(by_router)
    ).values_list("port__device_id", "subnet_id", "ip_address")
    for device_id, subnet_id, ip_address in rows.order_by("id"):
        by_router[device_id].append({"subnet_id": str(subnet_id), "ip_address": ip_address})
    for router in routers:
        router.gateway_ips = by_router[str(router.pk)]


def router_body(router: Router, is_admin: bool = False) -> dict:
    gateway = None
    if router.external_network_id:
        gateway = {
            "network_id": str(router.external_network_id),
            "enable_snat": router.enable_snat,
            "external_fixed_ips": list(getattr(router, "gateway_ips", [])),
        }
    return {
        "id": str(router.pk),
        "name": router.name,
        "admin_state_up": router.admin_state_up,
        "status": router.status,
        "external_gateway_info": gateway,
        "routes": [],
        **_common(router),
    }


def floating_ip_body(floating_ip: FloatingIP, is_admin: bool = False) -> dict:
    port = floating_ip.port
    return {
        "id": str(floating_ip.pk),
        "floating_ip_address": floating_ip.floating_ip_address,
        "floating_network_id": str(floating_ip.floating_network_id),
        "router_id": str(floating_ip.router_id) if floating_ip.router_id else None,
        "port_id": str(floating_ip.port_id) if floating_ip.port_id else None,
        "fixed_ip_address": floating_ip.fixed_ip_address,
        "status": floating_ip.status,
        "port_details": None
        if port is None
        else {
            "name": port.name,
            "network_id": str(port.network_id),
            "mac_address": port.mac_address,
            "admin_state_up": port.admin_state_up,
            "status": port.status,
            "device_id": port.device_id,
            "device_owner": port.device_owner,
        },
        **_common(floating_ip),
    }


ROUTER_ATTRS = {
    **_COMMON_ATTRS,
    "admin_state_up": Attr("admin_state_up", "bool"),
    "status": Attr("status"),
}

FLOATING_IP_ATTRS = {
    **{k: v for k, v in _COMMON_ATTRS.items() if k != "name"},
    "floating_ip_address": Attr("floating_ip_address"),
    "floating_network_id": Attr("floating_network_id", "uuid"),
    "router_id": Attr("router_id", "uuid"),
    "port_id": Attr("port_id", "uuid"),
    "fixed_ip_address": Attr("fixed_ip_address"),
    "status": Attr("status"),
}
