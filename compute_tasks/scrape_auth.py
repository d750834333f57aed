"""The rule every metrics endpoint of the cloud keeps: a scraper shows ``Authorization: Bearer <token>``
with the token the operator configured, compared in constant time. No token configured: no scraper gets in.
"""

from __future__ import annotations

import hashlib
import hmac


def bearer_token_matches(authorization: str | None, expected: str) -> bool:
    """Whether the ``Authorization`` header carries ``expected`` as a bearer token. Both sides are hashed
    first, so neither the comparison's time nor its length check tells anything about the token."""
    if not expected or not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    offered = hashlib.sha256(token.strip().encode()).digest()
    return hmac.compare_digest(offered, hashlib.sha256(expected.encode()).digest())
