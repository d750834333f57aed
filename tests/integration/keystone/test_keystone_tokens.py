"""``X-Auth-Token`` against a real Keystone: mapping onto projects, users and roles; caching; failures."""

from __future__ import annotations

import logging
import uuid

import pytest
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory

from portal.api.base import ComputeAPIView
from portal.auth import keystone as keystone_module
from portal.models import Membership, Project, Role
from tests.conftest import basic_auth
from tests.factories import FlavorFactory, ImageFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.integration

V = {"HTTP_OPENSTACK_API_VERSION": "compute 2.47"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def person(keystone):
    """A Keystone user who is a member of a fresh Keystone project."""
    return keystone.make_user(unique("alice"), "alice-pw", unique("proj"), "member")


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=token)
    return client


class ContextProbe(ComputeAPIView):
    """Answers with the request context the base view made, so tests can see the policy inputs."""

    def get(self, request):
        ctx = self.ctx
        return Response({"project": ctx.project.pk, "role": ctx.role, "admin": ctx.is_admin, "write": ctx.can_write})


def probe(token: str, **kwargs):
    request = APIRequestFactory().get("/compute/v2.1/probe", HTTP_X_AUTH_TOKEN=token)
    response = ContextProbe.as_view()(request, **kwargs)
    response.render()
    return response


def test_a_member_token_maps_project_user_and_role(db, keystone, keystone_settings, person):
    token = keystone.token(person["name"], person["password"], person["project"])
    response = token_client(token).get("/compute/v2.1/servers", **V)
    assert response.status_code == 200, response.content
    assert response.json() == {"servers": []}

    project = Project.objects.get(pk=person["project_id"])
    assert project.name == person["project"]
    membership = Membership.objects.get(project=project)
    assert membership.role == Role.MEMBER
    user = membership.user
    assert user.username == person["id"]
    assert user.first_name == person["name"]
    assert not user.has_usable_password()

    body = probe(token).data
    assert body == {"project": person["project_id"], "role": "member", "admin": False, "write": True}


def test_reader_reads_but_cannot_act(db, keystone, keystone_settings):
    reader = keystone.make_user(unique("rita"), "rita-pw", unique("proj"), "reader")
    token = keystone.token(reader["name"], reader["password"], reader["project"])
    client = token_client(token)
    assert client.get("/compute/v2.1/servers/detail", **V).status_code == 200
    flavor = FlavorFactory(flavorid="1", name="m1.tiny")
    image = ImageFactory()
    body = {"server": {"name": "vm", "imageRef": str(image.id), "flavorRef": flavor.flavorid, "networks": "none"}}
    response = client.post("/compute/v2.1/servers", body, format="json", **V)
    assert response.status_code == 403
    assert response.json()["forbidden"]["code"] == 403
    assert probe(token).data == {"project": reader["project_id"], "role": "reader", "admin": False, "write": False}


def test_keystone_admin_is_admin_here(db, keystone, keystone_settings):
    token = keystone.token("admin", "keystone-admin-secret", "admin")
    body = probe(token).data
    assert body["role"] == "admin"
    assert body["admin"] is True


def test_the_token_decides_the_project_not_the_header(db, keystone, keystone_settings, person):
    other = ProjectFactory()
    token = keystone.token(person["name"], person["password"], person["project"])
    response = token_client(token).get("/compute/v2.1/servers", HTTP_X_PROJECT_ID=other.pk, **V)
    assert response.status_code == 200
    assert probe(token).data["project"] == person["project_id"]
    # Another project in the URL is refused, as Nova refuses it.
    response = token_client(token).get(f"/compute/v2.1/{other.pk}/servers", **V)
    assert response.status_code == 400
    assert "doesn't match" in response.json()["badRequest"]["message"]
    response = token_client(token).get(f"/compute/v2.1/{person['project_id']}/servers", **V)
    assert response.status_code == 200


def test_role_changes_in_keystone_follow_with_the_next_token(db, keystone, keystone_settings, person):
    first = keystone.token(person["name"], person["password"], person["project"])
    assert probe(first).data["role"] == "member"
    keystone.revoke_grant(person["id"], person["project_id"], "member")
    keystone.grant(person["id"], person["project_id"], "reader")
    second = keystone.token(person["name"], person["password"], person["project"])
    assert probe(second).data["role"] == "reader"
    assert Membership.objects.get(project_id=person["project_id"]).role == Role.READER


def test_a_role_unknown_here_gives_no_access(db, keystone, keystone_settings):
    odd = keystone.make_user(unique("olga"), "olga-pw", unique("proj"), unique("auditor"))
    token = keystone.token(odd["name"], odd["password"], odd["project"])
    response = token_client(token).get("/compute/v2.1/servers", **V)
    assert response.status_code == 403
    assert "None of your roles" in response.json()["forbidden"]["message"]
    assert not Membership.objects.filter(project_id=odd["project_id"]).exists()


