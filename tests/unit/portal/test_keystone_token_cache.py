"""The validated-token cache (expiry, bound, LRU, threads) and the Keystone role mapping."""

from __future__ import annotations

import threading

import pytest

from portal.auth.keystone import TokenCache, portal_role, token_key

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_until_the_token_expires():
    clock = Clock()
    cache = TokenCache(max_size=10, max_ttl=300, clock=clock)
    cache.put("tok", "identity", expires_at=clock.now + 60)
    assert cache.get("tok") == "identity"
    clock.now += 59.9
    assert cache.get("tok") == "identity"
    clock.now += 0.2
    assert cache.get("tok") is None
    assert len(cache) == 0


def test_an_entry_never_outlives_the_ttl():
    clock = Clock()
    cache = TokenCache(max_size=10, max_ttl=300, clock=clock)
    cache.put("tok", "identity", expires_at=clock.now + 3600)
    clock.now += 299
    assert cache.get("tok") == "identity"
    clock.now += 2
    assert cache.get("tok") is None


def test_expired_tokens_and_a_zero_ttl_are_not_cached():
    clock = Clock()
    cache = TokenCache(max_size=10, max_ttl=300, clock=clock)
    cache.put("old", "identity", expires_at=clock.now - 1)
    assert cache.get("old") is None
    off = TokenCache(max_size=10, max_ttl=0, clock=clock)
    off.put("tok", "identity", expires_at=clock.now + 60)
    assert off.get("tok") is None


def test_the_size_is_bounded_least_recently_used_first():
    clock = Clock()
    cache = TokenCache(max_size=3, max_ttl=300, clock=clock)
    for name in ("a", "b", "c"):
        cache.put(name, name.upper(), expires_at=clock.now + 60)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("d", "D", expires_at=clock.now + 60)
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(n) for n in ("a", "c", "d")] == ["A", "C", "D"]


def test_keys_are_hashes_and_discard_forgets():
    cache = TokenCache(max_size=3, max_ttl=300)
    cache.put("secret-token", "X", expires_at=9e9)
    assert list(cache._entries) == [token_key("secret-token")]
    assert "secret-token" not in repr(cache._entries)
    cache.discard("secret-token")
    assert cache.get("secret-token") is None


def test_concurrent_use_keeps_the_bound_and_loses_nothing_recent():
    cache = TokenCache(max_size=100, max_ttl=300)
    errors = []

    def worker(n: int):
        try:
            for i in range(500):
                cache.put(f"t{n}-{i}", i, expires_at=9e9)
                assert cache.get(f"t{n}-{i}") in (i, None)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 100


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ({"admin", "member", "reader"}, "admin"),
        ({"member", "reader"}, "member"),
        ({"_member_"}, "member"),
        ({"manager"}, "member"),
        ({"reader"}, "reader"),
        ({"heat_stack_owner"}, None),
        (set(), None),
    ],
)
def test_keystone_roles_map_onto_portal_roles(roles, expected):
    assert portal_role(frozenset(roles)) == expected
