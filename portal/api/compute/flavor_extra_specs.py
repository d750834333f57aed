"""``/flavors/{id}/os-extra_specs[/{key}]``: everyone who sees the flavor reads them, admins write.

Values of the keys the compute API knows are checked at every microversion (a ``hw:cpu_policy`` of
``banana`` is a 400, not a failed boot later); from 2.86 an unknown key in a known namespace is refused.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, NotFound
from portal.services import flavors as flavor_services
from portal.services.extra_specs import InvalidExtraSpec

from . import validation
from .flavors import get_flavor_or_404


def _set(view, request, flavor_id, specs: dict) -> None:
    view.require_admin()
    clean = validation.metadata(specs, "extra_specs", numbers=True)
    flavor = get_flavor_or_404(view, flavor_id)
    try:
        flavor_services.flavor_extra_specs_set(flavor=flavor, specs=clean, strict=request.api_version >= "2.86")
    except InvalidExtraSpec as exc:
        raise BadRequest(str(exc)) from None


class FlavorExtraSpecsView(ComputeAPIView):
    def get(self, request, flavor_id):
        validation.known_query(request, set(), since="2.102")
        return Response({"extra_specs": dict(get_flavor_or_404(self, flavor_id).extra_specs)})

    def post(self, request, flavor_id):
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("extra_specs"), dict):
            raise BadRequest("The request body must be an object with an 'extra_specs' object.")
        validation.reject_unknown(body, {"extra_specs"}, "the request body")
        _set(self, request, flavor_id, body["extra_specs"])
        return Response({"extra_specs": body["extra_specs"]})


class FlavorExtraSpecView(ComputeAPIView):
    def get(self, request, flavor_id, key):
        validation.known_query(request, set(), since="2.102")
        flavor = get_flavor_or_404(self, flavor_id)
        if key not in flavor.extra_specs:
            raise NotFound(f"Flavor {flavor_id[:255]} has no extra specs with key {key[:255]}.")
        return Response({key: flavor.extra_specs[key]})

    def put(self, request, flavor_id, key):
        body = request.data
        if not isinstance(body, dict) or len(body) != 1:
            raise BadRequest("The request body must be an object with exactly one extra spec.")
        if key not in body:
            raise BadRequest("Request body and URI mismatch")
        _set(self, request, flavor_id, body)
        return Response(body)

    def delete(self, request, flavor_id, key):
        self.require_admin()
        flavor = get_flavor_or_404(self, flavor_id)
        try:
            flavor_services.flavor_extra_spec_delete(flavor=flavor, key=key)
        except flavor_services.ExtraSpecNotFound:
            raise NotFound(f"Flavor {flavor_id[:255]} has no extra specs with key {key[:255]}.") from None
        return Response(status=200)
