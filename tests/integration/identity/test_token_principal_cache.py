"""The compute API keeps a validated token's user, project and role for ``IDENTITY['PRINCIPAL_CACHE_TTL']``
seconds: a client polling its server costs no identity query, the token itself is still checked on every
request, and a change to the user reaches the API within that time."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.models import BlockDeviceMapping, IdentityToken, InstanceTag
from portal.services.identity_tokens import recent_principals
from tests.factories import InstanceFactory

from .test_identity_api import SERVERS, token_for, with_token

pytestmark = pytest.mark.django_db

IDENTITY_TABLES = ("auth_user", "portal_project", "portal_membership", "portal_identitytoken")


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()
    recent_principals.clear()
    yield
    cache.clear()
    recent_principals.clear()


def identity_queries(queries) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries if any(f'FROM "{table}"' in q["sql"] for table in IDENTITY_TABLES)
    ]


def test_a_polling_client_costs_no_identity_query(member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert with_token(secret).get(SERVERS).status_code == 200
    assert identity_queries(queries) == []


def test_the_token_itself_is_checked_on_every_request(member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    IdentityToken.objects.filter(user=member.user).update(revoked_at=IdentityToken.objects.get().issued_at)
    cache.clear()  # as another process's revocation reaches a shared cache
    assert with_token(secret).get(SERVERS).status_code == 401


def test_a_change_to_the_user_counts_once_the_principal_is_old(member, settings):
    settings.IDENTITY = {**settings.IDENTITY, "PRINCIPAL_CACHE_TTL": 1}
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    # Deactivated behind this process's back (another API process's admin): believed for the TTL at most.
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    time.sleep(1.1)
    assert with_token(secret).get(SERVERS).status_code == 401


def test_with_no_ttl_every_request_reads_the_identity(member, settings):
    settings.IDENTITY = {**settings.IDENTITY, "PRINCIPAL_CACHE_TTL": 0}
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    assert with_token(secret).get(SERVERS).status_code == 401


def test_a_polled_server_costs_one_query(member):
    """The server with its host and flavor, and whether it has tags and volumes: no identity, no faults
    (it is ACTIVE), no tags or volumes to read (it has none)."""
    server = InstanceFactory(project=member.project, user=member.user)
    secret = token_for(member)
    client = with_token(secret)
    client.credentials(HTTP_X_AUTH_TOKEN=secret, HTTP_OPENSTACK_API_VERSION="compute 2.47")
    assert client.get(f"{SERVERS}/{server.uuid}").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{SERVERS}/{server.uuid}")
    assert response.status_code == 200 and response.json()["server"]["tags"] == []
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries.captured_queries]


def test_a_polled_server_with_tags_and_a_volume_reads_them(member):
    server = InstanceFactory(project=member.project, user=member.user)
    InstanceTag.objects.create(instance=server, tag="blue")
    BlockDeviceMapping.objects.create(instance=server, volume_id="v-1", device="/dev/vdb", status="attached")
    secret = token_for(member)
    client = with_token(secret)
    client.credentials(HTTP_X_AUTH_TOKEN=secret, HTTP_OPENSTACK_API_VERSION="compute 2.47")
    assert client.get(f"{SERVERS}/{server.uuid}").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        body = client.get(f"{SERVERS}/{server.uuid}").json()["server"]
    assert body["tags"] == ["blue"]
    assert [volume["id"] for volume in body["os-extended-volumes:volumes_attached"]] == ["v-1"]
    assert len(queries.captured_queries) == 3, [q["sql"][:80] for q in queries.captured_queries]
