"""Security groups and their rules: create, update, delete, which groups a port is in, and each project's
``default`` group (made on first need, exactly one however many ask at once).

Every change replans the hosts whose ports it touches: a group's rules reach the hosts of the group's
ports; a group's membership reaches those too, and the hosts of ports in groups whose rules name the
group as ``remote_group_id`` (their rules are compiled to the members' addresses).
"""

from __future__ import annotations

import ipaddress

from django.db import IntegrityError, transaction
from django.db.models import F

from portal.models import Port, Project, SecurityGroup, SecurityGroupRule
from portal.services import network_sync
from portal.services import quotas as quota_services

from .ip_protocols import PROTOCOLS, protocol_number
from .network_errors import (
    BadRequest,
    InvalidInput,
    OverQuota,
    PortSecurityAndIPRequiredForSecurityGroups,
    PortSecurityPortHasSecurityGroup,
    SecurityGroupCannotRemoveDefault,
    SecurityGroupCannotUpdateDefault,
    SecurityGroupInUse,
    SecurityGroupRuleExists,
)

DEFAULT_NAME = "default"
PORT_PROTOCOLS = {6, 17, 33, 132, 136}  # the protocols whose rules take port ranges
ICMP_PROTOCOLS = {1, 58}
ETHERTYPES = ("IPv4", "IPv6")


def _check_text(value, field: str) -> str:
    if not isinstance(value, str) or len(value) > 255:
        raise InvalidInput(f"Invalid input for {field}. Reason: must be a string of at most 255 characters.")
    return value


# --- groups -------------------------------------------------------------------------------------------


def default_group(project: Project) -> SecurityGroup:
    """The project's ``default`` group, made with its rules the first time it is needed (egress anywhere,
    ingress from the group's own members, IPv4 and IPv6). Two callers at once get the same one: the loser
    of the unique constraint reads the winner's."""
    group = SecurityGroup.objects.filter(project=project, is_default=True).first()
    if group is not None:
        return group
    try:
        with transaction.atomic():
            group = SecurityGroup.objects.create(
                project=project, name=DEFAULT_NAME, description="Default security group", is_default=True
            )
            for ethertype in ETHERTYPES:
                SecurityGroupRule.objects.create(
                    security_group=group, project=project, direction="egress", ethertype=ethertype
                )
                SecurityGroupRule.objects.create(
                    security_group=group, project=project, direction="ingress", ethertype=ethertype, remote_group=group
                )
            return group
    except IntegrityError:
        return SecurityGroup.objects.get(project=project, is_default=True)


def group_create(*, project: Project, name="", description="", stateful=True) -> SecurityGroup:
    """A group of ``project`` with Neutron's two starting rules (egress anywhere, IPv4 and IPv6)."""
    name = _check_text(name, "name")
    description = _check_text(description, "description")
    if not isinstance(stateful, bool):
        raise InvalidInput("Invalid input for stateful. Reason: must be a boolean.")
    if not stateful:
        raise BadRequest("Invalid input for stateful: this cloud's security groups are stateful.")
    if name == DEFAULT_NAME:
        raise BadRequest("Default security group already exists.")
    with transaction.atomic():
        default_group(project)
        try:
            quota_services.network_quota_check(project=project, resource="security_group")
        except quota_services.QuotaExceeded:
            raise OverQuota("security_group") from None
        group = SecurityGroup.objects.create(project=project, name=name, description=description)
        for ethertype in ETHERTYPES:
            SecurityGroupRule.objects.create(
                security_group=group, project=project, direction="egress", ethertype=ethertype
            )
    return group


def group_update(*, group: SecurityGroup, changes: dict) -> SecurityGroup:
    for attr in changes:
        if attr not in ("name", "description", "stateful"):
            raise BadRequest(f"Cannot update read-only attribute {attr[:64]}")
    with transaction.atomic():
        group = SecurityGroup.objects.select_for_update().get(pk=group.pk)
        if "name" in changes:
            name = _check_text(changes["name"], "name")
            if group.is_default and name != DEFAULT_NAME:
                raise SecurityGroupCannotUpdateDefault()
            if not group.is_default and name == DEFAULT_NAME:
                raise BadRequest("Default security group already exists.")
            group.name = name
        if "description" in changes:
            group.description = _check_text(changes["description"], "description")
        if "stateful" in changes and changes["stateful"] is not True:
            raise BadRequest("Invalid input for stateful: this cloud's security groups are stateful.")
        group.revision_number = F("revision_number") + 1
        group.save()
        group.refresh_from_db()
    return group


