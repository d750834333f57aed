"""``/os-quota-sets/{tenant_id}`` (show, update, delete, ``/defaults``, ``/detail``; ``?user_id=`` for
a user's own limits) and ``/os-quota-class-sets/{id}``, in the shapes of every microversion.

Members and readers may read their own project's quotas; only admins read other projects' or change
anything. Only the ``default`` class is honoured, as in Nova: the others can be stored and read back.
"""

from __future__ import annotations

import re

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden
from portal.models import Project
from portal.selectors import quotas as selectors
from portal.selectors.users import user_by_api_id
from portal.services import quotas as services
from portal.services.projects import project_by_id

_LIMIT_RE = re.compile(r"^-?[0-9]{1,20}$")  # longer is out of range anyway
_NETWORK = ("fixed_ips", "floating_ips", "security_group_rules", "security_groups")
_PERSONALITY = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
_SERVER_GROUPS = ("server_groups", "server_group_members")
_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def quota_set_resources(version) -> list[str]:
    """The resources a quota set shows: 2.36 dropped the network ones, 2.57 the personality files."""
    hidden: tuple[str, ...] = ()
    if version >= "2.57":
        hidden = _NETWORK + _PERSONALITY
    elif version >= "2.36":
        hidden = _NETWORK
    return [r for r in selectors.COMPUTE_RESOURCES if r not in hidden]


def quota_class_resources(version) -> list[str]:
    """A quota class shows server groups only from 2.50, which also dropped the network ones."""
    if version >= "2.57":
        hidden = _NETWORK + _PERSONALITY
    elif version >= "2.50":
        hidden = _NETWORK
    else:
        hidden = _SERVER_GROUPS
    return [r for r in selectors.COMPUTE_RESOURCES if r not in hidden]


def parse_limits(body, key: str, allowed: list[str], *, with_force: bool) -> tuple[dict[str, int], bool]:
    """The new limits in ``{key: {...}}``; 400 for anything a strict schema would refuse."""
    if not isinstance(body, dict) or set(body) != {key} or not isinstance(body[key], dict):
        raise BadRequest(f"Invalid input for field/attribute {key}: the body must be {{'{key}': {{...}}}}.")
    values: dict[str, int] = {}
    force = False
    for name, raw in body[key].items():
        if with_force and name == "force":
            force = _boolean(raw)
            continue
        if name not in allowed:
            raise BadRequest(
                f"Invalid input for field/attribute {key}. Additional properties are not allowed "
                f"({str(name)[:64]!r} was unexpected)"
            )
        if (
            isinstance(raw, bool)
            or not isinstance(raw, int | str)
            or (isinstance(raw, str) and not _LIMIT_RE.match(raw))
        ):
            raise BadRequest(f"Invalid input for field/attribute {name}. Value: {str(raw)[:64]}. Must be an integer.")
        value = int(raw)
        if not selectors.UNLIMITED <= value <= services.MAX_LIMIT:
            raise BadRequest(
                f"Invalid input for field/attribute {name}. Value: {value}. "
                f"Must be -1 or between 0 and {services.MAX_LIMIT}."
            )
        values[name] = value
    return values, force


def _boolean(raw) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise BadRequest(f"Invalid input for field/attribute force. Value: {str(raw)[:64]}. Must be a boolean.")


class QuotaAPIView(ComputeAPIView):
    """Shared checks: the tenant in the path, the optional ``user_id``, strict query strings from 2.75."""

    query_params: tuple[str, ...] = ("user_id",)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version >= "2.75":
            unknown = sorted(set(request.GET) - set(self.query_params))
            if unknown:
                raise BadRequest(f"Invalid input for query parameters: {unknown[0][:64]!r} is not allowed.")

    def tenant(self, tenant_id: str, *, action: str) -> Project:
        if tenant_id != self.ctx.project.pk and not self.ctx.is_admin:
            raise Forbidden(f"Policy doesn't allow os_compute_api:os-quota-sets:{action} to be performed.")
        project = project_by_id(tenant_id)
        if project is None:
            raise BadRequest(f"Project ID {tenant_id[:64]} is not a valid project.")
        return project

    def user(self, project: Project):
        user_id = self.request.GET.get("user_id")
        if user_id is None:
            return None
        user = user_by_api_id(user_id)
        if user is None or not selectors.is_member(project, user):
            raise BadRequest(f"User ID {user_id[:64]} is not a valid user of project {project.pk}.")
        return user

    def limits(self, project: Project, user) -> dict[str, int]:
        return selectors.user_limits(project, user) if user is not None else selectors.project_limits(project)


class QuotaSetView(QuotaAPIView):
    def get(self, request, tenant_id):
        project = self.tenant(tenant_id, action="show")
        limits = self.limits(project, self.user(project))
        shown = {r: limits[r] for r in quota_set_resources(request.api_version)}
        return Response({"quota_set": {"id": project.pk, **shown}})

    def put(self, request, tenant_id):
        self.require_admin()
        project = self.tenant(tenant_id, action="update")
        user = self.user(project)
        values, force = parse_limits(
            request.data, "quota_set", quota_set_resources(request.api_version), with_force=True
        )
        try:
            limits = services.quota_set_update(project=project, user=user, values=values, force=force)
        except services.InvalidQuota as exc:
            raise BadRequest(str(exc)) from None
        return Response({"quota_set": {r: limits[r] for r in quota_set_resources(request.api_version)}})

    def delete(self, request, tenant_id):
        self.require_admin()
        project = self.tenant(tenant_id, action="delete")
        services.quota_set_delete(project=project, user=self.user(project))
        return Response(status=202)


class QuotaSetDetailView(QuotaAPIView):
    def get(self, request, tenant_id):
        project = self.tenant(tenant_id, action="detail")
        user = self.user(project)
        detail = selectors.quota_detail(
            self.limits(project, user), selectors.usage(project, user, keypair_owner=self.ctx.user)
        )
        shown = {r: detail[r] for r in quota_set_resources(request.api_version)}
        return Response({"quota_set": {"id": project.pk, **shown}})


class QuotaSetDefaultsView(QuotaAPIView):
    query_params = ()

    def get(self, request, tenant_id):
        project = project_by_id(tenant_id)
        if project is None:
            raise BadRequest(f"Project ID {tenant_id[:64]} is not a valid project.")
        defaults = selectors.default_limits()
        shown = {r: defaults[r] for r in quota_set_resources(request.api_version)}
        return Response({"quota_set": {"id": project.pk, **shown}})


class QuotaClassSetView(QuotaAPIView):
    query_params = ()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.require_admin()

    def get(self, request, class_name):
        limits = selectors.class_limits(class_name)
        shown = {r: limits[r] for r in quota_class_resources(request.api_version)}
        return Response({"quota_class_set": {"id": class_name, **shown}})

    def put(self, request, class_name):
        values, _ = parse_limits(
            request.data, "quota_class_set", quota_class_resources(request.api_version), with_force=False
        )
        try:
            limits = services.quota_class_update(class_name=class_name, values=values)
        except services.InvalidQuota as exc:
            raise BadRequest(str(exc)) from None
        return Response({"quota_class_set": {r: limits[r] for r in quota_class_resources(request.api_version)}})
