"""``/v3/projects``, ``/v3/users``, ``/v3/domains``, ``/v3/roles``, ``/v3/role_assignments``: the cloud's own
users and projects in Keystone's shapes. Admins see everything; others their own user and projects. Cloud
admins create, change and delete projects and users here (``projects_admin.py`` says what a delete keeps);
domains and roles are fixed (501)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework.response import Response

from portal.models import Membership, Project, Role
from portal.services.projects_admin import (
    ProjectConflict,
    ProjectInUse,
    UserConflict,
    project_delete,
    project_save,
    user_create,
    user_delete,
    user_update,
)

from . import bodies, shapes
from .auth_views import visible_projects
from .base import IdentityView
from .errors import Conflict, Forbidden, NotFound, NotImplementedHere, ValidationFailed


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
    """Every project (but deleted ones) for an admin; the caller's own for others."""
    if view.is_admin:
        return list(Project.objects.filter(deleted_at=None))
    return visible_projects(view)


class WritableIdentityView(ReadOnlyIdentityView):
    def require_admin(self, action: str) -> None:
        """Writes are the cloud admins' (an admin-scoped token): others get Keystone's 403."""
        if not self.is_admin:
            raise Forbidden(f"You are not authorized to perform the requested action: identity:{action}.")


def _project_found(project_id: str) -> Project:
    project = Project.objects.filter(pk=project_id, deleted_at=None).first()
    if project is None:
        raise NotFound(f"Could not find project: {project_id[:64]}.")
    return project


class ProjectsView(WritableIdentityView):
    def post(self, request):
        self.require_admin("create_project")
        body = bodies.wrapped(request.data, "project")
        name = bodies.name(body, "name", required=True, longest=bodies.PROJECT_NAME_MAX)
        description = bodies.text(body, "description") or ""
        enabled = bodies.flag(body, "enabled")
        bodies.domain(body)
        bodies.refuse_project_hierarchy(body)
        try:
            project = project_save(
                project=None, name=name, description=description, enabled=True if enabled is None else enabled
            )
        except ProjectConflict:
            raise Conflict(f"Duplicate entry found with name {name} at domain ID default.") from None
        return Response({"project": shapes.project(project)}, status=201)

    def get(self, request):
        projects = _projects_for(self) if _domain_matches(request) else []
        name = request.query_params.get("name")
        if name is not None:
            projects = [p for p in projects if p.name == name]
        projects = _enabled_filter(request, projects, "enabled")
        return _listing("projects", [shapes.project(p) for p in projects], "/projects")


class ProjectView(WritableIdentityView):
    def get(self, request, project_id):
        project = next((p for p in _projects_for(self) if p.pk == project_id), None)
        if project is None:
            raise NotFound(f"Could not find project: {project_id[:64]}.")
        return Response({"project": shapes.project(project)})

    def patch(self, request, project_id):
        self.require_admin("update_project")
        body = bodies.wrapped(request.data, "project")
        project = _project_found(project_id)
        name = bodies.name(body, "name", required=False, longest=bodies.PROJECT_NAME_MAX)
        description = bodies.text(body, "description")
        enabled = bodies.flag(body, "enabled")
        bodies.domain(body)
        if "parent_id" in body or "is_domain" in body:
            raise ValidationFailed("A project's parent and whether it is a domain cannot change.")
        try:
            project = project_save(
                project=project,
                name=project.name if name is None else name,
                description=project.description if description is None else description,
                enabled=project.enabled if enabled is None else enabled,
            )
        except ProjectConflict:
            raise Conflict(f"Duplicate entry found with name {name} at domain ID default.") from None
        return Response({"project": shapes.project(project)})

    def delete(self, request, project_id):
        self.require_admin("delete_project")
        project = _project_found(project_id)
        if self.principal.project is not None and self.principal.project.pk == project.pk:
            raise Forbidden("A token cannot delete the project it is scoped to.")
        try:
            project_delete(project=project)
        except ProjectInUse as exc:
            raise Conflict(str(exc)) from None
        return Response(status=204)


class UserProjectsView(ReadOnlyIdentityView):
    def get(self, request, user_id):
        if user_id != request.user.get_username() and not self.is_admin:
            raise NotFound(f"Could not find user: {user_id[:64]}.")
        ids = Membership.objects.filter(user__username=user_id).values("project_id")
        return _listing(
            "projects", [shapes.project(p) for p in Project.objects.filter(pk__in=ids)], f"/users/{user_id}/projects"
        )


def _visible_users(view):
    users = get_user_model().objects.select_related("identity").exclude(identity__deleted_at__isnull=False)
    users = users.order_by("username")
    if not view.is_admin:
        users = users.filter(pk=view.request.user.pk)
    return users


def _user_found(view, user_id: str):
    found = _visible_users(view).filter(username=user_id).first()
    if found is None:
        raise NotFound(f"Could not find user: {user_id[:64]}.")
    return found


class UsersView(WritableIdentityView):
    def post(self, request):
        self.require_admin("create_user")
        body = bodies.wrapped(request.data, "user")
        name = bodies.user_name(body, required=True)
        password = bodies.password(body)
        email = bodies.email(body) or ""
        description = bodies.text(body, "description") or ""
        enabled = bodies.flag(body, "enabled")
        bodies.domain(body)
        default_project = bodies.default_project(body)
        try:
            user = user_create(
                name=name,
                password=None if password is ... else password,
                email=email,
                description=description,
                default_project=None if default_project is ... else default_project,
                enabled=True if enabled is None else enabled,
            )
        except UserConflict as exc:
            raise Conflict(str(exc)) from None
        return Response({"user": shapes.user(_visible_users(self).get(pk=user.pk))}, status=201)

    def get(self, request):
        users = _visible_users(self) if _domain_matches(request) else get_user_model().objects.none()
        name = request.query_params.get("name")
        if name is not None:
            users = users.filter(username=name)
        return _listing("users", [shapes.user(u) for u in _enabled_filter(request, list(users), "is_active")], "/users")


class UserView(WritableIdentityView):
    def get(self, request, user_id):
        return Response({"user": shapes.user(_user_found(self, user_id))})

    def patch(self, request, user_id):
        self.require_admin("update_user")
        body = bodies.wrapped(request.data, "user")
        user = _user_found(self, user_id)
        name = bodies.user_name(body, required=False)
        if name is not None and name != user.get_username():
            raise ValidationFailed("A user's name is their id here and cannot change: create a new user.")
        bodies.domain(body)
        changes = {}
        password, default_project = bodies.password(body), bodies.default_project(body)
        if password is not ...:
            changes["password"] = password
        if default_project is not ...:
            changes["default_project"] = default_project
        for key, value in (
            ("email", bodies.email(body)),
            ("description", bodies.text(body, "description")),
            ("enabled", bodies.flag(body, "enabled")),
        ):
            if value is not None:
                changes[key] = value
        if changes.get("enabled") is False and user.pk == request.user.pk:
            raise Forbidden("A user cannot disable themselves.")
        user_update(user=user, **changes)
        return Response({"user": shapes.user(_user_found(self, user_id))})

    def delete(self, request, user_id):
        self.require_admin("delete_user")
        user = _user_found(self, user_id)
        if user.pk == request.user.pk:
            raise Forbidden("A user cannot delete themselves.")
        user_delete(user=user)
        return Response(status=204)


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
