"""Password guessing against HTTP Basic and the portal's sign-in form: past the limits, attempts are refused
with 429 before any password hash is computed, whoever the name and whatever the password."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from portal.auth.authentication import verified_credentials
from portal.auth.throttle import client_address
from portal.models import FailedSignIn, Role
from portal.services.sign_in_throttle import failed_sign_ins_purge
from tests.conftest import basic_auth
from tests.factories import MembershipFactory

pytestmark = pytest.mark.integration

PER_USER = 3
PER_ADDRESS = 5
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
SERVERS = "/compute/v2.1/servers"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.AUTH_THROTTLE = {"WINDOW": 300, "MAX_FAILURES_PER_USER": PER_USER, "MAX_FAILURES_PER_ADDRESS": PER_ADDRESS}
    verified_credentials.clear()
    yield
    verified_credentials.clear()


@pytest.fixture
def hashes(monkeypatch):
    """Every password hash computed from here on. The tests' hasher computes each one in ``encode``: the
    check of a stored password (``verify`` calls it) and the dummy hash ModelBackend computes for a user
    name that does not exist, so that both take the same time."""
    calls: list[str] = []
    lock = threading.Lock()
    original = MD5PasswordHasher.encode

    def counting(self, password, salt):
        with lock:
            calls.append(salt)
        return original(self, password, salt)

    monkeypatch.setattr(MD5PasswordHasher, "encode", counting)
    return calls


@pytest.fixture
def victim(db):
    return MembershipFactory(role=Role.MEMBER).user


def basic(path: str, username: str, password: str, address: str = ATTACKER, client: APIClient | None = None):
    client = client or APIClient()
    return client.get(path, HTTP_AUTHORIZATION=basic_auth(username, password), REMOTE_ADDR=address)


def assert_over_limit(response):
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"overLimit"}
    assert body["overLimit"]["code"] == 429
    assert "Too many failed sign-ins" in body["overLimit"]["message"]
    assert 1 <= int(response["Retry-After"]) <= 300
    assert body["overLimit"]["retryAfter"] == response["Retry-After"]


# --- HTTP Basic ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SERVERS, "/image/v2/images"])
def test_wrong_passwords_then_429_without_hashing(victim, hashes, path):
    for _ in range(PER_USER):
        assert basic(path, victim.username, "guess").status_code == 401
    assert len(hashes) == PER_USER

    refused = basic(path, victim.username, "another guess")
    right_but_refused = basic(path, victim.username, "secret")

    assert_over_limit(refused)
    assert_over_limit(right_but_refused)
    assert len(hashes) == PER_USER  # neither refusal computed a hash


def test_the_cache_of_verified_credentials_is_no_way_around_the_limit(victim, hashes):
    """A credential checked a moment ago is in this process's cache; were it looked up before the limit,
    a right guess would answer 200 while wrong ones answer 429."""
    assert basic(SERVERS, victim.username, "secret", address=ELSEWHERE).status_code == 200
    for _ in range(PER_USER):
        basic(SERVERS, victim.username, "guess")

    assert_over_limit(basic(SERVERS, victim.username, "secret"))


def test_the_address_limit_holds_across_user_names(victim, hashes):
    names = ["root", "admin", victim.username, "nobody", "operator"]
    for name in names[:PER_ADDRESS]:
        assert basic(SERVERS, name, "guess").status_code == 401
    assert len(hashes) == PER_ADDRESS

    assert_over_limit(basic(SERVERS, "yet-another-name", "guess"))
    assert_over_limit(basic(SERVERS, victim.username, "secret"))
    assert len(hashes) == PER_ADDRESS
    # Another client is not held back by that address, and the user name has failed only once.
    assert basic(SERVERS, victim.username, "secret", address=ELSEWHERE).status_code == 200


def test_a_success_resets_no_counter(victim, hashes):
    """Signing in with one's own account buys no more guesses, neither from the address nor at a name."""
    attacker = MembershipFactory(role=Role.MEMBER).user
    for _ in range(PER_USER - 1):
        assert basic(SERVERS, victim.username, "guess").status_code == 401
    assert basic(SERVERS, victim.username, "secret", address=ELSEWHERE).status_code == 200  # the victim
    assert basic(SERVERS, attacker.username, "secret").status_code == 200  # the attacker's own account

    assert basic(SERVERS, victim.username, "guess").status_code == 401
    assert_over_limit(basic(SERVERS, victim.username, "guess"))


