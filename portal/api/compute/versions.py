"""Unauthenticated version documents at ``/compute/``, ``/compute/v2.1/`` and the legacy ``/compute/v2/``."""

from rest_framework.response import Response

from portal.api.base import PublicAPIView
from portal.api.microversion import MAX_VERSION, MIN_VERSION, is_legacy_v2

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


def legacy_version_document() -> dict:
    """The v2.0 API: the v2.1 endpoints at ``/compute/v2/``, always at microversion 2.1."""
    return {
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base_url()}/v2/"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}],
    }


class VersionsView(PublicAPIView):
    def get(self, request):
        return Response({"versions": [legacy_version_document(), version_document()]})


class VersionView(PublicAPIView):
    def get(self, request, project_id=None):
        return Response({"version": legacy_version_document() if is_legacy_v2(request) else version_document()})
