"""``/v3/projects/{project_id}/users/{user_id}/roles[/{role_id}]``: a user's role in a project, which is their
``Membership`` here (one role per project; an admin is also member and reader, a member also reader).

Granting a role the user already holds, or holds by implication, changes nothing (204); granting a stronger
one raises the membership to it. Checking and revoking are about the membership's own role: revoking it
removes the membership and revokes the user's tokens for that project. Cloud admins only.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework.response import Response

from portal.models import Membership, Project, Role
from portal.services.projects_admin import membership_grant, membership_remove

from . import shapes
from .base import IdentityView
from .errors import Forbidden, NotFound


class _GrantView(IdentityView):
    def found(self, project_id: str, user_id: str, action: str):
        if not self.is_admin:
            raise Forbidden(f"You are not authorized to perform the requested action: identity:{action}.")
        project = Project.objects.filter(pk=project_id, deleted_at=None).first()
        if project is None:
            raise NotFound(f"Could not find project: {project_id[:64]}.")
        user = get_user_model().objects.filter(username=user_id).exclude(identity__deleted_at__isnull=False).first()
        if user is None:
            raise NotFound(f"Could not find user: {user_id[:64]}.")
        return project, user

    @staticmethod
    def role(role_id: str) -> str:
        if role_id not in Role.values:
            raise NotFound(f"Could not find role: {role_id[:64]}.")
        return role_id


class ProjectUserRolesView(_GrantView):
    def get(self, request, project_id, user_id):
        project, user = self.found(project_id, user_id, "list_grants")
        held = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        return Response(
            {
                "roles": [shapes.role(held)] if held else [],
                "links": {
                    "self": shapes.v3_url(f"/projects/{project_id}/users/{user_id}/roles"),
                    "previous": None,
                    "next": None,
                },
            }
        )


class ProjectUserRoleView(_GrantView):
    def get(self, request, project_id, user_id, role_id):
        project, user = self.found(project_id, user_id, "check_grant")
        role = self.role(role_id)
        if not Membership.objects.filter(project=project, user=user, role=role).exists():
            raise NotFound(f"Could not find role assignment with role: {role}, user: {user_id[:64]}.")
        return Response(status=204)

    head = get

    def put(self, request, project_id, user_id, role_id):
        project, user = self.found(project_id, user_id, "create_grant")
        membership_grant(project=project, user=user, role=self.role(role_id))
        return Response(status=204)

    def delete(self, request, project_id, user_id, role_id):
        project, user = self.found(project_id, user_id, "revoke_grant")
        role = self.role(role_id)
        membership = Membership.objects.filter(project=project, user=user, role=role).first()
        if membership is None:
            raise NotFound(f"Could not find role assignment with role: {role}, user: {user_id[:64]}.")
        membership_remove(membership=membership)
        return Response(status=204)
