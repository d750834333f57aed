"""Resolves console tokens for the console proxy, which holds a shared secret but no database."""

import hmac

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from portal.selectors.consoles import console_target

SECRET_HEADER = "X-Console-Auth-Secret"  # noqa: S105 (a header name, not a secret)


@require_GET
def consoleauth(request, token: str):
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), settings.CONSOLE["AUTH_SECRET"].encode()):
        return JsonResponse({"error": "forbidden"}, status=403)
    target = console_target(token)
    if target is None:
        return JsonResponse({"error": "unknown or expired token"}, status=404)
    return JsonResponse(
        {
            "instance_uuid": str(target.instance.uuid),
            "host": target.host,
            "port": target.port,
            "expires_at": target.expires_at.isoformat(),
        }
    )
