"""Private flavors' access lists (admins): ``GET /flavors/{id}/os-flavor-access`` and the
``addTenantAccess`` / ``removeTenantAccess`` actions on ``POST /flavors/{id}/action``."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.selectors.flavors import flavor_access_list
from portal.services import flavors as flavor_services
from portal.services.projects import project_by_id

from . import validation
from .flavors import get_flavor_or_404


def access_body(flavor) -> dict:
    return {
        "flavor_access": [
            {"flavor_id": flavor.flavorid, "tenant_id": project_id} for project_id in flavor_access_list(flavor)
        ]
    }


class FlavorAccessView(ComputeAPIView):
    def get(self, request, flavor_id):
        validation.known_query(request, set(), since="2.102")
        self.require_admin()
        flavor = get_flavor_or_404(self, flavor_id)
        if flavor.is_public:
            raise NotFound("Access list not available for public flavors.")
        return Response(access_body(flavor))


class FlavorActionView(ComputeAPIView):
    def post(self, request, flavor_id):
        name, args = validation.single_action(request)
        if name not in ("addTenantAccess", "removeTenantAccess"):
            raise BadRequest(f"There is no such action: {name[:64]}")
        self.require_admin()
        if not isinstance(args, dict):
            raise BadRequest(f"Invalid input for field/attribute {name}: must be an object.")
        validation.reject_unknown(args, {"tenant"}, name)
        tenant = args.get("tenant")
        if not isinstance(tenant, str) or not 1 <= len(tenant) <= 255:
            raise BadRequest(f"Invalid input for field/attribute tenant in {name}: must be a string of 1 to 255.")
        if name == "addTenantAccess":
            project = project_by_id(tenant)
            if project is None:
                raise BadRequest(f"Project ID {tenant} is not a valid project.")
            flavor = get_flavor_or_404(self, flavor_id)
            try:
                flavor_services.flavor_access_add(
                    flavor=flavor, project=project, allow_public=request.api_version < "2.7"
                )
            except flavor_services.FlavorConflict as exc:
                raise Conflict(str(exc)) from None
        else:
            flavor = get_flavor_or_404(self, flavor_id)
            try:
                flavor_services.flavor_access_remove(flavor=flavor, project_id=tenant)
            except flavor_services.FlavorAccessNotFound as exc:
                raise NotFound(str(exc)) from None
        return Response(access_body(flavor))
