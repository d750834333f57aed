import pytest

from compute_tasks.rpc import ScheduleRequest
from portal.auth import keystone
from portal.services.cinder import _keystone_auth, project_endpoint
from portal.services.volumes import nested_connection_info

pytestmark = pytest.mark.unit

SERVICE = "0f5e1c0e6b3a4b8c9d7e6f5a4b3c2d1e"
USER = "8a7b6c5d4e3f40a1b2c3d4e5f6a7b8c9"


@pytest.mark.parametrize(
    "catalog_url",
    [
        f"http://cinder:8776/v3/{SERVICE}",  # the usual template, filled in for the service's own project
        f"http://cinder:8776/v3/{SERVICE}/",
        "http://cinder:8776/v3",  # catalogs without the project in the URL
    ],
)
def test_the_block_storage_endpoint_points_at_the_callers_project(catalog_url):
    assert project_endpoint(catalog_url, USER, SERVICE) == f"http://cinder:8776/v3/{USER}"


def test_the_flat_connection_info_of_the_attachments_api_is_nested_for_hosts():
    flat = {"driver_volume_type": "nfs", "export": "h:/x", "name": "volume-1", "attachment_id": "a"}
    nested = nested_connection_info(flat)
    assert nested == {"driver_volume_type": "nfs", "data": {"export": "h:/x", "name": "volume-1", "attachment_id": "a"}}
    assert nested_connection_info(nested) == nested


class FakeServiceSession:
    """What ``_keystone_auth`` asks of the service user's Keystone session: the catalog and its project."""

    auth = object()

    def get_endpoint(self, **kwargs):
        return f"http://cinder:8776/v3/{SERVICE}"

    def get_project_id(self):
        return SERVICE


@pytest.fixture
def keystone_catalog(monkeypatch, settings):
    settings.KEYSTONE = {**settings.KEYSTONE, "AUTH_URL": "http://keystone:5000/v3", "REGION_NAME": "RegionOne"}

    class Client:
        config = settings.KEYSTONE

        def service_session(self):
            return FakeServiceSession()

    monkeypatch.setattr(keystone, "client", Client)


def test_a_users_token_goes_to_the_users_project(keystone_catalog):
    auth = _keystone_auth(USER, "user-token")
    assert auth.get_endpoint(None) == f"http://cinder:8776/v3/{USER}"


def test_the_service_token_goes_to_the_service_project(keystone_catalog):
    # Cinder answers "Malformed request url" (400) to a token for one project at another's URL.
    auth = _keystone_auth(USER, None)
    assert auth.get_endpoint(None) == f"http://cinder:8776/v3/{SERVICE}"


def test_the_users_token_in_a_schedule_request_is_never_shown():
    request = ScheduleRequest(instance_uuid="i", request_id="r", user_token="secret-token")
    assert "secret-token" not in repr(request)
    assert ScheduleRequest.from_dict(request.to_dict()) == request
