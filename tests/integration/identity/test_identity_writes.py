"""The built-in identity API's writes against the real database: projects, users and role grants made,
changed and deleted by a cloud admin; refusals for everyone else; bad bodies; what a delete keeps; and the
tokens a delete or a removed grant revokes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from portal.models import (
    IdentityToken,
    Image,
    Membership,
    Project,
    Role,
    SecurityGroup,
    SecurityGroupRule,
    UserIdentity,
    secret_hash,
)
from portal.services.identity_tokens import recent_principals
from tests.factories import ImageFactory, InstanceFactory, ProjectFactory

from .test_identity_api import SERVERS, V3, issue, password_auth, token_for, with_token

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    recent_principals.clear()
    yield
    cache.clear()
    recent_principals.clear()


@pytest.fixture
def cloud_admin(admin) -> APIClient:
    return with_token(token_for(admin))


def make_project(client, name="p1", **fields):
    response = client.post(f"{V3}/projects", {"project": {"name": name, **fields}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["project"]


def make_user(client, name="u1", password="a-long-password", **fields):
    response = client.post(f"{V3}/users", {"user": {"name": name, "password": password, **fields}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["user"]


def grant(client, project_id, user_id, role="member", method="put"):
    return getattr(client, method)(f"{V3}/projects/{project_id}/users/{user_id}/roles/{role}")


def test_an_admin_creates_a_project_a_user_and_a_grant_and_the_user_signs_in(cloud_admin):
    project = make_project(cloud_admin, "team-a", description="Team A", domain_id="default")
    assert project["name"] == "team-a" and project["description"] == "Team A" and project["enabled"] is True
    assert project["domain_id"] == "default" and len(project["id"]) == 32
    assert cloud_admin.get(f"{V3}/projects/{project['id']}").json()["project"]["name"] == "team-a"

    user = make_user(
        cloud_admin, "alice", email="alice@example.org", description="Alice", default_project_id=project["id"]
    )
    assert user["id"] == "alice" and user["enabled"] is True and user["domain_id"] == "default"
    assert user["email"] == "alice@example.org" and user["default_project_id"] == project["id"]
    assert "password" not in user
    stored = User.objects.get(username="alice")
    assert (
        stored.password.startswith(("pbkdf2_", "md5$", "argon2", "bcrypt")) and "a-long-password" not in stored.password
    )
    assert stored.check_password("a-long-password")

    assert grant(cloud_admin, project["id"], "alice", method="head").status_code == 404
    assert grant(cloud_admin, project["id"], "alice").status_code == 204
    assert grant(cloud_admin, project["id"], "alice", method="head").status_code == 204
    assert grant(cloud_admin, project["id"], "alice", method="get").status_code == 204
    roles = cloud_admin.get(f"{V3}/projects/{project['id']}/users/alice/roles").json()["roles"]
    assert [r["id"] for r in roles] == ["member"]
    assert Membership.objects.get(user=stored).role == Role.MEMBER

    token = issue(password_auth("alice", "a-long-password", project="team-a"))
    assert [r["name"] for r in token.json()["token"]["roles"]] == ["member", "reader"]
    assert with_token(token["X-Subject-Token"]).get(SERVERS).status_code == 200


def test_a_user_made_for_a_project_has_per_user_quotas_there(cloud_admin, admin, stranger):
    project = make_project(cloud_admin)
    # Tempest's credential client names the user's project ``project_id``: it is their default project.
    user = make_user(cloud_admin, "quota-user", project_id=project["id"], email="q@example.org")
    assert user["default_project_id"] == project["id"]
    quotas = f"/compute/v2.1/os-quota-sets/{project['id']}"
    changed = admin.client.put(
        f"{quotas}?user_id=quota-user", {"quota_set": {"ram": 2048}}, format="json", HTTP_OPENSTACK_API_VERSION="2.57"
    )
    assert changed.status_code == 200, changed.content
    shown = admin.client.get(f"{quotas}?user_id=quota-user", HTTP_OPENSTACK_API_VERSION="2.57")
    assert shown.json()["quota_set"]["ram"] == 2048
    # A user of neither kind is still no user of the project.
    other = admin.client.get(f"{quotas}?user_id={stranger.user.username}", HTTP_OPENSTACK_API_VERSION="2.57")
    assert other.status_code == 400


def test_grants_follow_the_implied_roles(cloud_admin):
    project = make_project(cloud_admin)
    make_user(cloud_admin)
    # Tempest gives its admin "admin" and then "member": the admin role stays.
    assert grant(cloud_admin, project["id"], "u1", "admin").status_code == 204
    assert grant(cloud_admin, project["id"], "u1", "member").status_code == 204
    assert Membership.objects.get(user__username="u1").role == Role.ADMIN
    # A weaker role is only implied: it is not the assignment, and cannot be revoked on its own.
    assert grant(cloud_admin, project["id"], "u1", "member", method="head").status_code == 404
    assert grant(cloud_admin, project["id"], "u1", "member", method="delete").status_code == 404
    # A stronger one raises the membership.
    assert grant(cloud_admin, project["id"], "u1", "reader", method="delete").status_code == 404
    assert grant(cloud_admin, project["id"], "u1", "admin", method="delete").status_code == 204
    assert not Membership.objects.filter(user__username="u1").exists()
    assert grant(cloud_admin, project["id"], "u1", "reader").status_code == 204
    assert grant(cloud_admin, project["id"], "u1", "member").status_code == 204
    assert Membership.objects.get(user__username="u1").role == Role.MEMBER
    # Unknown role, user or project
    assert grant(cloud_admin, project["id"], "u1", "manager").status_code == 404
    assert grant(cloud_admin, project["id"], "nobody").status_code == 404
    missing = grant(cloud_admin, "0" * 32, "u1")
    assert missing.status_code == 404 and missing.json()["error"]["title"] == "Not Found"


def test_project_updates_and_duplicates(cloud_admin, member):
    project = make_project(cloud_admin, "p1")
    duplicate = cloud_admin.post(f"{V3}/projects", {"project": {"name": "p1"}}, format="json")
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == {
        "code": 409,
        "title": "Conflict",
        "message": "Duplicate entry found with name p1 at domain ID default.",
    }
    clash = cloud_admin.patch(
        f"{V3}/projects/{project['id']}", {"project": {"name": member.project.name}}, format="json"
    )
    assert clash.status_code == 409

    changed = cloud_admin.patch(
        f"{V3}/projects/{project['id']}", {"project": {"name": "p2", "description": "new"}}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["project"]["name"] == "p2" and changed.json()["project"]["description"] == "new"
    assert Project.objects.get(pk=project["id"]).name == "p2"


def test_disabling_a_project_revokes_its_tokens(cloud_admin, member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    response = cloud_admin.patch(f"{V3}/projects/{member.project.pk}", {"project": {"enabled": False}}, format="json")
    assert response.status_code == 200 and response.json()["project"]["enabled"] is False
    assert with_token(secret).get(SERVERS).status_code == 401


def test_user_updates_and_duplicates(cloud_admin, member):
    make_user(cloud_admin, "bob")
    duplicate = cloud_admin.post(f"{V3}/users", {"user": {"name": "bob", "password": "x"}}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == 409
    assert cloud_admin.post(f"{V3}/users", {"user": {"name": member.user.username}}, format="json").status_code == 409

    changed = cloud_admin.patch(
        f"{V3}/users/bob",
        {"user": {"email": "bob@example.org", "description": "Bob", "password": "new-one"}},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["user"]["email"] == "bob@example.org" and changed.json()["user"]["description"] == "Bob"
    assert User.objects.get(username="bob").check_password("new-one")
    renamed = cloud_admin.patch(f"{V3}/users/bob", {"user": {"name": "robert"}}, format="json")
    assert renamed.status_code == 400
    # No password: nobody can sign in as the user.
    make_user(cloud_admin, "nopass", password=None)
    assert not User.objects.get(username="nopass").has_usable_password()


def test_disabling_a_user_or_changing_their_password_revokes_their_tokens(cloud_admin, member, reader):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    response = cloud_admin.patch(f"{V3}/users/{member.user.username}", {"user": {"enabled": False}}, format="json")
    assert response.status_code == 200 and response.json()["user"]["enabled"] is False
    assert with_token(secret).get(SERVERS).status_code == 401
    issue(password_auth(member.user.username, project=member.project.name), expect=401)
    enabled = cloud_admin.patch(f"{V3}/users/{member.user.username}", {"user": {"enabled": True}}, format="json")
    assert enabled.json()["user"]["enabled"] is True
    assert with_token(token_for(member)).get(SERVERS).status_code == 200

    reader_secret = token_for(reader)
    assert with_token(reader_secret).get(SERVERS).status_code == 200
    changed = cloud_admin.patch(f"{V3}/users/{reader.user.username}", {"user": {"password": "other"}}, format="json")
    assert changed.status_code == 200
    assert with_token(reader_secret).get(SERVERS).status_code == 401


def cached(secret: str):
    """What the shared token cache holds for ``secret``: another API process believes it until it is gone."""
    return cache.get(f"identity-token:{secret_hash(secret)}")


def test_deleting_a_user_revokes_their_tokens_at_once(cloud_admin, member):
    secret = token_for(member)
    client = with_token(secret)
    # The compute API now keeps the token's user, project and role, and the cache the token's record.
    assert client.get(SERVERS).status_code == 200
    assert cached(secret) is not None
    assert cloud_admin.delete(f"{V3}/users/{member.user.username}").status_code == 204
    assert cached(secret) is None  # no other process's cache believes it either
    assert client.get(SERVERS).status_code == 401
    assert client.get(f"{V3}/auth/projects").status_code == 401
    assert not User.objects.filter(username=member.user.username).exists()  # nothing else referred to them
    assert cloud_admin.get(f"{V3}/users/{member.user.username}").status_code == 404
    assert cloud_admin.delete(f"{V3}/users/{member.user.username}").status_code == 404


def test_deleting_a_user_with_history_revokes_their_tokens(cloud_admin, member):
    InstanceFactory(project=member.project, user=member.user, vm_state="deleted")
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    assert cloud_admin.delete(f"{V3}/users/{member.user.username}").status_code == 204
    assert cached(secret) is None
    assert IdentityToken.objects.get(token_hash=secret_hash(secret)).revoked_at is not None
    assert with_token(secret).get(SERVERS).status_code == 401


def test_removing_a_grant_revokes_the_users_tokens_for_that_project(cloud_admin, member):
    secret = token_for(member)
    client = with_token(secret)
    assert client.get(SERVERS).status_code == 200
    assert cached(secret) is not None
    removed = grant(cloud_admin, member.project.pk, member.user.username, "member", method="delete")
    assert removed.status_code == 204
    assert cached(secret) is None
    assert client.get(SERVERS).status_code == 401
    assert grant(cloud_admin, member.project.pk, member.user.username, "member", method="head").status_code == 404
    # Granted again, the old token stays revoked; a new one works.
    assert grant(cloud_admin, member.project.pk, member.user.username, "member").status_code == 204
    assert client.get(SERVERS).status_code == 401
    assert with_token(token_for(member)).get(SERVERS).status_code == 200


def test_a_user_with_history_is_kept_inactive_and_hidden(cloud_admin, member):
    server = InstanceFactory(project=member.project, user=member.user, vm_state="deleted")
    assert cloud_admin.delete(f"{V3}/users/{member.user.username}").status_code == 204
    kept = User.objects.get(pk=member.user.pk)
    assert not kept.is_active and not kept.has_usable_password()
    assert UserIdentity.objects.get(user=kept).deleted_at is not None
    assert not Membership.objects.filter(user=kept).exists()
    server.refresh_from_db()
    assert server.user_id == kept.pk  # the history still names them
    assert cloud_admin.get(f"{V3}/users/{member.user.username}").status_code == 404
    assert member.user.username not in [u["id"] for u in cloud_admin.get(f"{V3}/users").json()["users"]]
    issue(password_auth(member.user.username, project=member.project.name), expect=401)
    # The name stays taken: it is the id the history shows.
    again = cloud_admin.post(f"{V3}/users", {"user": {"name": member.user.username}}, format="json")
    assert again.status_code == 409


def test_a_project_with_servers_is_not_deleted(cloud_admin, member):
    InstanceFactory(project=member.project, user=member.user)
    refused = cloud_admin.delete(f"{V3}/projects/{member.project.pk}")
    assert refused.status_code == 409
    assert "servers (1)" in refused.json()["error"]["message"]
    assert Project.objects.get(pk=member.project.pk).deleted_at is None
    assert Membership.objects.filter(project=member.project).exists()  # nothing was touched


def test_deleting_a_project_revokes_its_tokens_and_keeps_what_history_needs(cloud_admin, member):
    secret = token_for(member)
    assert with_token(secret).get(SERVERS).status_code == 200
    server = InstanceFactory(project=member.project, user=member.user, vm_state="deleted")
    assert cloud_admin.delete(f"{V3}/projects/{member.project.pk}").status_code == 204
    assert with_token(secret).get(SERVERS).status_code == 401
    kept = Project.objects.get(pk=member.project.pk)
    assert kept.deleted_at is not None and not kept.enabled
    server.refresh_from_db()
    assert server.project_id == kept.pk
    assert not Membership.objects.filter(project=kept).exists()
    assert cloud_admin.get(f"{V3}/projects/{kept.pk}").status_code == 404
    assert kept.pk not in [p["id"] for p in cloud_admin.get(f"{V3}/projects").json()["projects"]]
    assert cloud_admin.delete(f"{V3}/projects/{kept.pk}").status_code == 404
    assert cloud_admin.post(f"{V3}/projects", {"project": {"name": kept.name}}, format="json").status_code == 409


def test_an_unused_project_is_deleted_with_its_settings(cloud_admin):
    project = make_project(cloud_admin)
    SecurityGroup.objects.create(project_id=project["id"], name="default", is_default=True)
    make_user(cloud_admin)
    grant(cloud_admin, project["id"], "u1")
    assert cloud_admin.delete(f"{V3}/projects/{project['id']}").status_code == 204
    assert not Project.objects.filter(pk=project["id"]).exists()
    assert not SecurityGroup.objects.filter(project_id=project["id"]).exists()
    assert User.objects.filter(username="u1").exists()  # the user stays, without the membership
    assert not Membership.objects.filter(user__username="u1").exists()
    # its name is free again
    make_project(cloud_admin, "p1")


def test_a_project_whose_deleted_images_name_it_is_kept(cloud_admin):
    project = make_project(cloud_admin)
    live = ImageFactory(owner_id=project["id"])
    refused = cloud_admin.delete(f"{V3}/projects/{project['id']}")
    assert refused.status_code == 409 and "images (1)" in refused.json()["error"]["message"]
    Image.objects.filter(pk=live.pk).update(status=Image.Status.DELETED)
    assert cloud_admin.delete(f"{V3}/projects/{project['id']}").status_code == 204
    assert Project.objects.get(pk=project["id"]).deleted_at is not None
    assert Image.objects.get(pk=live.pk).owner_id == project["id"]  # whose it was stays known


def test_a_project_with_other_security_groups_is_not_deleted(cloud_admin):
    project = make_project(cloud_admin)
    SecurityGroup.objects.create(project_id=project["id"], name="web")
    refused = cloud_admin.delete(f"{V3}/projects/{project['id']}")
    assert refused.status_code == 409 and "security groups" in refused.json()["error"]["message"]


def test_a_project_whose_default_group_another_project_names_is_not_deleted(cloud_admin, member):
    project = make_project(cloud_admin)
    default = SecurityGroup.objects.create(project_id=project["id"], name="default", is_default=True)
    theirs = SecurityGroup.objects.create(project=member.project, name="web")
    rule = SecurityGroupRule.objects.create(
        security_group=theirs, project=member.project, direction="ingress", remote_group=default
    )
    refused = cloud_admin.delete(f"{V3}/projects/{project['id']}")
    assert refused.status_code == 409 and "rules of other projects" in refused.json()["error"]["message"]
    assert SecurityGroupRule.objects.filter(pk=rule.pk).exists()


def test_only_cloud_admins_write(member, stranger, reader, admin):
    project = ProjectFactory()
    for caller in (member, reader, stranger):
        client = with_token(token_for(caller))
        attempts = [
            client.post(f"{V3}/projects", {"project": {"name": "mine"}}, format="json"),
            client.patch(f"{V3}/projects/{caller.project.pk}", {"project": {"name": "mine"}}, format="json"),
            client.delete(f"{V3}/projects/{project.pk}"),
            client.delete(f"{V3}/projects/{caller.project.pk}"),
            client.post(f"{V3}/users", {"user": {"name": "mine", "password": "x"}}, format="json"),
            client.patch(f"{V3}/users/{caller.user.username}", {"user": {"enabled": False}}, format="json"),
            client.patch(f"{V3}/users/{admin.user.username}", {"user": {"password": "taken-over"}}, format="json"),
            client.delete(f"{V3}/users/{admin.user.username}"),
            grant(client, caller.project.pk, caller.user.username, "admin"),
            grant(client, stranger.project.pk, caller.user.username, "member"),
            grant(client, caller.project.pk, caller.user.username, "member", method="delete"),
            grant(client, caller.project.pk, caller.user.username, "member", method="head"),
        ]
        assert [a.status_code for a in attempts] == [403] * len(attempts), [a.content for a in attempts]
        assert attempts[0].json()["error"] == {
            "code": 403,
            "title": "Forbidden",
            "message": "You are not authorized to perform the requested action: identity:create_project.",
        }
    assert not Project.objects.filter(name="mine").exists() and not User.objects.filter(username="mine").exists()
    assert Membership.objects.get(user=member.user).role == Role.MEMBER
    assert Membership.objects.get(user=stranger.user).project == stranger.project
    assert User.objects.get(pk=admin.user.pk).check_password("secret")
    # An admin's unscoped token is no admin's token.
    unscoped = with_token(issue(password_auth(admin.user.username))["X-Subject-Token"])
    assert unscoped.post(f"{V3}/projects", {"project": {"name": "mine"}}, format="json").status_code == 403
    # Nobody signed in: 401.
    anonymous = APIClient()
    assert anonymous.post(f"{V3}/projects", {"project": {"name": "mine"}}, format="json").status_code == 401
    assert anonymous.put(f"{V3}/projects/{project.pk}/users/{member.user.username}/roles/admin").status_code == 401
    assert anonymous.delete(f"{V3}/users/{member.user.username}").status_code == 401


def test_an_admin_cannot_delete_or_disable_themselves_or_their_tokens_project(cloud_admin, admin):
    assert cloud_admin.delete(f"{V3}/users/{admin.user.username}").status_code == 403
    assert (
        cloud_admin.patch(f"{V3}/users/{admin.user.username}", {"user": {"enabled": False}}, format="json").status_code
        == 403
    )
    assert cloud_admin.delete(f"{V3}/projects/{admin.project.pk}").status_code == 403


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("projects", {}),
        ("projects", {"project": []}),
        ("projects", {"project": {}}),
        ("projects", {"project": {"name": ""}}),
        ("projects", {"project": {"name": 12}}),
        ("projects", {"project": {"name": "x" * 65}}),
        ("projects", {"project": {"name": " padded"}}),
        ("projects", {"project": {"name": "a/b"}}),
        ("projects", {"project": {"name": "ok", "enabled": "yes"}}),
        ("projects", {"project": {"name": "ok", "description": 5}}),
        ("projects", {"project": {"name": "ok", "domain_id": "other"}}),
        ("projects", {"project": {"name": "ok", "domain_id": 3}}),
        ("projects", {"project": {"name": "ok", "is_domain": True}}),
        ("projects", {"project": {"name": "ok", "parent_id": "abc"}}),
        ("projects", {"project": {"name": "nul\x00"}}),
        ("users", {"user": "alice"}),
        ("users", {"user": {"password": "x"}}),
        ("users", {"user": {"name": "has space"}}),
        ("users", {"user": {"name": "x" * 151}}),
        ("users", {"user": {"name": "ok", "password": 5}}),
        ("users", {"user": {"name": "ok", "password": ""}}),
        ("users", {"user": {"name": "ok", "password": "a\x00b"}}),
        ("users", {"user": {"name": "ok", "enabled": 1}}),
        ("users", {"user": {"name": "ok", "email": "not an address"}}),
        ("users", {"user": {"name": "ok", "default_project_id": "0" * 32}}),
        ("users", {"user": {"name": "ok", "default_project_id": 7}}),
        ("users", {"user": {"name": "ok", "domain_id": "elsewhere"}}),
    ],
)
def test_bad_bodies_are_400_in_keystones_shape(cloud_admin, path, body):
    response = cloud_admin.post(f"{V3}/{path}", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == 400 and error["title"] == "Bad Request" and error["message"]
    assert not Project.objects.filter(name="ok").exists() and not User.objects.filter(username="ok").exists()


def test_bad_updates_are_400(cloud_admin, member):
    for body in (
        {"project": {"enabled": "no"}},
        {"project": {"name": ""}},
        {"project": {"parent_id": "x"}},
        {},
        "{",
    ):
        response = cloud_admin.patch(f"{V3}/projects/{member.project.pk}", body, format="json")
        assert response.status_code == 400, (body, response.content)
    for body in ({"user": {"enabled": None}}, {"user": {"password": 3}}, {"user": []}):
        response = cloud_admin.patch(f"{V3}/users/{member.user.username}", body, format="json")
        assert response.status_code == 400, (body, response.content)
    malformed = cloud_admin.generic("POST", f"{V3}/projects", "{", content_type="application/json")
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == 400
    assert cloud_admin.patch(f"{V3}/projects/{'0' * 32}", {"project": {"name": "x"}}, format="json").status_code == 404
    assert cloud_admin.patch(f"{V3}/users/nobody", {"user": {"enabled": True}}, format="json").status_code == 404


def test_domains_and_roles_stay_fixed(cloud_admin):
    assert cloud_admin.post(f"{V3}/roles", {"role": {"name": "manager"}}, format="json").status_code == 501
    assert cloud_admin.post(f"{V3}/domains", {"domain": {"name": "d"}}, format="json").status_code == 501
    assert cloud_admin.put(f"{V3}/projects/{'0' * 32}", {}, format="json").status_code == 501


def test_the_user_list_costs_the_same_queries_for_more_users(cloud_admin):
    def listing_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert cloud_admin.get(f"{V3}/users").status_code == 200
        return len(queries.captured_queries)

    project = make_project(cloud_admin)
    make_user(cloud_admin, "first", description="d", default_project_id=project["id"])
    before = listing_queries()
    for n in range(4):
        make_user(cloud_admin, f"more-{n}", description="d", email=f"m{n}@example.org")
    assert listing_queries() == before
