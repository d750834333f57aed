"""Projects named by id in admin requests (``addTenantAccess``, quota sets, limits): the portal's own, or with
Keystone on, a Keystone project not seen here yet, mirrored on the spot as a sign-in would (and so asked
about once). An id Keystone does not know is remembered as unknown for ``UNKNOWN_TTL`` seconds, so that
requests naming it do not each ask Keystone."""

from __future__ import annotations

import logging
from urllib.parse import quote

from django.core.cache import cache
from keystoneauth1 import exceptions as ks_exceptions

from portal.auth import keystone
from portal.models import Project

from .identity import keystone_project_sync

log = logging.getLogger(__name__)

UNKNOWN_TTL = 30


def project_by_id(project_id: str) -> Project | None:
    """The project with this id, or None when neither the portal nor Keystone knows it."""
    project = Project.objects.filter(pk=project_id).first()
    if project is not None or not keystone.enabled():
        return project
    unknown_key = f"keystone-project-unknown:{project_id[:64]}"
    if cache.get(unknown_key):
        return None
    found = _keystone_project(project_id)
    if found is None:
        cache.set(unknown_key, True, timeout=UNKNOWN_TTL)
        return None
    name, domain = found
    return keystone_project_sync(project_id=project_id, name=name, domain=domain)


def _keystone_project(project_id: str) -> tuple[str, str | None] | None:
    client = keystone.client()
    try:
        base = client.identity_url()
        session = client.service_session()
        response = session.get(f"{base}/projects/{quote(project_id, safe='')}", raise_exc=False)
        if response.status_code != 200:
            return None
        project = response.json()["project"]
        domain = session.get(f"{base}/domains/{quote(project['domain_id'], safe='')}", raise_exc=False)
        domain_name = domain.json()["domain"]["name"] if domain.status_code == 200 else None
    except (keystone.KeystoneUnavailable, ks_exceptions.ClientException, KeyError, ValueError) as exc:
        log.warning("Could not look project %s up in Keystone: %s", project_id, type(exc).__name__)
        return None
    return project["name"], domain_name
