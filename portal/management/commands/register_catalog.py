"""Register the compute, image and network services and their endpoints in the Keystone catalog.

Idempotent: a service or endpoint that is already right is left alone, a wrong URL is corrected, and a
duplicate endpoint (same service, interface and region) is removed, so clients never see two.
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from keystoneauth1 import exceptions as ks_exceptions

from portal.auth import keystone

SERVICES = [
    # type, name, path under the public URL, description
    ("compute", "compute", "/compute/v2.1", "Compute API v2.1"),
    ("image", "image", "/image", "Image API"),
    ("network", "neutron", "/networking", "Networking API v2.0"),
]
INTERFACES = ("public", "internal", "admin")


class Command(BaseCommand):
    help = "Register the `compute`, `image` and `network` services and their endpoints in the Keystone catalog."

    def add_arguments(self, parser):
        public = settings.CLOUD["PUBLIC_URL"]
        parser.add_argument("--public-url", default=public, help="base URL for public endpoints (CLOUD_PUBLIC_URL)")
        parser.add_argument("--internal-url", default=None, help="base URL for internal endpoints (default: public)")
        parser.add_argument("--admin-url", default=None, help="base URL for admin endpoints (default: public)")
        parser.add_argument("--region", default=settings.KEYSTONE["REGION_NAME"], help="(KEYSTONE_REGION_NAME)")

    def handle(self, *args, public_url: str, internal_url: str | None, admin_url: str | None, region: str, **opts):
        if not keystone.enabled():
            raise CommandError("KEYSTONE_AUTH_URL is not set: there is no Keystone to register in")
        bases = {
            "public": public_url.rstrip("/"),
            "internal": (internal_url or public_url).rstrip("/"),
            "admin": (admin_url or public_url).rstrip("/"),
        }
        client = keystone.client()
        try:
            self.session = client.service_session()
            self.base = client.identity_url()
            self._region(region)
            for service_type, name, path, description in SERVICES:
                service_id = self._service(service_type, name, description)
                for interface in INTERFACES:
                    self._endpoint(service_type, service_id, interface, region, bases[interface] + path)
        except keystone.KeystoneUnavailable as exc:
            raise CommandError(str(exc)) from None
        except ks_exceptions.Forbidden:
            raise CommandError(
                "Keystone refused: the service user (KEYSTONE_USERNAME) needs the admin role to edit the catalog"
            ) from None
        except ks_exceptions.HttpError as exc:
            raise CommandError(f"Keystone answered {exc.http_status}: {exc.message}") from None

    def _get(self, path: str, **params: str) -> dict:
        return self.session.get(f"{self.base}{path}", params=params).json()

    def _send(self, method: str, path: str, body: dict | None = None) -> dict | None:
        response = self.session.request(f"{self.base}{path}", method, json=body)
        return response.json() if response.content else None

    def _region(self, region: str) -> None:
        try:
            self.session.get(f"{self.base}/regions/{quote(region, safe='')}")
        except ks_exceptions.NotFound:
            self._send("POST", "/regions", {"region": {"id": region}})
            self.stdout.write(f"region {region}: created")

    def _service(self, service_type: str, name: str, description: str) -> str:
        services = self._get("/services", type=service_type)["services"]
        service = next((s for s in services if s.get("name") == name), services[0] if services else None)
        if service is None:
            body = {"service": {"type": service_type, "name": name, "description": description, "enabled": True}}
            service = self._send("POST", "/services", body)["service"]
            self.stdout.write(f"{service_type} service: created ({service['id']})")
        elif not service.get("enabled", True):
            self._send("PATCH", f"/services/{service['id']}", {"service": {"enabled": True}})
            self.stdout.write(f"{service_type} service: enabled ({service['id']})")
        else:
            self.stdout.write(f"{service_type} service: unchanged ({service['id']})")
        return service["id"]

    def _endpoint(self, service_type: str, service_id: str, interface: str, region: str, url: str) -> None:
        endpoints = self._get("/endpoints", service_id=service_id, interface=interface, region_id=region)["endpoints"]
        label = f"{service_type} {interface} endpoint {url}"
        if not endpoints:
            body = {
                "endpoint": {
                    "service_id": service_id,
                    "interface": interface,
                    "region_id": region,
                    "url": url,
                    "enabled": True,
                }
            }
            self._send("POST", "/endpoints", body)
            self.stdout.write(f"{label}: created")
            return
        keep, *duplicates = endpoints
        for duplicate in duplicates:
            self._send("DELETE", f"/endpoints/{duplicate['id']}")
            self.stdout.write(f"{service_type} {interface} endpoint {duplicate['url']}: duplicate removed")
        if keep["url"] != url or not keep.get("enabled", True):
            self._send("PATCH", f"/endpoints/{keep['id']}", {"endpoint": {"url": url, "enabled": True}})
            self.stdout.write(f"{label}: updated (was {keep['url']})")
        else:
            self.stdout.write(f"{label}: unchanged")
