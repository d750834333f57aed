"""``manage.py register_catalog`` against a real Keystone: what it creates, and that running it again is safe."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.integration


def register(**options) -> str:
    out = io.StringIO()
    call_command("register_catalog", stdout=out, **options)
    return out.getvalue()


def endpoints_by_interface(keystone, service_type: str, region: str) -> dict[str, list[str]]:
    (service,) = keystone.catalog_entries(service_type)
    found: dict[str, list[str]] = {}
    for endpoint in service["endpoints"]:
        if endpoint["region_id"] == region:
            found.setdefault(endpoint["interface"], []).append(endpoint["url"])
    return found


def test_registers_compute_image_and_network_idempotently(keystone, keystone_settings):
    region = f"Region-{uuid.uuid4().hex[:6]}"
    first = register(public_url="http://cloud.example:8000/", region=region)
    assert f"region {region}: created" in first
    assert "compute public endpoint http://cloud.example:8000/compute/v2.1: created" in first
    assert "image admin endpoint http://cloud.example:8000/image: created" in first

    for service_type, url in (
        ("compute", "http://cloud.example:8000/compute/v2.1"),
        ("image", "http://cloud.example:8000/image"),
        ("network", "http://cloud.example:8000/networking"),
    ):
        assert endpoints_by_interface(keystone, service_type, region) == {
            "public": [url],
            "internal": [url],
            "admin": [url],
        }

    again = register(public_url="http://cloud.example:8000", region=region)
    assert "created" not in again
    assert again.count(": unchanged") == 12  # three services, nine endpoints
    assert endpoints_by_interface(keystone, "compute", region)["public"] == ["http://cloud.example:8000/compute/v2.1"]


def test_moves_endpoints_and_removes_duplicates(keystone, keystone_settings):
    region = f"Region-{uuid.uuid4().hex[:6]}"
    register(public_url="http://old.example", region=region)
    (compute,) = keystone.catalog_entries("compute")
    keystone.call(
        "POST",
        "/endpoints",
        {
            "endpoint": {
                "service_id": compute["id"],
                "interface": "public",
                "region_id": region,
                "url": "http://stale.example/compute/v2.1",
            }
        },
    )
    out = register(public_url="http://new.example", internal_url="http://10.0.0.5:8000", region=region)
    assert "duplicate removed" in out
    moved = "compute public endpoint http://new.example/compute/v2.1: updated (was http://old.example/compute/v2.1)"
    assert moved in out
    assert endpoints_by_interface(keystone, "compute", region) == {
        "public": ["http://new.example/compute/v2.1"],
        "internal": ["http://10.0.0.5:8000/compute/v2.1"],
        "admin": ["http://new.example/compute/v2.1"],
    }
    assert endpoints_by_interface(keystone, "image", region)["internal"] == ["http://10.0.0.5:8000/image"]


def test_without_keystone_it_says_so(settings):
    settings.KEYSTONE = {**settings.KEYSTONE, "AUTH_URL": ""}
    with pytest.raises(CommandError, match="KEYSTONE_AUTH_URL is not set"):
        register()


def test_a_service_user_without_admin_is_told_why(keystone, settings):
    project = f"svc-{uuid.uuid4().hex[:6]}"
    keystone.make_user(f"svc-{project}", "svc-pw", project, "member")
    settings.KEYSTONE = keystone.settings(USERNAME=f"svc-{project}", PASSWORD="svc-pw", PROJECT_NAME=project)
    with pytest.raises(CommandError, match="needs the admin role"):
        register(region="RegionOne")


def test_the_registered_urls_answer_version_discovery(client):
    """What the catalog points at, exactly as registered (no trailing slash), is where clients discover."""
    image = client.get("/image")
    assert image.status_code == 300
    assert "v2.7" in [v["id"] for v in image.json()["versions"]]
    network = client.get("/networking")
    assert network.status_code == 200
    assert [v["id"] for v in network.json()["versions"]] == ["v2.0"]
    compute = client.get("/compute/v2.1")
    assert compute.status_code == 200
    assert compute.json()["version"]["id"] == "v2.1"


def test_an_empty_accept_header_still_gets_json(member):
    """openstacksdk sends ``Accept: ""`` with every server action; Nova answers it, so must we."""
    response = member.client.post(
        "/compute/v2.1/servers/00000000-0000-0000-0000-000000000000/action",
        {"os-stop": None},
        format="json",
        HTTP_ACCEPT="",
    )
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404
