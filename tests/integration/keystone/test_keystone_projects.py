"""A project Keystone knows is a project here before it has sent a single request: quota sets, limits and
flavor access look it up in Keystone (and mirror it), as Nova does."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from portal.models import Project
from tests.factories import FlavorFactory

pytestmark = pytest.mark.integration

V = {"HTTP_OPENSTACK_API_VERSION": "compute 2.47"}


def admin_client(keystone) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=keystone.token("admin", "keystone-admin-secret", "admin"))
    return client


def test_quotas_and_limits_of_a_keystone_project_never_seen_here(db, keystone, keystone_settings):
    project_id = keystone.project(f"quiet-{uuid.uuid4().hex[:8]}")
    assert not Project.objects.filter(pk=project_id).exists()
    client = admin_client(keystone)
    shown = client.get(f"/compute/v2.1/os-quota-sets/{project_id}", **V)
    assert shown.status_code == 200, shown.content
    assert shown.json()["quota_set"]["id"] == project_id
    assert Project.objects.filter(pk=project_id).exists()  # mirrored
    updated = client.put(f"/compute/v2.1/os-quota-sets/{project_id}", {"quota_set": {"cores": 7}}, format="json", **V)
    assert updated.status_code == 200 and updated.json()["quota_set"]["cores"] == 7
    other = keystone.project(f"quiet-{uuid.uuid4().hex[:8]}")
    assert client.get(f"/compute/v2.1/limits?tenant_id={other}", **V).status_code == 200


def test_flavor_access_for_a_keystone_project_never_seen_here(db, keystone, keystone_settings):
    project_id = keystone.project(f"quiet-{uuid.uuid4().hex[:8]}")
    assert not Project.objects.filter(pk=project_id).exists()
    flavor = FlavorFactory(is_public=False)
    client = admin_client(keystone)
    added = client.post(
        f"/compute/v2.1/flavors/{flavor.flavorid}/action",
        {"addTenantAccess": {"tenant": project_id}},
        format="json",
        **V,
    )
    assert added.status_code == 200, added.content
    assert added.json()["flavor_access"] == [{"flavor_id": flavor.flavorid, "tenant_id": project_id}]
    assert Project.objects.filter(pk=project_id).exists()  # mirrored
    unknown = uuid.uuid4().hex
    refused = client.post(
        f"/compute/v2.1/flavors/{flavor.flavorid}/action", {"addTenantAccess": {"tenant": unknown}}, format="json", **V
    )
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == f"Project ID {unknown} is not a valid project."


def test_an_id_keystone_does_not_know_is_still_not_a_valid_project(db, keystone, keystone_settings):
    client = admin_client(keystone)
    unknown = uuid.uuid4().hex
    refused = client.get(f"/compute/v2.1/os-quota-sets/{unknown}", **V)
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == f"Project ID {unknown} is not a valid project."
    assert client.get(f"/compute/v2.1/os-quota-sets/{unknown}/defaults", **V).status_code == 400