def group_delete(*, group: SecurityGroup, user_is_admin: bool) -> None:
    """Delete a group no port is in (409 otherwise); the default group only by an admin. Rules of other
    groups that name it as their remote group go with it."""
    with transaction.atomic():
        group = SecurityGroup.objects.select_for_update().filter(pk=group.pk).first()
        if group is None:
            return
        if group.is_default and not user_is_admin:
            raise SecurityGroupCannotRemoveDefault()
        if group.ports.exists():
            raise SecurityGroupInUse(group.pk)
        hosts = _hosts_of_groups(
            SecurityGroupRule.objects.filter(remote_group=group).values_list("security_group_id", flat=True)
        )
        group.delete()
        network_sync.hosts_changed(hosts)


# --- rules --------------------------------------------------------------------------------------------


def _protocol(value) -> str | None:
    if value in (None, "", "any"):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"Security group rule protocol {str(value)[:32]} not supported.")
    value = value.lower()
    if value.isdigit():
        if not 0 <= int(value) <= 255:
            raise InvalidInput(f"Security group rule protocol {value[:32]} not supported.")
        return value
    if value not in PROTOCOLS:
        raise InvalidInput(
            f"Security group rule protocol {value[:32]} not supported. Only protocol values "
            f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported."
        )
    return value


