"""Unauthenticated version documents at ``/compute/`` and ``/compute/v2.1/``."""

from rest_framework.response import Response

from portal.api.base import PublicAPIView
from portal.api.microversion import MAX_VERSION, MIN_VERSION

from .links import base_url


def version_document() -> dict:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": str(MAX_VERSION),
        "min_version": str(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url()}/v2.1/"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }


class VersionsView(PublicAPIView):
    def get(self, request):
        return Response({"versions": [version_document()]})


class VersionView(PublicAPIView):
    def get(self, request, project_id=None):
        return Response({"version": version_document()})
