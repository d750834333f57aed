"""Version discovery and the extensions list of the networking API."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import PublicAPIView
from portal.services.network_errors import NotFound

from .base import AlwaysJSON, NetworkingAPIView, service_url
from .extensions import EXTENSIONS


class VersionsView(PublicAPIView):
    """``GET /networking/``: the one version, as Neutron answers at its root."""

    content_negotiation_class = AlwaysJSON

    def get(self, request):
        return Response(
            {
                "versions": [
                    {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{service_url()}/v2.0/"}]}
                ]
            }
        )


class V2RootView(NetworkingAPIView):
    """``GET /networking/v2.0/``: the collections this version has."""

    def get(self, request):
        resources = [("network", "networks"), ("subnet", "subnets"), ("port", "ports"), ("quota", "quotas")]
        resources += [("security_group", "security-groups"), ("security_group_rule", "security-group-rules")]
        resources += [("router", "routers"), ("floatingip", "floatingips")]
        return Response(
            {
                "resources": [
                    {
                        "name": name,
                        "collection": collection,
                        "links": [{"rel": "self", "href": f"{service_url()}/v2.0/{collection}"}],
                    }
                    for name, collection in resources
                ]
            }
        )


class ExtensionsView(NetworkingAPIView):
    def get(self, request):
        return Response({"extensions": list(EXTENSIONS.values())})


class ExtensionView(NetworkingAPIView):
    def get(self, request, alias: str):
        extension = EXTENSIONS.get(alias)
        if extension is None:
            raise NotFound(f"Extension with alias {alias[:64]} does not exist")
        return Response({"extension": extension})
