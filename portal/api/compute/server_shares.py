"""``/servers/{id}/shares`` (2.97): Manila shares attached to a server through virtiofs.

No host here offers virtiofs (nor does this cloud talk to a Manila service), so, as Nova answers for a
server whose host lacks the ``COMPUTE_STORAGE_VIRTIO_FS`` trait, no share can be attached: the list is
empty, a share is never found, and attaching one to a stopped server is 409 with Nova's reason. The
server's state is checked first, as Nova checks it (attach only while stopped, detach while stopped or
in error).
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.ids import is_uuid
from portal.states import VmState

from . import validation
from .servers import get_instance_or_404

_TAG_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
NOT_CONFIGURED = "Feature not supported because either compute or instance are not configured correctly."


def _since_2_97(request) -> None:
    if request.api_version < "2.97":
        raise NotFound("The resource could not be found.")


def _check_state(instance, allowed: tuple[str, ...], method: str) -> None:
    if instance.vm_state not in allowed:
        raise Conflict(f"Cannot '{method}' instance {instance.uuid} while it is in vm_state {instance.vm_state}")


class ServerShareListView(ComputeAPIView):
    def get(self, request, server_id):
        _since_2_97(request)
        validation.known_query(request, set(), since="2.97")
        get_instance_or_404(self, server_id)
        return Response({"shares": []})

    def post(self, request, server_id):
        _since_2_97(request)
        self.require_write()
        share = validation.body_object(request, "share")
        validation.reject_unknown(request.data, {"share"}, "body")
        validation.reject_unknown(share, {"share_id", "tag"}, "share")
        share_id = share.get("share_id")
        if not isinstance(share_id, str) or not is_uuid(share_id):
            raise BadRequest("Invalid input for field/attribute share_id: must be a UUID.")
        tag = share.get("tag")
        if "tag" in share and (not isinstance(tag, str) or not 1 <= len(tag) <= 255 or not set(tag) <= _TAG_CHARS):
            raise BadRequest("Invalid input for field/attribute tag: 1 to 255 letters, digits or '-'.")
        instance = get_instance_or_404(self, server_id)
        _check_state(instance, (VmState.STOPPED,), "create share")
        raise Conflict(NOT_CONFIGURED)


class ServerShareView(ComputeAPIView):
    def get(self, request, server_id, share_id):
        _since_2_97(request)
        validation.known_query(request, set(), since="2.97")
        get_instance_or_404(self, server_id)
        raise NotFound(f"Share {share_id[:64]} could not be found.")

    def delete(self, request, server_id, share_id):
        _since_2_97(request)
        self.require_write()
        instance = get_instance_or_404(self, server_id)
        _check_state(instance, (VmState.STOPPED, VmState.ERROR), "delete share")
        raise NotFound(f"Share {share_id[:64]} could not be found.")
