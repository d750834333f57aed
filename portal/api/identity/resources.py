"""The read-only calls clients make to turn names into ids: projects, users, the domain, roles, role
assignments. Admins see everything; others their own user and projects. Writes are answered 501: users,
projects and roles are managed in the cloud's admin pages."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework.response import Response

from portal.models import Membership, Project, Role

from . import shapes
from .auth_views import visible_projects
from .base import IdentityView
from .errors import NotFound, NotImplementedHere


class ReadOnlyIdentityView(IdentityView):
    def post(self, request, *args, **kwargs):
        raise NotImplementedHere()

    put = patch = delete = post


def _listing(name: str, items: list[dict], path: str) -> Response:
    return Response({name: items, "links": {"self": shapes.v3_url(path), "previous": None, "next": None}})


def _domain_matches(request) -> bool:
    domain_id = request.query_params.get("domain_id")
    return domain_id is None or domain_id == shapes.DOMAIN_ID


def _enabled_filter(request, items, attribute: str):
    enabled = request.query_params.get("enabled")
    if enabled is None:
        return items
    wanted = enabled.lower() not in ("0", "false", "no", "off")
    return [i for i in items if getattr(i, attribute) == wanted]


def _projects_for(view) -> list[Project]:
    """Every project for an admin; the caller's own for others."""
    if view.is_admin:
        return list(Project.objects.all())
    return visible_projects(view)


class ProjectsView(ReadOnlyIdentityView):
    def get(self, request):
        projects = _projects_for(self) if _domain_matches(request) else []
        name = request.query_params.get("name")
        if name is not None:
            projects = [p for p in projects if p.name == name]
        projects = _enabled_filter(request, projects, "enabled")
        return _listing("projects", [shapes.project(p) for p in projects], "/projects")


class ProjectView(ReadOnlyIdentityView):
    def get(self, request, project_id):
        project = next((p for p in _projects_for(self) if p.pk == project_id), None)
        if project is None:
            raise NotFound(f"Could not find project: {project_id[:64]}.")
        return Response({"project": shapes.project(project)})


class UserProjectsView(ReadOnlyIdentityView):
    def get(self, request, user_id):
        if user_id != request.user.get_username() and not self.is_admin:
            raise NotFound(f"Could not find user: {user_id[:64]}.")
        ids = Membership.objects.filter(user__username=user_id).values("project_id")
        return _listing(
            "projects", [shapes.project(p) for p in Project.objects.filter(pk__in=ids)], f"/users/{user_id}/projects"
        )


def _visible_users(view):
    users = get_user_model().objects.order_by("username")
    if not view.is_admin:
        users = users.filter(pk=view.request.user.pk)
    return users


class UsersView(ReadOnlyIdentityView):
    def get(self, request):
        users = _visible_users(self) if _domain_matches(request) else get_user_model().objects.none()
        name = request.query_params.get("name")
        if name is not None:
            users = users.filter(username=name)
        return _listing("users", [shapes.user(u) for u in _enabled_filter(request, list(users), "is_active")], "/users")


class UserView(ReadOnlyIdentityView):
    def get(self, request, user_id):
        found = _visible_users(self).filter(username=user_id).first()
        if found is None:
            raise NotFound(f"Could not find user: {user_id[:64]}.")
        return Response({"user": shapes.user(found)})


class DomainsView(ReadOnlyIdentityView):
    def get(self, request):
        name = request.query_params.get("name")
        domains = [shapes.domain()] if name is None or name == shapes.DOMAIN_NAME else []
        return _listing("domains", domains, "/domains")


class DomainView(ReadOnlyIdentityView):
    def get(self, request, domain_id):
        if domain_id != shapes.DOMAIN_ID:
            raise NotFound(f"Could not find domain: {domain_id[:64]}.")
        return Response({"domain": shapes.domain()})


class RolesView(ReadOnlyIdentityView):
    def get(self, request):
        name = request.query_params.get("name")
        roles = [r for r in Role.values if name is None or r == name]
        return _listing("roles", [shapes.role(r) for r in roles], "/roles")


class RoleView(ReadOnlyIdentityView):
    def get(self, request, role_id):
        if role_id not in Role.values:
            raise NotFound(f"Could not find role: {role_id[:64]}.")
        return Response({"role": shapes.role(role_id)})


class RoleAssignmentsView(ReadOnlyIdentityView):
    """Memberships as Keystone's role assignments on projects (``effective`` adds the implied roles)."""

    def get(self, request):
        params = request.query_params
        memberships = Membership.objects.select_related("user", "project").order_by("project__name", "user__username")
        if not self.is_admin:
            memberships = memberships.filter(user=request.user)
        if "user.id" in params:
            memberships = memberships.filter(user__username=params["user.id"])
        if "scope.project.id" in params:
            memberships = memberships.filter(project_id=params["scope.project.id"])
        if "group.id" in params or "scope.domain.id" in params or "scope.system" in params:
            memberships = memberships.none()
        names = "include_names" in params and params["include_names"].lower() not in ("0", "false")
        effective = "effective" in params
        wanted_role = params.get("role.id")
        assignments = []
        for membership in memberships:
            roles = shapes.implied_roles(membership.role) if effective else [membership.role]
            for role in roles:
                if wanted_role is not None and role != wanted_role:
                    continue
                assignments.append(self._assignment(membership, role, names))
        return _listing("role_assignments", assignments, "/role_assignments")

    @staticmethod
    def _assignment(membership: Membership, role: str, names: bool) -> dict:
        username, project = membership.user.get_username(), membership.project
        body = {
            "role": {"id": role},
            "user": {"id": username},
            "scope": {"project": {"id": project.pk}},
            "links": {"assignment": shapes.v3_url(f"/projects/{project.pk}/users/{username}/roles/{role}")},
        }
        if names:
            body["role"]["name"] = role
            body["user"].update(name=username, domain=shapes.DOMAIN)
            body["scope"]["project"].update(name=project.name, domain=shapes.DOMAIN)
        return body
