"""Console sessions as the console proxy reports them: opened, still open, closed.

Every call carries the shared secret. The token travels in the request body, never in a URL, so no
access log can hold it.

- ``POST sessions`` ``{"token", "client", "max_sessions"}``: 201 ``{"session_id", "instance_uuid"}``;
  404 unknown or expired token; 409 the token has ``max_sessions`` open sessions already.
- ``POST sessions/<id>/check``: 200 ``{"close": false}`` or ``{"close": true, "reason": "..."}``.
- ``POST sessions/<id>/close`` ``{"reason"}``: 200 ``{"closed_at"}`` (idempotent), 404 unknown session.
"""

from __future__ import annotations

import hmac
import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portal.services.console_sessions import (
    SessionRefused,
    console_session_check,
    console_session_close,
    console_session_open,
)

from .consoleauth import SECRET_HEADER

MAX_SESSIONS_LIMIT = 100
_MAX_BODY = 4096


def _forbidden(request: HttpRequest) -> JsonResponse | None:
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), settings.CONSOLE["AUTH_SECRET"].encode()):
        return JsonResponse({"error": "forbidden"}, status=403)
    return None


def _body(request: HttpRequest) -> dict | None:
    if len(request.body) > _MAX_BODY:
        return None
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _bad(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


@csrf_exempt
@require_POST
def session_open(request: HttpRequest) -> JsonResponse:
    refusal = _forbidden(request)
    if refusal is not None:
        return refusal
    body = _body(request)
    if body is None:
        return _bad("the body must be a JSON object")
    token, client, max_sessions = body.get("token"), body.get("client", ""), body.get("max_sessions", 1)
    if not isinstance(token, str) or not isinstance(client, str):
        return _bad("token and client must be strings")
    if isinstance(max_sessions, bool) or not isinstance(max_sessions, int):
        return _bad("max_sessions must be an integer")
    if not 1 <= max_sessions <= MAX_SESSIONS_LIMIT:
        return _bad(f"max_sessions must be from 1 to {MAX_SESSIONS_LIMIT}")
    try:
        session = console_session_open(token=token, client=client, max_sessions=max_sessions)
    except SessionRefused as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse({"session_id": session.pk, "instance_uuid": str(session.instance.uuid)}, status=201)


@csrf_exempt
@require_POST
def session_check(request: HttpRequest, session_id: int) -> JsonResponse:
    refusal = _forbidden(request)
    if refusal is not None:
        return refusal
    reason = console_session_check(session_id=session_id)
    if reason is None:
        return JsonResponse({"close": False})
    return JsonResponse({"close": True, "reason": reason})


@csrf_exempt
@require_POST
def session_close(request: HttpRequest, session_id: int) -> JsonResponse:
    refusal = _forbidden(request)
    if refusal is not None:
        return refusal
    body = _body(request)
    if body is None or not isinstance(body.get("reason", ""), str):
        return _bad("the body must be a JSON object with a string reason")
    session = console_session_close(session_id=session_id, reason=body.get("reason", "") or "closed")
    if session is None:
        return JsonResponse({"error": "unknown session"}, status=404)
    return JsonResponse({"closed_at": session.closed_at.isoformat()})
