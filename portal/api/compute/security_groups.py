"""Security groups in the compute API: a server's groups (``GET /servers/{id}/os-security-groups``), and the
proxy of the network controller's groups and rules (``/os-security-groups``, ``/os-security-group-rules``)
in Nova's shapes, until 2.35 (from 2.36, 404: clients use the networking API)."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden, NotFound
from portal.ids import is_uuid
from portal.selectors import security_groups as selectors
from portal.services import security_groups as services
from portal.services.network_errors import NetworkError
from portal.services.network_errors import NotFound as NetworkNotFoundError

from . import validation
from .servers import get_instance_or_404

_LAST_VERSION = "2.35"


def rule_body(rule) -> dict:
    """A rule as Nova shows it: ingress only; ports -1 for "any" ICMP type/code."""
    low, high = rule.port_range_min, rule.port_range_max
    if rule.protocol in ("icmp", "1"):
        low, high = (-1 if low is None else low), (-1 if high is None else high)
    body = {
        "id": str(rule.pk),
        "parent_group_id": str(rule.security_group_id),
        "ip_protocol": rule.protocol,
        "from_port": low,
        "to_port": high,
        "ip_range": {},
        "group": {},
    }
    if rule.remote_group_id:
        body["group"] = {"name": rule.remote_group.name, "tenant_id": rule.remote_group.project_id}
    else:
        body["ip_range"] = {"cidr": rule.remote_ip_prefix or ("0.0.0.0/0" if rule.ethertype == "IPv4" else "::/0")}
    return body


def group_body(group) -> dict:
    rules = [r for r in group.rules.all() if r.direction == "ingress"]
    return {
        "id": str(group.pk),
        "name": group.name,
        "description": group.description,
        "tenant_id": group.project_id,
        "rules": [rule_body(r) for r in rules],
    }


def _refused(exc: NetworkError):
    """The networking API's refusal as Nova's proxy answers it: a conflict (a group in use, the default
    group, a rule that exists) is 400, a quota 403."""
    if isinstance(exc, NetworkNotFoundError):
        return NotFound(exc.message)
    if exc.type == "OverQuota":
        return Forbidden(exc.message)
    return BadRequest(exc.message)


class ServerSecurityGroupsView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        instance = get_instance_or_404(self, server_id)
        groups = selectors.server_groups(instance)
        return Response({"security_groups": [group_body(g) for g in groups]})


class _ProxyView(ComputeAPIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")

    def group_or_404(self, group_id: str):
        if not is_uuid(group_id):
            raise BadRequest(f"Security group id should be uuid: {group_id[:64]}")
        group = selectors.group_get(self.ctx, group_id)
        if group is None:
            raise NotFound(f"Security group {group_id[:64]} not found.")
        return group

    def body_of(self, key: str) -> dict:
        data = self.request.data
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise BadRequest(f"The request body must be an object with a '{key}' object.")
        return data[key]


class SecurityGroupListView(_ProxyView):
    def get(self, request):
        if self.ctx.can_write:
            services.default_group(self.ctx.project)
        groups = selectors.groups_visible(self.ctx)
        if not (self.ctx.is_admin and request.query_params.get("all_tenants") in ("1", "true", "True")):
            groups = groups.filter(project=self.ctx.project)
        return Response({"security_groups": [group_body(g) for g in groups.order_by("created_at", "id")]})

    def delete(self, request):
        # DELETE /os-security-groups/ names no group: Nova's router finds no such resource.
        raise NotFound("The resource could not be found.")

    def post(self, request):
        self.require_write()
        body = self.body_of("security_group")
        name, description = body.get("name"), body.get("description", "")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("Security group name is a non-empty string.")
        try:
            group = services.group_create(project=self.ctx.project, name=name, description=description or "")
        except NetworkError as exc:
            raise _refused(exc) from None
        return Response({"security_group": group_body(selectors.group_get(self.ctx, str(group.pk)))})


class SecurityGroupView(_ProxyView):
    def get(self, request, group_id: str):
        return Response({"security_group": group_body(self.group_or_404(group_id))})

    def put(self, request, group_id: str):
        self.require_write()
        group = self.group_or_404(group_id)
        body = self.body_of("security_group")
        changes = {k: body[k] for k in ("name", "description") if k in body}
        try:
            group = services.group_update(group=group, changes=changes)
        except NetworkError as exc:
            raise _refused(exc) from None
        return Response({"security_group": group_body(selectors.group_get(self.ctx, str(group.pk)))})

    def delete(self, request, group_id: str):
        self.require_write()
        try:
            services.group_delete(group=self.group_or_404(group_id), user_is_admin=self.ctx.is_admin)
        except NetworkError as exc:
            raise _refused(exc) from None
        return Response(status=202)


def _nova_port(value, field: str):
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid input for {field}: '{str(value)[:32]}' is not an integer.") from None


class SecurityGroupRuleListView(_ProxyView):
    def post(self, request):
        self.require_write()
        body = self.body_of("security_group_rule")
        parent = body.get("parent_group_id")
        if not isinstance(parent, str):
            raise BadRequest("parent_group_id is required.")
        group = self.group_or_404(parent)
        protocol = body.get("ip_protocol")
        low, high = _nova_port(body.get("from_port"), "from_port"), _nova_port(body.get("to_port"), "to_port")
        if isinstance(protocol, str) and protocol.lower() == "icmp":
            low, high = (None if low == -1 else low), (None if high == -1 else high)
        attrs = {"direction": "ingress", "protocol": protocol, "port_range_min": low, "port_range_max": high}
        remote_group = None
        if body.get("group_id"):
            remote_group = self.group_or_404(str(body["group_id"]))
        elif body.get("cidr"):
            attrs["remote_ip_prefix"] = body["cidr"]
        try:
            rule = services.rule_create(project=group.project, group=group, attrs=attrs, remote_group=remote_group)
        except NetworkError as exc:
            raise _refused(exc) from None
        return Response({"security_group_rule": rule_body(selectors.rules_visible(self.ctx).get(pk=rule.pk))})


class SecurityGroupRuleView(_ProxyView):
    def delete(self, request, rule_id: str):
        self.require_write()
        rule = selectors.rule_get(self.ctx, rule_id)
        if rule is None:
            raise NotFound(f"Security group rule {rule_id[:64]} not found.")
        services.rule_delete(rule=rule)
        return Response(status=202)
