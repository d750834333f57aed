"""``/v2.0/security-groups`` and ``/v2.0/security-group-rules``."""

from __future__ import annotations

from rest_framework import status as http
from rest_framework.response import Response

from portal.selectors import security_groups as selectors
from portal.services import security_groups as services
from portal.services.network_errors import BadRequest, SecurityGroupNotFound, SecurityGroupRuleNotFound

from . import shapes
from .resources import ResourceView, unrecognized

GROUP_CREATE = {"name", "description", "stateful", "project_id", "tenant_id", "tags"}
RULE_CREATE = {
    *("security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max"),
    *("remote_ip_prefix", "remote_group_id", "remote_address_group_id", "description", "project_id", "tenant_id"),
}


class _GroupView(ResourceView):
    collection, member, attrs = "security_groups", "security_group", shapes.GROUP_ATTRS

    def visible(self):
        return selectors.groups_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.group_body(row, self.is_admin)

    def get_group(self, group_id: str):
        group = selectors.group_get(self.ctx, group_id)
        if group is None:
            raise SecurityGroupNotFound(group_id[:64])
        return group


class SecurityGroupsView(_GroupView):
    def get(self, request):
        if self.ctx.can_write:
            services.default_group(self.ctx.project)  # as Neutron: the project's default group is always there
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, GROUP_CREATE)
        if attrs.pop("tags", None):
            raise BadRequest("Invalid input for tags: this cloud does not keep tags.")
        project = self.target_project(attrs)
        return services.group_create(
            project=project,
            name=attrs.get("name", ""),
            description=attrs.get("description", ""),
            stateful=attrs.get("stateful", True),
        )


class SecurityGroupView(_GroupView):
    def get(self, request, group_id: str):
        return self.show_response(self.get_group(group_id))

    def put(self, request, group_id: str):
        self.require_write()
        group = self.get_group(group_id)
        return self.show_response(services.group_update(group=group, changes=dict(self.body_of("security_group"))))

    def delete(self, request, group_id: str):
        self.require_write()
        services.group_delete(group=self.get_group(group_id), user_is_admin=self.is_admin)
        return Response(status=http.HTTP_204_NO_CONTENT)


class _RuleView(ResourceView):
    collection, member, attrs = "security_group_rules", "security_group_rule", shapes.RULE_ATTRS

    def visible(self):
        return selectors.rules_visible(self.ctx)

    def body(self, row) -> dict:
        return shapes.rule_body(row)

    def get_rule(self, rule_id: str):
        rule = selectors.rule_get(self.ctx, rule_id)
        if rule is None:
            raise SecurityGroupRuleNotFound(rule_id[:64])
        return rule


class SecurityGroupRulesView(_RuleView):
    def get(self, request):
        return self.list_response(request)

    def post(self, request):
        return self.create_response(request, self.create_one)

    def create_one(self, attrs: dict):
        unrecognized(attrs, RULE_CREATE)
        if attrs.pop("remote_address_group_id", None) is not None:
            raise BadRequest("Invalid input for remote_address_group_id: this cloud has no address groups.")
        group_id = attrs.get("security_group_id")
        if not isinstance(group_id, str):
            raise BadRequest("Invalid input for security_group_id: a security group id is required.")
        group = selectors.group_get(self.ctx, group_id)
        if group is None:
            raise SecurityGroupNotFound(group_id[:64])
        self.target_project(attrs)  # only admins name another project; the rule is its group's project's
        remote = attrs.get("remote_group_id")
        remote_group = None
        if remote is not None:
            remote_group = selectors.group_get(self.ctx, str(remote))
            if remote_group is None:
                raise SecurityGroupNotFound(str(remote)[:64])
        return services.rule_create(project=group.project, group=group, attrs=attrs, remote_group=remote_group)


class SecurityGroupRuleView(_RuleView):
    def get(self, request, rule_id: str):
        return self.show_response(self.get_rule(rule_id))

    def put(self, request, rule_id: str):
        self.require_write()
        rule = self.get_rule(rule_id)
        changes = self.body_of("security_group_rule")
        if set(changes) - {"description"}:
            raise BadRequest("Cannot update read-only attribute(s) of a security group rule: only description.")
        if "description" in changes:
            rule = services.rule_update_description(rule=rule, description=changes["description"])
        return self.show_response(rule)

    def delete(self, request, rule_id: str):
        self.require_write()
        services.rule_delete(rule=self.get_rule(rule_id))
        return Response(status=http.HTTP_204_NO_CONTENT)
