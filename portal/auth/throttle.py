"""Sign-ins behind the throttle on password guessing (``portal/services/sign_in_throttle.py``), for both
ways a password arrives: HTTP Basic on the APIs and the portal's sign-in form."""

from __future__ import annotations

import ipaddress

from django.contrib.auth import authenticate

from portal.services.sign_in_throttle import SignInThrottled, sign_in_failure_record, sign_in_throttle_check

__all__ = ["SignIn", "SignInThrottled", "client_address"]

# An IPv6 client usually holds a whole /64: counting its addresses one by one would give it 2**64 budgets.
_IPV6_PREFIX = 64


def client_address(request) -> str:
    """The address failures are counted against: the peer's, as the server saw it.

    ``X-Forwarded-For`` is not read: any client can write it. Behind a reverse proxy every client has the
    proxy's address, so the per-address limit then bounds them all together (docs/operator.md).
    """
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{_IPV6_PREFIX}", strict=False))
    return str(address)


class SignIn:
    """One sign-in attempt by user name and password, from the client of ``request``.

    Creating it raises :class:`SignInThrottled` when this user name or this client has failed too often
    lately; nothing about the password may be looked at before that (not even a cache of verified
    credentials, whose hit would tell a guesser the password is right).
    """

    def __init__(self, request, *, username: str):
        self.request = request
        self.username = username
        self.address = client_address(request)
        sign_in_throttle_check(username=username, address=self.address)

    def authenticate(self, password: str):
        """Django's ``authenticate`` (local users, then Keystone): the user, or None and one more failure."""
        user = authenticate(self.request, username=self.username, password=password)
        if user is None:
            sign_in_failure_record(username=self.username, address=self.address)
        return user
