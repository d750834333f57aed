"""What every portal page needs: the signed-in user's context in their chosen project, and the frame.

The chosen project lives in the session (``project_id``); a user without a role anywhere sees a page
that says so instead of a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from portal.auth.context import NoProject, RequestContext, resolve_context
from portal.models import Project
from portal.selectors.instances import instance_get
from portal.services import cinder

SESSION_PROJECT = "project_id"


def projects_for(user) -> list[Project]:
    """The projects a user may switch to: their memberships, or every enabled project for superusers."""
    if getattr(user, "is_superuser", False):
        return list(Project.objects.filter(enabled=True))
    return [m.project for m in user.memberships.select_related("project").filter(project__enabled=True)]


def portal_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in, with ``request.ctx`` resolved for the session's project (or the user's first)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            request.ctx = resolve_context(request.user, request.session.get(SESSION_PROJECT))
        except NoProject:
            request.session.pop(SESSION_PROJECT, None)
            try:
                request.ctx = resolve_context(request.user)
            except NoProject as exc:
                return render(request, "portal/no_project.html", {"reason": str(exc)}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def instance_or_404(request: HttpRequest, server_id):
    """The instance ``server_id`` as the signed-in user may see it; 404 when it is hidden or gone."""
    instance = instance_get(request.ctx, server_id)
    if instance is None:
        raise Http404("No such instance")
    return instance


def page(request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200) -> HttpResponse:
    """Render a portal page with the frame's data: the context, the projects to switch to, the section."""
    ctx: RequestContext = request.ctx
    frame = {"ctx": ctx, "projects": projects_for(request.user), "volumes_enabled": cinder.configured()}
    return render(request, template, {**frame, **(context or {})}, status=status)
