"""The built-in identity API v3 against the real database: tokens, scopes, catalog, revocation, the
read-only name lookups, application credentials; and the compute API accepting its tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from portal.models import IdentityToken, Role
from portal.services.projects_admin import membership_remove, membership_set, user_deactivate
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

V3 = "/identity/v3"
SERVERS = "/compute/v2.1/servers"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def password_auth(username, password="secret", project=None, domain={"name": "Default"}, scope=None):  # noqa: B006
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": username, "domain": domain, "password": password}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def issue(body, expect=201):
    response = APIClient().post(f"{V3}/auth/tokens", body, format="json")
    assert response.status_code == expect, response.content
    return response


def token_for(caller, **kwargs) -> str:
    return issue(password_auth(caller.user.username, project=caller.project.name, **kwargs))["X-Subject-Token"]


def with_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=token)
    return client


def test_version_discovery():
    client = APIClient()
    versions = client.get("/identity")
    assert versions.status_code == 300
    (version,) = versions.json()["versions"]["values"]
    assert version["status"] == "stable" and version["id"].startswith("v3.")
    assert version["links"][0]["href"].endswith("/identity/v3/")
    assert client.get(V3).json()["version"]["id"] == version["id"]


def test_a_project_scoped_token_names_its_user_project_roles_and_catalog(member, settings):
    settings.CINDER = {**settings.CINDER, "ENDPOINT": ""}
    response = issue(password_auth(member.user.username, project=member.project.name))
    secret = response["X-Subject-Token"]
    assert len(secret) >= 40
    assert IdentityToken.objects.get().token_hash != secret  # only the hash is stored
    token = response.json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"] == {
        "id": member.user.username,
        "name": member.user.username,
        "domain": {"id": "default", "name": "Default"},
        "password_expires_at": None,
    }
    assert token["project"] == {"id": member.project.pk, "name": member.project.name, "domain": token["user"]["domain"]}
    assert [r["name"] for r in token["roles"]] == ["member", "reader"]
    expires = timezone.datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < expires - timezone.now() <= timedelta(hours=1)
    catalog = {entry["type"]: entry for entry in token["catalog"]}
    assert sorted(catalog) == ["compute", "identity", "image", "network"]
    public = settings.CLOUD["PUBLIC_URL"]
    urls = {e["interface"]: e["url"] for e in catalog["compute"]["endpoints"]}
    assert urls == {i: f"{public}/compute/v2.1" for i in ("public", "internal", "admin")}
    assert catalog["image"]["endpoints"][0]["url"] == f"{public}/image"
    assert catalog["network"]["endpoints"][0]["url"] == f"{public}/networking"
    assert catalog["identity"]["endpoints"][0]["url"] == f"{public}/identity"
    assert all(e["region_id"] == "RegionOne" for e in catalog["compute"]["endpoints"])

    # The compute API takes the token as the member in their project.
    servers = with_token(secret).get(SERVERS)
    assert servers.status_code == 200, servers.content
    assert servers.json() == {"servers": []}
    # nocatalog leaves the catalog out
    bare = APIClient().post(
        f"{V3}/auth/tokens?nocatalog", password_auth(member.user.username, project=member.project.name), format="json"
    )
    assert "catalog" not in bare.json()["token"]


def test_the_catalog_lists_block_storage_when_a_cinder_is_configured(member, settings):
    settings.CINDER = {**settings.CINDER, "ENDPOINT": "http://127.0.0.1:8776/v3"}
    token = issue(password_auth(member.user.username, project=member.project.name)).json()["token"]
    (volume,) = [e for e in token["catalog"] if e["type"] == "block-storage"]
    assert volume["endpoints"][0]["url"] == f"http://127.0.0.1:8776/v3/{member.project.pk}"


def test_admins_get_every_implied_role_and_the_project_by_id(admin):
    body = password_auth(admin.user.username, scope={"project": {"id": admin.project.pk}})
    token = issue(body).json()["token"]
    assert [r["name"] for r in token["roles"]] == ["admin", "member", "reader"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(member):
    wrong = issue(password_auth(member.user.username, "not-it", project=member.project.name), expect=401)
    unknown = issue(password_auth("nobody-here", "not-it", project=member.project.name), expect=401)
    other_domain = issue(password_auth(member.user.username, domain={"name": "Elsewhere"}), expect=401)
    assert wrong.json() == unknown.json() == other_domain.json()
    assert wrong.json() == {
        "error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}
    }
    assert wrong["WWW-Authenticate"].startswith("Keystone")


def test_password_guessing_is_throttled(member, settings):
    settings.AUTH_THROTTLE = {**settings.AUTH_THROTTLE, "MAX_FAILURES_PER_USER": 2}
    for _ in range(2):
        issue(password_auth(member.user.username, "guess"), expect=401)
    refused = issue(password_auth(member.user.username, "secret"), expect=429)  # even the right one, now
    assert refused.json()["error"]["code"] == 429
    assert int(refused["Retry-After"]) > 0


def test_no_role_in_the_project_asked_for_is_401(member, stranger):
    issue(password_auth(member.user.username, project=stranger.project.name), expect=401)
    issue(password_auth(member.user.username, scope={"project": {"id": "0" * 32}}), expect=401)


def test_an_unscoped_token_lists_projects_but_cannot_use_the_compute_api(member):
    MembershipFactory(user=member.user, role=Role.READER)
    response = issue(password_auth(member.user.username))
    token = response.json()["token"]
    assert "project" not in token and "catalog" not in token
    client = with_token(response["X-Subject-Token"])
    projects = client.get(f"{V3}/auth/projects").json()["projects"]
    assert len(projects) == 2 and member.project.pk in {p["id"] for p in projects}
    assert client.get(SERVERS).status_code == 403
    # Rescoped with the token method, to a project of the user's: the compute API takes it.
    rescoped = issue(
        {
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": response["X-Subject-Token"]}},
                "scope": {"project": {"id": member.project.pk}},
            }
        }
    )
    assert rescoped.json()["token"]["methods"] == ["token"]
    assert rescoped.json()["token"]["expires_at"] <= token["expires_at"]
    assert with_token(rescoped["X-Subject-Token"]).get(SERVERS).status_code == 200


def test_domain_scope_is_for_admins(member, admin):
    scope = {"domain": {"id": "default"}}
    issue(password_auth(member.user.username, scope=scope), expect=401)
    token = issue(password_auth(admin.user.username, scope=scope)).json()["token"]
    assert token["domain"] == {"id": "default", "name": "Default"}


def test_validate_head_and_revoke(member, stranger, admin):
    secret = token_for(member)
    client = with_token(secret)
    shown = client.get(f"{V3}/auth/tokens", HTTP_X_SUBJECT_TOKEN=secret)
    assert shown.status_code == 200 and shown["X-Subject-Token"] == secret
    assert shown.json()["token"]["project"]["id"] == member.project.pk
    assert client.head(f"{V3}/auth/tokens", HTTP_X_SUBJECT_TOKEN=secret).status_code == 200
    # Another user's token is not found for a non-admin; an admin sees it.
    other = with_token(token_for(stranger))
    assert other.get(f"{V3}/auth/tokens", HTTP_X_SUBJECT_TOKEN=secret).status_code == 404
    assert with_token(token_for(admin)).get(f"{V3}/auth/tokens", HTTP_X_SUBJECT_TOKEN=secret).status_code == 200

    assert client.delete(f"{V3}/auth/tokens", HTTP_X_SUBJECT_TOKEN=secret).status_code == 204
    refused = with_token(secret).get(SERVERS)
    assert refused.status_code == 401
    assert with_token(secret).get(f"{V3}/auth/projects").status_code == 401
    assert IdentityToken.objects.get(token_hash__isnull=False, user=member.user).revoked_at is not None


def test_an_expired_token_is_refused(member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200  # now cached
    IdentityToken.objects.filter(user=member.user).update(expires_at=timezone.now() - timedelta(seconds=1))
    cache.clear()
    assert with_token(secret).get(SERVERS).status_code == 401
    assert with_token(token_for(member)).get(f"{V3}/auth/tokens", HTTP_X_SUBJECT_TOKEN=secret).status_code == 404


def test_a_cached_token_expires_with_its_deadline_even_in_the_cache(member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    token = IdentityToken.objects.get(user=member.user)
    key = f"identity-token:{token.token_hash}"
    record = cache.get(key)
    assert record is not None
    cache.set(key, record.__class__(**{**record.__dict__, "expires_at": timezone.now()}))
    assert with_token(secret).get(SERVERS).status_code == 401


def test_a_validated_token_costs_no_token_query_and_no_password_hash(member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert with_token(secret).get(SERVERS).status_code == 200
    assert not [q for q in queries.captured_queries if "portal_identitytoken" in q["sql"]]


def test_removing_the_membership_or_the_user_revokes_their_tokens(member, reader):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    membership_remove(membership=member.membership)
    assert with_token(secret).get(SERVERS).status_code == 401
    assert IdentityToken.objects.get(user=member.user).revoked_at is not None
    # Given back, the old token stays revoked.
    membership_set(project=member.project, user=member.user, role=Role.MEMBER)
    assert with_token(secret).get(SERVERS).status_code == 401

    reader_secret = token_for(reader)
    assert with_token(reader_secret).get(SERVERS).status_code == 200
    user_deactivate(user=reader.user)
    assert with_token(reader_secret).get(SERVERS).status_code == 401


def test_a_role_lowered_after_issue_is_lowered_for_the_token(member):
    secret = token_for(member)
    membership_set(project=member.project, user=member.user, role=Role.READER)
    # The lowered role revoked the token; a new one reads but may not write.
    assert with_token(secret).get(SERVERS).status_code == 401
    reader = with_token(token_for(member))
    assert reader.get(SERVERS).status_code == 200
    assert (
        reader.post(SERVERS, {"server": {"name": "x", "imageRef": "x", "flavorRef": "1"}}, format="json").status_code
        == 403
    )


def test_a_user_of_another_project_sees_nothing_of_the_first(member, stranger):
    client = with_token(token_for(stranger))
    projects = client.get(f"{V3}/projects").json()["projects"]
    assert [p["id"] for p in projects] == [stranger.project.pk]
    assert client.get(f"{V3}/projects/{member.project.pk}").status_code == 404
    assert client.get(f"{V3}/projects", {"name": member.project.name}).json()["projects"] == []
    assert [u["id"] for u in client.get(f"{V3}/users").json()["users"]] == [stranger.user.username]
    assert client.get(f"{V3}/users/{member.user.username}").status_code == 404
    assignments = client.get(f"{V3}/role_assignments", {"include_names": "1"}).json()["role_assignments"]
    assert [(a["user"]["id"], a["scope"]["project"]["id"]) for a in assignments] == [
        (stranger.user.username, stranger.project.pk)
    ]
    # The project in the compute API's URL must be the token's.
    assert client.get(f"/compute/v2.1/{member.project.pk}/servers").status_code == 400


def test_admins_look_names_up(admin, member):
    client = with_token(token_for(admin))
    (found,) = client.get(f"{V3}/projects", {"name": member.project.name, "domain_id": "default"}).json()["projects"]
    assert found["id"] == member.project.pk
    assert client.get(f"{V3}/projects/{member.project.pk}").json()["project"]["name"] == member.project.name
    (user,) = client.get(f"{V3}/users", {"name": member.user.username}).json()["users"]
    assert user["id"] == member.user.username and user["domain_id"] == "default"
    assert client.get(f"{V3}/domains", {"name": "Default"}).json()["domains"][0]["id"] == "default"
    assert client.get(f"{V3}/domains/default").status_code == 200
    assert client.get(f"{V3}/domains/other").status_code == 404
    assert [r["name"] for r in client.get(f"{V3}/roles").json()["roles"]] == ["reader", "member", "admin"]
    assert client.get(f"{V3}/roles", {"name": "member"}).json()["roles"][0]["id"] == "member"
    assignments = client.get(
        f"{V3}/role_assignments", {"scope.project.id": member.project.pk, "effective": "", "include_names": "true"}
    ).json()["role_assignments"]
    assert sorted(a["role"]["name"] for a in assignments) == ["member", "reader"]
    assert assignments[0]["user"]["name"] == member.user.username


def test_role_and_domain_writes_are_not_implemented_and_unknown_paths_not_found(admin):
    client = with_token(token_for(admin))
    created = client.post(f"{V3}/roles", {"role": {"name": "p"}}, format="json")
    assert created.status_code == 501
    assert created.json()["error"]["title"] == "Not Implemented"
    assert client.delete(f"{V3}/domains/default").status_code == 501
    assert client.get(f"{V3}/groups").status_code == 404
    assert APIClient().get(f"{V3}/projects").status_code == 401


def test_bad_token_requests_are_400_in_keystones_shape(member):
    for body in ({}, {"auth": []}, {"auth": {"identity": {"methods": "password"}}}, {"auth": {"identity": []}}):
        refused = issue(body, expect=400)
        assert refused.json()["error"]["code"] == 400
    assert issue({"auth": {"identity": {"methods": ["totp"], "totp": {}}}}, expect=401).json()["error"]["code"] == 401
    malformed = APIClient().post(f"{V3}/auth/tokens", "{", content_type="application/json")
    assert malformed.status_code == 400 and "error" in malformed.json()


def test_application_credentials(member):
    client = with_token(token_for(member))
    base = f"{V3}/users/{member.user.username}/application_credentials"
    created = client.post(
        base, {"application_credential": {"name": "ci", "roles": [{"name": "reader"}]}}, format="json"
    )
    assert created.status_code == 201, created.content
    credential = created.json()["application_credential"]
    assert credential["project_id"] == member.project.pk and credential["secret"]
    assert [r["name"] for r in credential["roles"]] == ["reader"]
    assert client.post(base, {"application_credential": {"name": "ci"}}, format="json").status_code == 409
    too_much = client.post(base, {"application_credential": {"name": "x", "roles": [{"name": "admin"}]}}, format="json")
    assert too_much.status_code == 403
    listed = client.get(base).json()["application_credentials"]
    assert [c["id"] for c in listed] == [credential["id"]] and "secret" not in listed[0]

    by_id = {"id": credential["id"], "secret": credential["secret"]}
    by_name = {
        "name": "ci",
        "user": {"name": member.user.username, "domain": {"id": "default"}},
        "secret": credential["secret"],
    }
    for payload in (by_id, by_name):
        response = issue(
            {"auth": {"identity": {"methods": ["application_credential"], "application_credential": payload}}}
        )
        token = response.json()["token"]
        assert token["project"]["id"] == member.project.pk
        assert [r["name"] for r in token["roles"]] == ["reader"]
        assert token["application_credential"] == {"id": credential["id"], "name": "ci", "restricted": True}
    app_client = with_token(response["X-Subject-Token"])
    assert app_client.get(SERVERS).status_code == 200
    # Capped at reader: it may not write.
    assert (
        app_client.post(
            SERVERS, {"server": {"name": "x", "imageRef": "x", "flavorRef": "1"}}, format="json"
        ).status_code
        == 403
    )
    wrong = {**by_id, "secret": "wrong"}
    issue({"auth": {"identity": {"methods": ["application_credential"], "application_credential": wrong}}}, expect=401)

    assert client.delete(f"{base}/{credential['id']}").status_code == 204
    assert app_client.get(SERVERS).status_code == 401
    issue({"auth": {"identity": {"methods": ["application_credential"], "application_credential": by_id}}}, expect=401)


def test_with_keystone_configured_there_is_no_built_in_identity(member, settings):
    settings.KEYSTONE = {**settings.KEYSTONE, "AUTH_URL": "http://127.0.0.1:9/v3"}
    assert APIClient().get(V3).status_code == 404
    assert issue(password_auth(member.user.username, project=member.project.name), expect=404).json()["error"]