def test_unscoped_and_invalid_tokens(db, keystone, keystone_settings, person):
    unscoped = keystone.token(person["name"], person["password"])
    response = token_client(unscoped).get("/compute/v2.1/servers", **V)
    assert response.status_code == 403
    assert "not scoped to a project" in response.json()["forbidden"]["message"]

    for bad in ("garbage", keystone.token(person["name"], person["password"], person["project"])[:-6] + "AAAAAA"):
        response = token_client(bad).get("/compute/v2.1/servers", **V)
        assert response.status_code == 401
        assert response.json()["unauthorized"]["code"] == 401


def test_a_revoked_token_stays_valid_only_while_cached(db, keystone, keystone_settings, person):
    token = keystone.token(person["name"], person["password"], person["project"])
    client = token_client(token)
    assert client.get("/compute/v2.1/servers", **V).status_code == 200
    keystone.revoke_token(token)
    # Cached: Keystone is not asked again (the revocation is not seen until the entry ends) ...
    assert client.get("/compute/v2.1/servers", **V).status_code == 200
    # ... and once the entry is gone, Keystone's answer counts.
    keystone_module.client().cache.clear()
    assert client.get("/compute/v2.1/servers", **V).status_code == 401


def test_without_a_cache_every_request_asks_keystone(db, keystone, settings, person):
    settings.KEYSTONE = keystone.settings(TOKEN_CACHE_TTL=0)
    token = keystone.token(person["name"], person["password"], person["project"])
    client = token_client(token)
    assert client.get("/compute/v2.1/servers", **V).status_code == 200
    keystone.revoke_token(token)
    assert client.get("/compute/v2.1/servers", **V).status_code == 401


def test_the_cache_holds_token_hashes_only(db, keystone, keystone_settings, person):
    token = keystone.token(person["name"], person["password"], person["project"])
    assert token_client(token).get("/compute/v2.1/servers", **V).status_code == 200
    cache = keystone_module.client().cache
    assert len(cache) == 1
    assert token not in repr(cache._entries)
    assert keystone_module.token_key(token) in cache._entries


def test_tokens_and_passwords_never_reach_the_logs(db, keystone, keystone_settings, person, caplog):
    caplog.set_level(logging.DEBUG)
    token = keystone.token(person["name"], person["password"], person["project"])
    assert token_client(token).get("/compute/v2.1/servers", **V).status_code == 200
    assert token_client("not-a-token-" + token[:20]).get("/compute/v2.1/servers", **V).status_code == 401
    assert len(caplog.records) > 0  # keystoneauth did log its requests
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert token not in text
    assert token[:20] not in text
    assert "keystone-admin-secret" not in text


def test_keystone_unreachable_is_503(db, keystone, settings, person, caplog):
    token = keystone.token(person["name"], person["password"], person["project"])
    settings.KEYSTONE = keystone.settings(AUTH_URL="http://127.0.0.1:9/v3", TIMEOUT=2)
    response = token_client(token).get("/compute/v2.1/servers", **V)
    assert response.status_code == 503
    assert response.json()["serviceUnavailable"]["code"] == 503
    assert token not in caplog.text


def test_wrong_service_credentials_are_503_and_logged(db, keystone, settings, person, caplog):
    token = keystone.token(person["name"], person["password"], person["project"])
    settings.KEYSTONE = keystone.settings(PASSWORD="wrong")
    response = token_client(token).get("/compute/v2.1/servers", **V)
    assert response.status_code == 503
    assert "service credentials" in caplog.text
    assert "wrong" not in caplog.text


def test_local_users_keep_working_beside_keystone(db, keystone_settings):
    membership = MembershipFactory(role=Role.MEMBER)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(membership.user.username))
    assert client.get("/compute/v2.1/servers", **V).status_code == 200


def test_without_keystone_a_token_is_not_accepted(db, keystone, settings, person):
    settings.KEYSTONE = keystone.settings(AUTH_URL="")
    token = keystone.token(person["name"], person["password"], person["project"])
    assert token_client(token).get("/compute/v2.1/servers", **V).status_code == 401


def test_a_local_user_is_never_taken_over(db, keystone, keystone_settings, person):
    UserFactory(username=person["id"])  # a local user with a password, named like the Keystone user's id
    token = keystone.token(person["name"], person["password"], person["project"])
    assert token_client(token).get("/compute/v2.1/servers", **V).status_code == 401


def test_project_names_taken_locally_are_qualified(db, keystone, keystone_settings):
    name = unique("shared")
    ProjectFactory(name=name)
    person = keystone.make_user(unique("bob"), "bob-pw", name, "member")
    token = keystone.token(person["name"], person["password"], name)
    assert token_client(token).get("/compute/v2.1/servers", **V).status_code == 200
    assert Project.objects.get(pk=person["project_id"]).name == f"{name}@Default"
    assert Project.objects.filter(name=name).count() == 1


def test_steady_state_costs_one_query(db, keystone, keystone_settings, person, django_assert_max_num_queries):
    token = keystone.token(person["name"], person["password"], person["project"])
    assert probe(token).status_code == 200
    with django_assert_max_num_queries(1):
        assert probe(token).status_code == 200
