"""Where a console token is found in a websocket request.

noVNC connects to `ws://proxy/?token=<token>` or `ws://proxy/token/<token>` (the path form, for clients
that build the URL from a path alone); a `token` cookie is accepted as a fallback for clients that cannot
put it in the URL. Messages raised from here describe the problem, never the token.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

TOKEN_PARAMETER = "token"  # noqa: S105 - a parameter name

# Tokens are random URL-safe strings; anything else is refused before it reaches the consoleauth URL.
_WELL_FORMED_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
_MAX_QUERY_FIELDS = 32
PATH_PREFIX = "/token/"


class TokenError(ValueError):
    """The request carries no usable token. The message is safe to log."""


def is_well_formed_token(token: str) -> bool:
    return _WELL_FORMED_TOKEN.fullmatch(token) is not None


def token_from_request(path: str, cookie_headers: list[str]) -> str:
    """The token of a websocket request: the `token` query parameter, else the path, else the cookie."""
    parts = urlsplit(path)
    query = parts.query
    try:
        parameters = parse_qs(query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError:
        raise TokenError("too many query parameters") from None
    query_tokens = parameters.get(TOKEN_PARAMETER)
    if query_tokens is not None:
        return _single_well_formed(query_tokens, where="URL query")
    if parts.path.startswith(PATH_PREFIX):
        return _single_well_formed([parts.path[len(PATH_PREFIX) :]], where="URL path")
    cookie_tokens = token_cookies(cookie_headers)
    if cookie_tokens:
        return _single_well_formed(cookie_tokens, where="cookie")
    raise TokenError("no token in the URL query or in a cookie, nor in the URL path")


def token_cookies(cookie_headers: list[str]) -> list[str]:
    """Every `token` cookie value in the request's Cookie headers.

    A hand-rolled split rather than http.cookies: SimpleCookie drops every cookie of a header when one
    unrelated cookie is malformed, and a browser sends all cookies of the host, whatever their port.
    """
    values = []
    for header in cookie_headers:
        for pair in header.split(";"):
            name, separator, value = pair.partition("=")
            if separator and name.strip() == TOKEN_PARAMETER:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                values.append(value)
    return values


def _single_well_formed(candidates: list[str], *, where: str) -> str:
    if len(set(candidates)) > 1:
        raise TokenError(f"more than one token in the {where}")
    token = candidates[0]
    if not token:
        raise TokenError(f"empty token in the {where}")
    if not is_well_formed_token(token):
        raise TokenError(f"malformed token in the {where}")
    return token
