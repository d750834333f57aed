"""HTTP Basic checks a password hash once, then trusts the verified credentials until they change."""

import pytest
from django.contrib.auth.hashers import check_password

from portal.auth import authentication
from portal.auth.authentication import VerifiedCredentials, verified_credentials
from tests.conftest import basic_auth

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def empty_cache():
    verified_credentials.clear()
    yield
    verified_credentials.clear()


def count_hash_checks(monkeypatch):
    calls = []

    def counting(password, encoded, *args, **kwargs):
        calls.append(1)
        return check_password(password, encoded, *args, **kwargs)

    monkeypatch.setattr("django.contrib.auth.base_user.check_password", counting)
    return calls


def test_second_request_skips_the_hash_check(member, monkeypatch):
    calls = count_hash_checks(monkeypatch)
    assert member.client.get("/compute/v2.1/flavors").status_code == 200
    assert member.client.get("/compute/v2.1/flavors").status_code == 200
    assert len(calls) == 1


def test_a_wrong_password_is_never_cached(member, monkeypatch):
    calls = count_hash_checks(monkeypatch)
    member.client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username, "wrong"))
    assert member.client.get("/compute/v2.1/flavors").status_code == 401
    assert member.client.get("/compute/v2.1/flavors").status_code == 401
    assert len(calls) == 2


def test_a_changed_password_or_deactivated_user_misses(member):
    assert member.client.get("/compute/v2.1/flavors").status_code == 200
    member.user.set_password("new-secret")
    member.user.save()
    assert member.client.get("/compute/v2.1/flavors").status_code == 401
    member.client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username, "new-secret"))
    assert member.client.get("/compute/v2.1/flavors").status_code == 200
    member.user.is_active = False
    member.user.save()
    assert member.client.get("/compute/v2.1/flavors").status_code == 401


def test_entries_are_bounded_and_expire(member, monkeypatch):
    cache = VerifiedCredentials(max_entries=2, ttl=60)
    for name in ("a", "b", "c"):
        cache.remember(VerifiedCredentials.key(name, "pw"), member.user)
    assert cache.user_for(VerifiedCredentials.key("a", "pw")) is None
    assert cache.user_for(VerifiedCredentials.key("c", "pw")) == member.user
    now = authentication.time.monotonic()
    monkeypatch.setattr(authentication.time, "monotonic", lambda: now + 61)
    assert cache.user_for(VerifiedCredentials.key("c", "pw")) is None
