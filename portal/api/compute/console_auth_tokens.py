"""``GET /os-console-auth-tokens/{token}`` (admins, from microversion 2.31): where a live console token
leads. Unknown and expired tokens, and tokens of servers that are no longer active, are 404."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, NotFound
from portal.selectors.consoles import console_target


class ConsoleAuthTokenView(ComputeAPIView):
    def get(self, request, token):
        if request.api_version < "2.31":
            # Before 2.31 only RDP consoles could be looked up, and this cloud has none.
            raise BadRequest("The requested console type details are not accessible before microversion 2.31.")
        self.require_admin()
        target = console_target(token)
        if target is None:
            raise NotFound("Token not found")
        return Response(
            {
                "console": {
                    "instance_uuid": str(target.instance.uuid),
                    "host": target.host,
                    "port": target.port,
                    "internal_access_path": None,
                }
            }
        )
