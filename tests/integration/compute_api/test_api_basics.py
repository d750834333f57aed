"""The compute API's front door: versions, microversion headers, errors, auth and flavors."""

import pytest

from portal.api.microversion import MAX_VERSION
from tests.factories import FlavorFactory

pytestmark = pytest.mark.integration


def test_version_documents_need_no_auth(client):
    for path in ("/compute/", "/compute/v2.1", "/compute/v2.1/", "/compute/v2/"):
        response = client.get(path)
        assert response.status_code == 200, path
    versions = client.get("/compute/").json()["versions"]
    assert [(v["id"], v["status"]) for v in versions] == [("v2.0", "SUPPORTED"), ("v2.1", "CURRENT")]
    assert versions[0]["links"][0]["href"].endswith("/compute/v2/")
    assert client.get("/compute/v2/").json()["version"]["id"] == "v2.0"
    version = client.get("/compute/v2.1/").json()["version"]
    assert version["version"] == str(MAX_VERSION)
    assert version["min_version"] == "2.1"
    assert version["status"] == "CURRENT"


def test_unauthenticated_request_gets_401_in_the_envelope(client):
    response = client.get("/compute/v2.1/flavors")
    assert response.status_code == 401
    assert response.json()["unauthorized"]["code"] == 401


def test_wrong_password_is_401(member):
    member.client.credentials(HTTP_AUTHORIZATION="Basic " + "bm9ib2R5Om5vdGhpbmc=")
    assert member.client.get("/compute/v2.1/flavors").status_code == 401


def test_the_legacy_v2_api_is_v2_1_without_microversions(member):
    """``/compute/v2/`` serves the same endpoints, always at 2.1, whatever version is asked for, and says
    nothing of microversions."""
    FlavorFactory(flavorid="1", description="hidden before 2.55")
    response = member.client.get("/compute/v2/flavors/1", HTTP_OPENSTACK_API_VERSION="compute 2.60")
    assert response.status_code == 200
    assert "description" not in response.json()["flavor"]
    assert "OpenStack-API-Version" not in response and "X-OpenStack-Nova-API-Version" not in response
    assert member.client.get("/compute/v2/flavors/1", HTTP_OPENSTACK_API_VERSION="compute 9.9").status_code == 200
    assert member.client.get("/compute/v2.1/flavors/1", HTTP_OPENSTACK_API_VERSION="compute 9.9").status_code == 406


def test_microversion_is_echoed(member):
    response = member.client.get("/compute/v2.1/flavors", HTTP_OPENSTACK_API_VERSION="compute 2.19")
    assert response["OpenStack-API-Version"] == "compute 2.19"
    assert response["X-OpenStack-Nova-API-Version"] == "2.19"
    assert "OpenStack-API-Version" in response["Vary"]


def test_the_request_id_is_sent_under_both_names(member):
    response = member.client.get("/compute/v2.1/flavors")
    assert response["X-OpenStack-Request-Id"].startswith("req-")
    assert response["X-Compute-Request-Id"] == response["X-OpenStack-Request-Id"]


def test_no_microversion_means_2_1(member):
    response = member.client.get("/compute/v2.1/flavors")
    assert response["OpenStack-API-Version"] == "compute 2.1"


def test_microversion_out_of_range_is_406(member):
    response = member.client.get("/compute/v2.1/flavors", HTTP_OPENSTACK_API_VERSION="compute 2.999")
    assert response.status_code == 406
    assert response.json()["computeFault"]["code"] == 406


def test_malformed_microversion_is_400(member):
    response = member.client.get("/compute/v2.1/flavors", HTTP_X_OPENSTACK_NOVA_API_VERSION="banana")
    assert response.status_code == 400
    assert "badRequest" in response.json()


def test_unknown_url_is_404_in_the_envelope(member):
    response = member.client.get("/compute/v2.1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404


def test_project_id_in_the_path_selects_the_project(member, stranger):
    assert member.client.get(f"/compute/v2.1/{member.project.id}/flavors").status_code == 200
    response = member.client.get(f"/compute/v2.1/{stranger.project.id}/flavors")
    assert response.status_code == 403
    assert "forbidden" in response.json()


def test_flavors_list_detail_and_show(member):
    tiny = FlavorFactory(flavorid="1", name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1)
    FlavorFactory(flavorid="2", name="m1.small", vcpus=1, memory_mb=2048, root_gb=20)
    FlavorFactory(flavorid="9", name="secret", is_public=False)
    listed = member.client.get("/compute/v2.1/flavors").json()["flavors"]
    assert [f["id"] for f in listed] == ["1", "2"]
    assert set(listed[0]) == {"id", "name", "links"}
    detail = member.client.get("/compute/v2.1/flavors/detail?is_public=True").json()["flavors"]
    assert detail[0] == {
        "id": "1",
        "name": "m1.tiny",
        "ram": 512,
        "vcpus": 1,
        "disk": 1,
        "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "OS-FLV-DISABLED:disabled": False,
        "os-flavor-access:is_public": True,
        "rxtx_factor": 1.0,
        "links": detail[0]["links"],
    }
    shown = member.client.get(f"/compute/v2.1/flavors/{tiny.flavorid}").json()["flavor"]
    assert shown["name"] == "m1.tiny"
    assert member.client.get("/compute/v2.1/flavors/9").status_code == 404


def test_admin_sees_private_flavors(admin):
    FlavorFactory(flavorid="9", name="secret", is_public=False)
    assert admin.client.get("/compute/v2.1/flavors/9").status_code == 200
    names = [f["name"] for f in admin.client.get("/compute/v2.1/flavors?is_public=None").json()["flavors"]]
    assert "secret" in names


def test_flavor_pagination(member):
    for n in range(5):
        FlavorFactory(flavorid=str(n + 1))
    first = member.client.get("/compute/v2.1/flavors?limit=2").json()
    assert [f["id"] for f in first["flavors"]] == ["1", "2"]
    assert "marker=2" in first["flavors_links"][0]["href"]
    second = member.client.get("/compute/v2.1/flavors?limit=2&marker=2").json()
    assert [f["id"] for f in second["flavors"]] == ["3", "4"]
    assert member.client.get("/compute/v2.1/flavors?marker=nope").status_code == 400
    assert member.client.get("/compute/v2.1/flavors?limit=-1").status_code == 400


def test_the_legacy_v2_api_ignores_unknown_body_keys_and_v2_1_still_refuses_them(admin):
    body = {"aggregate": {"name": "agg-v2", "bogus": 1}}
    assert admin.client.post("/compute/v2/os-aggregates", body, format="json").status_code == 200
    # The same thread's next request to v2.1 is strict again.
    refused = admin.client.post(
        "/compute/v2.1/os-aggregates", {"aggregate": {"name": "agg-v21", "bogus": 1}}, format="json"
    )
    assert refused.status_code == 400 and "bogus" in refused.json()["badRequest"]["message"]
