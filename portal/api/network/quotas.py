"""``/v2.0/quotas``: the network limits of projects (``network``, ``subnet``, ``port``), their defaults and
their usage, as Neutron's quotas and quota_details extensions answer."""

from __future__ import annotations

from rest_framework import status as http
from rest_framework.response import Response

from portal.models import QuotaLimit
from portal.selectors import quotas as selectors
from portal.services import quotas as services
from portal.services.network_errors import BadRequest, PolicyNotAuthorized
from portal.services.projects import project_by_id

from .base import NetworkingAPIView

RESOURCES = tuple(selectors.NETWORK_DEFAULTS)


def _limits(project) -> dict[str, int]:
    limits = selectors.project_limits(project) if project is not None else selectors.default_limits()
    return {r: limits[r] for r in RESOURCES}


class _QuotaView(NetworkingAPIView):
    def project(self, project_id: str, *, write: bool = False):
        """The project a quota path names: the caller's own, or any for admins (writes: admins only)."""
        if write:
            self.require_admin()
        elif project_id != self.ctx.project.pk and not self.is_admin:
            raise PolicyNotAuthorized("Non-admin is not authorized to access quotas for another project")
        project = project_by_id(project_id)
        if project is None and write:
            raise BadRequest(f"Project {project_id[:64]} is not a project of this cloud.")
        return project


class QuotasView(_QuotaView):
    """Admins: every project that has a network limit of its own."""

    def get(self, request):
        self.require_admin()
        project_ids = (
            QuotaLimit.objects.filter(user__isnull=True, resource__in=RESOURCES)
            .values_list("project_id", flat=True)
            .distinct()
            .order_by("project_id")
        )
        quotas = []
        for project_id in project_ids:
            project = project_by_id(project_id)
            quotas.append({**_limits(project), "project_id": project_id, "tenant_id": project_id})
        return Response({"quotas": quotas})


class QuotaView(_QuotaView):
    def get(self, request, target_project_id: str):
        return Response({"quota": _limits(self.project(target_project_id))})

    def put(self, request, target_project_id: str):
        project = self.project(target_project_id, write=True)
        body = self.body_of("quota")
        values = dict(body)
        check_limit = values.pop("check_limit", False)
        values.pop("force", None)
        if not isinstance(check_limit, bool):
            raise BadRequest("Invalid input for check_limit: must be a boolean.")
        for resource, value in values.items():
            if isinstance(value, str) and value.lstrip("-").isdigit():
                values[resource] = int(value)
        try:
            limits = services.network_quota_update(project=project, values=values, check_limit=check_limit)
        except services.InvalidQuota as exc:
            raise BadRequest(str(exc)) from None
        return Response({"quota": limits})

    def delete(self, request, target_project_id: str):
        project = self.project(target_project_id, write=True)
        services.network_quota_reset(project=project)
        return Response(status=http.HTTP_204_NO_CONTENT)


class QuotaDefaultView(_QuotaView):
    def get(self, request, target_project_id: str):
        self.project(target_project_id)
        return Response({"quota": _limits(None)})


class QuotaDetailsView(_QuotaView):
    def get(self, request, target_project_id: str):
        project = self.project(target_project_id)
        limits = _limits(project)
        used = selectors.network_usage(project) if project is not None else dict.fromkeys(RESOURCES, 0)
        return Response({"quota": {r: {"used": used[r], "limit": limits[r], "reserved": 0} for r in RESOURCES}})
