"""``/os-server-groups``: a project's server groups.

Shapes per microversion: ``policies`` (a one-item list) and an empty ``metadata`` until 2.63, then
``policy`` and ``rules`` from 2.64; ``project_id`` and ``user_id`` from 2.13; the soft policies
(``soft-affinity``, ``soft-anti-affinity``) may be asked for from 2.15.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden, NotFound
from portal.models import ServerGroup
from portal.selectors.server_groups import (
    server_group_exists,
    server_group_get,
    server_group_member_ids,
    server_groups_visible,
)
from portal.selectors.users import api_user_id
from portal.services import server_groups as group_services
from portal.services.quotas import QuotaExceeded

from . import validation
from .params import int_param

_HARD = (ServerGroup.Policy.AFFINITY.value, ServerGroup.Policy.ANTI_AFFINITY.value)
_ALL = tuple(ServerGroup.Policy.values)


def group_body(group, request) -> dict:
    version = request.api_version
    body = {"id": str(group.uuid), "name": group.name}
    if version >= "2.64":
        body["policy"] = group.policy
        body["rules"] = dict(group.rules)
    else:
        body["policies"] = [group.policy]
        body["metadata"] = {}
    body["members"] = server_group_member_ids(group)
    if version >= "2.13":
        body["project_id"] = group.project_id
        body["user_id"] = api_user_id(group.user)
    return body


def _create_args(data: dict, version) -> dict:
    if version >= "2.64":
        validation.reject_unknown(data, {"name", "policy", "rules"}, "server_group")
        for required in ("name", "policy"):
            if required not in data:
                raise BadRequest(
                    f"Invalid input for field/attribute server_group: '{required}' is a required property."
                )
        policy = data["policy"]
        if policy not in _ALL:
            raise BadRequest(f"Invalid input for field/attribute policy: must be one of {', '.join(_ALL)}.")
        rules = data.get("rules", {})
        if not isinstance(rules, dict):
            raise BadRequest("Invalid input for field/attribute rules: must be an object.")
        validation.reject_unknown(rules, {"max_server_per_host"}, "rules")
        if "max_server_per_host" in rules:
            # Clients send it as a number or a string of digits (the CLI's --rule); it is stored as a number.
            value = validation.integer(rules["max_server_per_host"], "max_server_per_host", minimum=1)
            rules = {"max_server_per_host": value}
    else:
        validation.reject_unknown(data, {"name", "policies"}, "server_group")
        for required in ("name", "policies"):
            if required not in data:
                raise BadRequest(
                    f"Invalid input for field/attribute server_group: '{required}' is a required property."
                )
        allowed = _ALL if version >= "2.15" else _HARD
        policies = data["policies"]
        if not isinstance(policies, list) or len(policies) != 1 or policies[0] not in allowed:
            raise BadRequest(
                f"Invalid input for field/attribute policies: a list of exactly one of {', '.join(allowed)}."
            )
        policy, rules = policies[0], {}
    return {"name": validation.name(data["name"]), "policy": policy, "rules": rules}


class ServerGroupListView(ComputeAPIView):
    def get(self, request):
        validation.known_query(request, {"all_projects", "limit", "offset"}, since="2.75")
        # Any value of all_projects asks for every project's groups, as in the compute API.
        groups = list(server_groups_visible(self.ctx, all_projects="all_projects" in request.GET))
        offset = int_param(request, "offset") or 0
        limit = int_param(request, "limit", maximum=1000)
        groups = groups[offset:] if limit is None else groups[offset : offset + limit]
        return Response({"server_groups": [group_body(g, request) for g in groups]})

    def post(self, request):
        self.require_write()
        args = _create_args(validation.body_object(request, "server_group"), request.api_version)
        try:
            group = group_services.server_group_create(ctx=self.ctx, **args)
        except group_services.InvalidServerGroup as exc:
            raise BadRequest(str(exc)) from None
        except QuotaExceeded as exc:
            raise Forbidden(str(exc)) from None
        group = server_group_get(self.ctx, group.uuid)
        return Response({"server_group": group_body(group, request)})


class ServerGroupView(ComputeAPIView):
    def _group(self, group_id, action: str):
        group = server_group_get(self.ctx, group_id)
        if group is None:
            if server_group_exists(group_id):  # another project's: the compute API's policy answer
                raise Forbidden(f"Policy doesn't allow os_compute_api:os-server-groups:{action} to be performed.")
            raise NotFound(f"Instance group {group_id[:64]} could not be found.")
        return group

    def get(self, request, group_id):
        validation.known_query(request, set(), since="2.102")
        return Response({"server_group": group_body(self._group(group_id, "show"), request)})

    def delete(self, request, group_id):
        self.require_write()
        group_services.server_group_delete(group=self._group(group_id, "delete"))
        return Response(status=204)