def _port_value(value, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidInput(f"Invalid input for {field}. Reason: '{str(value)[:32]}' is not a valid port number.")
    return value


def _check_ports(number: int | None, low: int | None, high: int | None) -> None:
    if low is None and high is None:
        return
    if number in ICMP_PROTOCOLS:
        if low is None:
            raise InvalidInput("ICMP code (port-range-max) specified without ICMP type (port-range-min).")
        for value, what in ((low, "type"), (high, "code")):
            if value is not None and value > 255:
                raise InvalidInput(f"Invalid value for ICMP {what} {value}: it must be 0 to 255.")
        return
    if number not in PORT_PROTOCOLS:
        raise InvalidInput("Invalid protocol for port range: only TCP, UDP, UDP-Lite, SCTP and DCCP take ports.")
    if low is None or high is None or low == 0 or low > high:
        raise InvalidInput("For TCP/UDP protocols, port_range_min must be <= port_range_max and both from 1 to 65535.")


def rule_create(
    *, project: Project, group: SecurityGroup, attrs: dict, remote_group: SecurityGroup | None
) -> SecurityGroupRule:
    """A rule of ``group`` (``attrs`` as the API names them, ``remote_group`` already resolved and visible
    to the caller). A rule equal to one the group has is 409 SecurityGroupRuleExists."""
    direction = attrs.get("direction")
    if direction not in ("ingress", "egress"):
        raise InvalidInput(
            f"Invalid input for direction. Reason: '{str(direction)[:32]}' is not in ['ingress', 'egress']."
        )
    ethertype = attrs.get("ethertype", "IPv4")
    if ethertype not in ETHERTYPES:
        raise InvalidInput(f"Invalid input for ethertype. Reason: '{str(ethertype)[:32]}' is not in ['IPv4', 'IPv6'].")
    protocol = _protocol(attrs.get("protocol"))
    number = protocol_number(protocol)
    if number in ICMP_PROTOCOLS and (ethertype == "IPv4") != (number == 1):
        raise InvalidInput(f"Security group rule for ethertype '{ethertype}' not supported with protocol '{protocol}'.")
    low = _port_value(attrs.get("port_range_min"), "port_range_min")
    high = _port_value(attrs.get("port_range_max"), "port_range_max")
    _check_ports(number, low, high)
    prefix = attrs.get("remote_ip_prefix")
    if prefix is not None:
        if remote_group is not None:
            raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
        try:
            address = ipaddress.ip_interface(str(prefix).strip())
            net = address.network
        except ValueError:
            raise InvalidInput(
                f"Invalid input for remote_ip_prefix. Reason: '{str(prefix)[:64]}' is not a valid IP prefix."
            ) from None
        if (net.version == 4) != (ethertype == "IPv4"):
            raise BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {net}")
        # Kept as given (a bare address is one host); the group matches its network.
        prefix = None if net.prefixlen == 0 else str(address)
    description = _check_text(attrs.get("description", ""), "description")
    fields = dict(
        direction=direction,
        ethertype=ethertype,
        protocol=protocol,
        port_range_min=low,
        port_range_max=high,
        remote_ip_prefix=prefix,
        remote_group=remote_group,
    )
    with transaction.atomic():
        group = SecurityGroup.objects.select_for_update().get(pk=group.pk)
        cidr = str(ipaddress.ip_network(prefix, strict=False)) if prefix else None
        same = [
            r
            for r in group.rules.filter(direction=direction, ethertype=ethertype, remote_group=remote_group)
            if protocol_number(r.protocol) == number
            and (r.port_range_min, r.port_range_max, r.normalized_cidr) == (low, high, cidr)
        ]
        if same:
            raise SecurityGroupRuleExists(same[0].pk)
        try:
            quota_services.network_quota_check(project=project, resource="security_group_rule")
        except quota_services.QuotaExceeded:
            raise OverQuota("security_group_rule") from None
        rule = SecurityGroupRule.objects.create(
            security_group=group, project=project, description=description, **fields
        )
        SecurityGroup.objects.filter(pk=group.pk).update(revision_number=F("revision_number") + 1)
        network_sync.hosts_changed(_hosts_of_groups([group.pk], members_only=True))
    return rule


def rule_delete(*, rule: SecurityGroupRule) -> None:
    with transaction.atomic():
        group_id = rule.security_group_id
        SecurityGroupRule.objects.filter(pk=rule.pk).delete()
        SecurityGroup.objects.filter(pk=group_id).update(revision_number=F("revision_number") + 1)
        network_sync.hosts_changed(_hosts_of_groups([group_id], members_only=True))


# --- ports' groups ------------------------------------------------------------------------------------


def groups_for_new_port(
    *, project: Project, port_security_enabled: bool, groups: list[SecurityGroup] | None, device_owner: str
):
    """The groups a new port gets: those given, else its project's default (none without port security,
    and none for the cloud's own network ports)."""
    if groups is not None:
        if groups and not port_security_enabled:
            raise PortSecurityAndIPRequiredForSecurityGroups()
        return groups
    if not port_security_enabled or device_owner.startswith("network:"):
        return []
    return [default_group(project)]


def check_port_security(port: Port, port_security_enabled: bool, groups: list[SecurityGroup] | None) -> None:
    """A port with groups cannot turn port security off (unless the same change empties its groups)."""
    if port_security_enabled:
        return
    remaining = groups if groups is not None else list(port.security_groups.all())
    if remaining:
        raise PortSecurityPortHasSecurityGroup()


def membership_changed(group_ids) -> None:
    """Ports joined or left the groups: the hosts of their members, and of ports whose rules name them."""
    network_sync.hosts_changed(_hosts_of_groups(group_ids))


def _hosts_of_groups(group_ids, *, members_only: bool = False) -> set[int]:
    group_ids = set(group_ids)
    if not members_only:
        group_ids |= set(
            SecurityGroupRule.objects.filter(remote_group_id__in=group_ids).values_list("security_group_id", flat=True)
        )
    return set(
        Port.objects.filter(security_groups__in=group_ids, host__isnull=False)
        .values_list("host_id", flat=True)
        .distinct()
    )


def rule_update_description(*, rule: SecurityGroupRule, description) -> SecurityGroupRule:
    SecurityGroupRule.objects.filter(pk=rule.pk).update(
        description=_check_text(description, "description"), revision_number=F("revision_number") + 1
    )
    return SecurityGroupRule.objects.get(pk=rule.pk)