def test_an_ipv6_client_is_counted_by_its_64(victim, hashes):
    for host in range(1, PER_ADDRESS + 1):
        basic(SERVERS, f"name{host}", "guess", address=f"2001:db8:1:2::{host:x}")

    assert_over_limit(basic(SERVERS, victim.username, "secret", address="2001:db8:1:2:ffff::1"))
    assert basic(SERVERS, victim.username, "secret", address="2001:db8:1:3::1").status_code == 200


def test_failures_older_than_the_window_no_longer_count_and_are_purged(victim):
    long_ago = timezone.now() - timedelta(seconds=301)
    FailedSignIn.objects.bulk_create(
        FailedSignIn(username=victim.username, address=ATTACKER, at=long_ago) for _ in range(PER_ADDRESS)
    )

    assert basic(SERVERS, victim.username, "secret").status_code == 200
    assert failed_sign_ins_purge() == PER_ADDRESS
    assert not FailedSignIn.objects.exists()


def test_parallel_guesses_are_held_to_the_limit_plus_those_in_flight(transactional_db, victim, hashes):
    """Threads of one API process, each its own database connection: once the failures are recorded,
    every further guess is refused without a hash, however many arrive at once."""
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def guess():
        try:
            barrier.wait(timeout=10)
            statuses.append(basic(SERVERS, victim.username, "guess").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(set(statuses)) in ([401], [401, 429])
    assert len(hashes) == statuses.count(401)
    before = len(hashes)
    assert_over_limit(basic(SERVERS, victim.username, "secret"))
    assert len(hashes) == before


# --- the portal's sign-in form ---------------------------------------------------------------------------


def sign_in(username: str, password: str, address: str = ATTACKER):
    return Client().post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_portal_form_refuses_with_a_form_error_and_no_hash(victim, hashes):
    for _ in range(PER_USER):
        page = sign_in(victim.username, "guess")
        assert page.status_code == 200
        assert "Please enter a correct username and password" in page.content.decode()
    assert len(hashes) == PER_USER

    refused = sign_in(victim.username, "secret")

    assert refused.status_code == 429
    assert "Too many failed sign-ins. Try again in 5 minutes." in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session
    assert len(hashes) == PER_USER


def test_the_portal_and_basic_share_the_counts(victim, hashes):
    for _ in range(PER_USER):
        sign_in(victim.username, "guess")

    assert_over_limit(basic(SERVERS, victim.username, "secret"))
    assert sign_in(victim.username, "secret", address=ELSEWHERE).status_code == 429
    assert len(hashes) == PER_USER


def test_the_admin_sign_in_is_behind_the_same_limit(victim, hashes):
    victim.is_staff = True
    victim.save(update_fields=["is_staff"])
    hashes.clear()
    for _ in range(PER_USER):
        Client().post("/admin/login/", {"username": victim.username, "password": "guess"}, REMOTE_ADDR=ATTACKER)
    assert len(hashes) == PER_USER

    refused = Client().post("/admin/login/", {"username": victim.username, "password": "secret"}, REMOTE_ADDR=ATTACKER)

    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session
    assert len(hashes) == PER_USER


# --- the address ---------------------------------------------------------------------------------------


class _Request:
    def __init__(self, address: str | None):
        self.META = {} if address is None else {"REMOTE_ADDR": address}


@pytest.mark.parametrize(
    ("remote_addr", "counted_as"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("", "unknown"),
        (None, "unknown"),
        ("unix:/run/gunicorn.sock", "unix:/run/gunicorn.sock"),
    ],
)
def test_client_address(remote_addr, counted_as):
    assert client_address(_Request(remote_addr)) == counted_as
