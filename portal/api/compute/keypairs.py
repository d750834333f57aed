"""``/os-keypairs``: a user's key pairs.

Shapes per microversion: ``type`` (ssh or x509) and 201/204 status codes from 2.2, ``user_id`` for
admins from 2.10, ``limit``/``marker`` paging with ``keypairs_links`` from 2.35, and from 2.92 a
``public_key`` is required (no generation) while names may also hold ``@`` and ``.``.
"""

from __future__ import annotations

import re

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, Forbidden, NotFound
from portal.models import Keypair
from portal.selectors.keypairs import keypair_get, keypair_owner, keypairs_of
from portal.selectors.users import api_user_id
from portal.services import keypairs as keypair_services
from portal.services.quotas import QuotaExceeded

from . import validation
from .links import collection_next
from .params import paginate
from .times import naive_iso

_NAME = re.compile(r"^[_\- a-zA-Z0-9]+$")
_NAME_292 = re.compile(r"^[_\-@. a-zA-Z0-9]+$")


def _summary(keypair, version) -> dict:
    body = {"name": keypair.name, "public_key": keypair.public_key, "fingerprint": keypair.fingerprint}
    if version >= "2.2":
        body["type"] = keypair.type
    return body


def _detail(keypair, version) -> dict:
    body = {
        **_summary(keypair, version),
        "user_id": api_user_id(keypair.user),
        "created_at": naive_iso(keypair.created_at),
        "deleted": False,
        "deleted_at": None,
        "id": keypair.pk,
        "updated_at": None,
    }
    return body


class _KeypairView(ComputeAPIView):
    def owner(self, request, user_id=None):
        """The user whose key pairs are meant: the caller, or (2.10+) the ``user_id`` an admin names."""
        if user_id is None and request.api_version >= "2.10":
            user_id = request.GET.get("user_id")
        if user_id is None or str(user_id) == api_user_id(self.ctx.user):
            return self.ctx.user
        if not self.ctx.is_admin:
            raise Forbidden("Policy doesn't allow os_compute_api:os-keypairs to be performed.")
        return keypair_owner(user_id)


class KeypairListView(_KeypairView):
    def get(self, request):
        version = request.api_version
        validation.known_query(request, {"user_id", "limit", "marker"}, since="2.75")
        owner = self.owner(request)
        keypairs = keypairs_of(owner) if owner is not None else Keypair.objects.none()
        body = {}
        if version >= "2.35":
            page, limit, more = paginate(request, keypairs, marker_field="name")
            body["keypairs"] = [{"keypair": _summary(k, version)} for k in page]
            if more:
                body["keypairs_links"] = collection_next("os-keypairs", page[-1].name, limit, request)
        else:
            body["keypairs"] = [{"keypair": _summary(k, version)} for k in keypairs]
        return Response(body)

    def post(self, request):
        version = request.api_version
        data = validation.body_object(request, "keypair")
        allowed = {"name", "public_key"}
        if version >= "2.2":
            allowed.add("type")
        if version >= "2.10":
            allowed.add("user_id")
        validation.reject_unknown(data, allowed, "keypair")
        name = data.get("name")
        if name is None:
            raise BadRequest("Invalid input for field/attribute keypair: 'name' is a required property.")
        name = validation.name(name)
        if not (_NAME_292 if version >= "2.92" else _NAME).match(name):
            allowed_chars = "letters, digits, spaces, '_', '-'" + (", '@' and '.'" if version >= "2.92" else "")
            raise BadRequest(f"Keypair name contains unsafe characters: only {allowed_chars} are allowed.")
        key_type = data.get("type", Keypair.Type.SSH)
        if key_type not in Keypair.Type.values:
            raise BadRequest(f"Invalid input for field/attribute type: {str(key_type)[:20]!r} is not ssh or x509.")
        public_key = data.get("public_key")
        if public_key is not None and not isinstance(public_key, str):
            raise BadRequest("Invalid input for field/attribute public_key: must be a string.")
        if public_key is None and version >= "2.92":
            raise BadRequest("Invalid input for field/attribute keypair: 'public_key' is a required property.")
        user_id = data.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise BadRequest("Invalid input for field/attribute user_id: must be a string.")
        owner = self.owner(request, user_id)
        if owner is None:
            raise BadRequest(f"User {user_id[:64]} could not be found.")
        try:
            keypair, private_key = keypair_services.keypair_create(
                project=self.ctx.project, user=owner, name=name, key_type=key_type, public_key=public_key
            )
        except keypair_services.InvalidKeypair as exc:
            raise BadRequest(str(exc)) from None
        except keypair_services.KeypairExists as exc:
            raise Conflict(str(exc)) from None
        except QuotaExceeded as exc:
            raise Forbidden(str(exc)) from None
        body = {**_summary(keypair, version), "user_id": api_user_id(keypair.user)}
        if private_key is not None:
            body["private_key"] = private_key
        return Response({"keypair": body}, status=201 if version >= "2.2" else 200)


class KeypairView(_KeypairView):
    def _get(self, request, name):
        validation.known_query(request, {"user_id"}, since="2.75")
        owner = self.owner(request)
        keypair = keypair_get(owner, name) if owner is not None else None
        if keypair is None:
            raise NotFound(f"Keypair {name[:255]} not found for user {owner.pk if owner else ''}.")
        return keypair

    def get(self, request, name):
        return Response({"keypair": _detail(self._get(request, name), request.api_version)})

    def delete(self, request, name):
        keypair_services.keypair_delete(keypair=self._get(request, name))
        return Response(status=204 if request.api_version >= "2.2" else 202)
