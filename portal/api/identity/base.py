"""The identity API's base views: Keystone's error envelope, built-in tokens, and who counts as admin."""

from __future__ import annotations

from django.conf import settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.views import APIView

from portal.auth.identity_authentication import IdentityAPIAuthentication, local_tokens_enabled
from portal.models import Role
from portal.services.identity_tokens import TokenPrincipal

from .errors import NotFound, identity_exception_handler


class AlwaysJSON(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class IdentityView(APIView):
    """An identity API endpoint; with an external Keystone configured, none exists (404)."""

    authentication_classes = [IdentityAPIAuthentication]
    permission_classes = [IsAuthenticated]
    content_negotiation_class = AlwaysJSON

    def get_exception_handler(self):
        return identity_exception_handler

    def initial(self, request, *args, **kwargs):
        if not local_tokens_enabled():
            raise NotFound(f"This cloud's identity service is the Keystone at {settings.KEYSTONE['AUTH_URL']}.")
        super().initial(request, *args, **kwargs)

    @property
    def principal(self) -> TokenPrincipal:
        return self.request.auth

    @property
    def is_admin(self) -> bool:
        """Admins (an admin-scoped token, or a superuser) see every project, user and assignment."""
        return self.principal.role == Role.ADMIN or bool(getattr(self.request.user, "is_superuser", False))


class PublicIdentityView(IdentityView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
