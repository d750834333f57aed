"""Signing in and out, and choosing the project the portal works in."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from portal.auth.forms import THROTTLED, SignInForm

from .context import SESSION_PROJECT, portal_view, projects_for


class LoginView(auth_views.LoginView):
    """Django's sign-in: local users, and Keystone users when a Keystone backend is configured."""

    template_name = "portal/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, code=THROTTLED):
            response.status_code = 429
        return response


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]


@require_POST
@portal_view
def switch_project(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("project", "")
    project = next((p for p in projects_for(request.user) if p.pk == wanted), None)
    if project is None:
        messages.error(request, "You have no role in that project.")
    else:
        request.session[SESSION_PROJECT] = project.pk
        messages.info(request, f"Now working in project {project.name}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("portal:dashboard")
    # Pages of another project's instance would now be 404s: go to the section's list instead.
    if "/instances/" in target:
        target = reverse("portal:instances")
    return HttpResponseRedirect(target)
