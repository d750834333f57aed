import pytest

from portal.services.cinder import project_endpoint
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
