"""The portal's sign-in form against Keystone, beside the local users of ``ModelBackend``."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.backends import ModelBackend

from portal.services.identity import LocalUserConflict, keystone_sign_in_sync

from . import keystone

log = logging.getLogger(__name__)


class KeystoneBackend(ModelBackend):
    """Checks the user name and password with Keystone, then mirrors the user, projects and roles.

    The portal session ends when the Keystone token issued at sign-in would have expired, so roles taken
    away in Keystone stop counting at the latest then.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not keystone.enabled() or not username or not password:
            return None
        domain = settings.KEYSTONE["LOGIN_DOMAIN_NAME"]
        try:
            identities = keystone.client().sign_in(username, password, domain)
        except keystone.InvalidCredentials:
            return None
        except keystone.KeystoneUnavailable:
            log.warning("Keystone sign-in of %s not possible: Keystone unavailable", username)
            return None
        first = identities[0]
        projects = [
            (i.project_id, i.project_name or i.project_id, i.project_domain_name, keystone.portal_role(i.roles))
            for i in identities
            if i.project_id is not None
        ]
        try:
            user = keystone_sign_in_sync(user_id=first.user_id, user_name=first.user_name, projects=projects)
        except LocalUserConflict:
            log.warning("Keystone user %s has the name of a local user; sign-in refused", first.user_id)
            return None
        if not self.user_can_authenticate(user):
            return None
        session = getattr(request, "session", None)
        if session is not None:
            session.set_expiry(min(i.expires_at for i in identities))
        return user
