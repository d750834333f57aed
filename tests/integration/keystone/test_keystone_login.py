"""The portal's sign-in form against a real Keystone, with local users beside it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from portal.models import Membership, Project, Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sign_in(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def test_a_keystone_user_signs_in_with_every_project_and_role(db, keystone, keystone_settings):
    person = keystone.make_user(unique("carol"), "carol-pw", unique("proj"), "member")
    second = keystone.project(unique("proj"))
    keystone.grant(person["id"], second, "reader")
    third = keystone.project(unique("proj"))
    keystone.grant(person["id"], third, unique("odd-role"))  # means nothing here

    client = Client()
    response = sign_in(client, person["name"], person["password"])
    assert response.status_code == 302, response.content.decode()[:500]

    memberships = {m.project_id: m.role for m in Membership.objects.filter(user__username=person["id"])}
    assert memberships == {person["project_id"]: Role.MEMBER, second: Role.READER}
    assert Project.objects.filter(pk=third).exists()

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert person["name"] in page.content.decode()
    assert page.wsgi_request.user.username == person["id"]
    assert page.wsgi_request.user.first_name == person["name"]
    # The portal session ends with the Keystone token issued at sign-in (an hour here), not after two weeks.
    expiry = client.session.get_expiry_date()
    assert timezone.now() < expiry <= timezone.now() + timedelta(hours=1, minutes=1)


def test_a_grant_removed_in_keystone_is_gone_at_the_next_sign_in(db, keystone, keystone_settings):
    person = keystone.make_user(unique("dave"), "dave-pw", unique("proj"), "member")
    assert sign_in(Client(), person["name"], person["password"]).status_code == 302
    assert Membership.objects.filter(user__username=person["id"]).count() == 1
    keystone.revoke_grant(person["id"], person["project_id"], "member")
    assert sign_in(Client(), person["name"], person["password"]).status_code == 302
    assert not Membership.objects.filter(user__username=person["id"]).exists()


def test_a_wrong_password_is_refused(db, keystone, keystone_settings):
    person = keystone.make_user(unique("erin"), "erin-pw", unique("proj"), "member")
    response = sign_in(Client(), person["name"], "not-her-password")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert not Membership.objects.filter(user__username=person["id"]).exists()


def test_local_users_sign_in_beside_keystone(db, keystone_settings):
    membership = MembershipFactory(role=Role.MEMBER)
    client = Client()
    assert sign_in(client, membership.user.username, "secret").status_code == 302
    assert client.get("/", follow=True).wsgi_request.user == membership.user


def test_keystone_down_means_only_local_users_sign_in(db, keystone, settings):
    settings.KEYSTONE = keystone.settings(AUTH_URL="http://127.0.0.1:9/v3", TIMEOUT=2)
    membership = MembershipFactory(role=Role.MEMBER)
    response = sign_in(Client(), "somebody", "whatever")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert sign_in(Client(), membership.user.username, "secret").status_code == 302
