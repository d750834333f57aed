"""``GET``/``DELETE /servers/{id}/os-server-password``: the encrypted password a guest posted to the
metadata service. No guest here posts one (the metadata service takes no password), so it is always
empty, and clearing it clears nothing, as in Nova for a guest that never posted one."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView

from . import validation
from .servers import get_instance_or_404


class ServerPasswordView(ComputeAPIView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        get_instance_or_404(self, server_id)
        return Response({"password": ""})

    def delete(self, request, server_id):
        self.require_write()
        get_instance_or_404(self, server_id)
        return Response(status=204)
