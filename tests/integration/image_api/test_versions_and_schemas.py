import pytest
from rest_framework.test import APIClient

from tests.factories import ImageFactory

pytestmark = pytest.mark.integration


@pytest.mark.django_db
def test_root_lists_versions_without_authentication():
    response = APIClient().get("/image/")

    assert response.status_code == 300
    versions = response.json()["versions"]
    ids = [v["id"] for v in versions]
    assert "v2.0" in ids
    current = [v for v in versions if v["status"] == "CURRENT"]
    assert len(current) == 1
    assert all(v["status"] in ("CURRENT", "SUPPORTED") for v in versions)
    assert all(v["links"] == [{"rel": "self", "href": "http://cloud.test:8000/image/v2/"}] for v in versions)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/image/versions", "/image/v2/"])
def test_explicit_versions_answer_200(path):
    response = APIClient().get(path, HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert {v["id"] for v in response.json()["versions"]} >= {"v2.0", "v2.1"}


@pytest.mark.django_db
def test_versions_answer_json_whatever_the_accept_header():
    assert APIClient().get("/image/", HTTP_ACCEPT="text/html").status_code == 300


@pytest.mark.django_db
def test_api_needs_authentication():
    response = APIClient().get("/image/v2/images")

    assert response.status_code == 401
    assert response.json()["unauthorized"]["code"] == 401


def test_image_schema(member):
    response = member.client.get("/image/v2/schemas/image")

    assert response.status_code == 200
    schema = response.json()
    assert schema["name"] == "image"
    assert schema["additionalProperties"] == {"type": "string"}
    assert {"id", "name", "status", "visibility", "checksum", "os_hash_value", "tags"} <= set(schema["properties"])
    assert schema["properties"]["status"]["readOnly"] is True
    assert "qcow2" in schema["properties"]["disk_format"]["enum"]


def test_images_schema(member):
    schema = member.client.get("/image/v2/schemas/images").json()

    assert schema["name"] == "images"
    assert schema["properties"]["images"]["items"]["name"] == "image"


def test_import_discovery_offers_no_methods(member):
    response = member.client.get("/image/v2/info/import")

    assert response.status_code == 200
    assert response.json()["import-methods"]["value"] == []


def test_unimplemented_parts_say_so(member):
    response = member.client.get("/image/v2/images/8c3a4b4e-6e1f-4f4d-9a8e-0d6b1b2c3d4e/members")

    assert response.status_code == 501
    assert response.json()["notImplemented"]["code"] == 501


def test_an_image_has_no_import_tasks(member, stranger):
    image = ImageFactory(owner=member.project, visibility="private")
    response = member.client.get(f"/image/v2/images/{image.id}/tasks")
    assert (response.status_code, response.json()) == (200, {"tasks": []})
    assert stranger.client.get(f"/image/v2/images/{image.id}/tasks").status_code == 404
    assert member.client.get(f"/image/v2/images/{image.id}/tasks/x").status_code == 501
