"""The test session's real Cinder (``scripts/local_cinder.py``), as pytest fixtures.

- ``cinder``: noauth (``noauth_include_project_id``), for the whole session.
- ``keystone_cinder``: another Cinder, with ``auth_strategy = keystone`` against the session's Keystone and
  registered in its catalog, for one test module.
"""

from __future__ import annotations

import pytest

from scripts.local_cinder import CinderError, CinderService

__all__ = ["CinderError", "CinderService", "cinder", "cinder_settings", "keystone_cinder"]

# As real deployments register Cinder's v3 API: under the older ``volumev3`` type (clients and
# keystoneauth know it as an alias of ``block-storage``), with the caller's project in the URL.
CATALOG_TYPE = "volumev3"
CATALOG_NAME = "cinderv3"
SERVICE_PROJECT = "service"
CINDER_USER = "cinder"
CINDER_PASSWORD = "cinder-service-secret"


@pytest.fixture(scope="session")
def cinder(tmp_path_factory):
    """A real Cinder (noauth, NFS on a local directory) for the whole test session."""
    service = CinderService(tmp_path_factory.mktemp("cinder")).start()
    print(f"cinder started in {service.startup_seconds:.1f}s at {service.endpoint}")
    yield service
    service.stop()


@pytest.fixture
def cinder_settings(cinder, settings):
    """The cloud under test speaks to the session's Cinder with noauth."""
    settings.CINDER = {**settings.CINDER, "ENDPOINT": cinder.endpoint}
    return settings


@pytest.fixture(scope="module")
def keystone_cinder(keystone, tmp_path_factory):
    """A real Cinder validating Keystone tokens, in the catalog as ``volumev3`` for this module.

    Cinder runs as the user ``cinder`` with the ``service`` role (so Keystone lets it validate tokens)
    and ``admin`` (the tests' own view of every project's volumes) in the project ``service``, as
    deployment tools set it up; it accepts ``X-Service-Token`` only from users with the ``service`` role.
    """
    project_id = keystone.project(SERVICE_PROJECT)
    user_id = keystone.user(CINDER_USER, CINDER_PASSWORD)
    for role in ("service", "admin"):
        keystone.grant(user_id, project_id, role)
    credentials = {
        "auth_url": keystone.auth_url,
        "username": CINDER_USER,
        "password": CINDER_PASSWORD,
        "project": SERVICE_PROJECT,
    }
    service = CinderService(tmp_path_factory.mktemp("cinder-keystone"), keystone=credentials)
    try:
        service.start()
    except Exception:
        print(f"===== Cinder (auth_strategy = keystone) did not start =====\n{service.logs()}")
        raise
    print(f"cinder (keystone) started in {service.startup_seconds:.1f}s at {service.endpoint}")
    catalog_id = keystone.register_service(CATALOG_TYPE, CATALOG_NAME, f"{service.endpoint}/%(project_id)s")
    yield service
    keystone.delete_service(catalog_id)
    service.stop()
