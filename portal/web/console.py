"""The console page: noVNC, from the console proxy, filling the window, with a fresh token per connection.

The page itself holds no token. Its script asks ``console/token`` (a POST, with the CSRF token) for a
new one each time it connects, so "Reconnect" works after the previous token expired, and the token
never appears in a URL the browser keeps or in the portal's logs. The proxy serves noVNC's modules
with CORS for the allowed origins.

The page and its tokens are refused (403) to a role that may not open consoles (readers), after the
instance is found, so that another project's member still gets 404.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from portal.selectors.console_sessions import latest_session_of
from portal.services import consoles as console_services
from portal.services.lifecycle import StateConflict

from .context import instance_or_404, page, portal_view
from .presenters import present


def proxy_base() -> tuple[str, str]:
    """The proxy's http(s) base (for noVNC's modules) and ws(s) base (for the websocket)."""
    parts = urlsplit(settings.CONSOLE["PROXY_BASE_URL"])
    directory = parts.path.rsplit("/", 1)[0] + "/"
    http_base = f"{parts.scheme}://{parts.netloc}{directory}"
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    return http_base, f"{ws_scheme}://{parts.netloc}{directory}"


@require_GET
@portal_view
def console_page(request: HttpRequest, server_id) -> HttpResponse:
    instance = instance_or_404(request, server_id)
    if not console_services.console_permitted(request.ctx):
        reason = "Your role in this project is read-only: you cannot open consoles."
        return page(request, "portal/forbidden.html", {"section": "instances", "reason": reason}, status=403)
    novnc_base, websocket_base = proxy_base()
    response = page(
        request,
        "portal/console.html",
        {
            "section": "instances",
            "view": present(instance, request.ctx),
            "novnc_base": novnc_base,
            "websocket_base": websocket_base,
        },
    )
    response["Referrer-Policy"] = "same-origin"
    return response


@require_POST
@portal_view
def console_token(request: HttpRequest, server_id) -> JsonResponse:
    """A new token for this user and instance: ``{"websocket_url", "expires_at"}``, or 409 when not running."""
    instance = instance_or_404(request, server_id)
    try:
        token, expires_at = console_services.console_token_create(ctx=request.ctx, instance=instance)
    except console_services.ConsoleForbidden as exc:
        return JsonResponse({"error": str(exc)}, status=403)
    except StateConflict as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    _, websocket_base = proxy_base()
    response = JsonResponse({"websocket_url": f"{websocket_base}token/{token}", "expires_at": expires_at.isoformat()})
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@portal_view
def console_session(request: HttpRequest, server_id) -> JsonResponse:
    """This user's latest console session on the instance: open, or closed and why.

    Readers may ask too: it opens nothing, and tells someone whose role was just lowered why their
    session ended.
    """
    instance = instance_or_404(request, server_id)
    session = latest_session_of(instance=instance, user=request.user)
    if session is None:
        return JsonResponse({"session": None})
    return JsonResponse(
        {
            "session": {
                "opened_at": session.opened_at.isoformat(),
                "closed_at": session.closed_at.isoformat() if session.closed_at else None,
                "closed_reason": session.closed_reason,
                "token_expires_at": session.token.expires_at.isoformat() if session.token else None,
            }
        }
    )
