"""``/extensions``: the aliases this cloud offers, in the compute API's shape, at every microversion."""

import pytest

from portal.api.compute.extensions import OFFERED

from .admin_helpers import BASE, v

pytestmark = pytest.mark.integration

FIELDS = {"name", "alias", "description", "namespace", "updated", "links"}


@pytest.mark.parametrize("version", ["2.1", "2.104"])
def test_list_in_the_compute_api_shape(reader, version):
    response = reader.client.get(f"{BASE}/extensions", **v(version))
    assert response.status_code == 200
    extensions = response.json()["extensions"]
    assert all(set(e) == FIELDS for e in extensions)
    aliases = [e["alias"] for e in extensions]
    assert aliases == sorted(aliases)
    assert {"os-aggregates", "os-availability-zone", "os-keypairs", "os-server-groups", "os-consoles"} <= set(aliases)
    keypairs = next(e for e in extensions if e["alias"] == "os-keypairs")
    assert keypairs["name"] == "Keypairs"
    assert keypairs["namespace"] == "http://docs.openstack.org/compute/ext/fake_xml"
    assert keypairs["updated"] == "2014-12-03T00:00:00Z"
    assert keypairs["links"] == []


def test_only_what_is_served(member):
    aliases = {e["alias"] for e in member.client.get(f"{BASE}/extensions").json()["extensions"]}
    # Features this cloud does not have are not offered.
    assert not aliases & {"OS-DCF", "os-cells", "os-baremetal-nodes", "os-fping", "os-deferred-delete"}


@pytest.mark.parametrize("version", ["2.1", "2.104"])
def test_show_one(member, version):
    response = member.client.get(f"{BASE}/extensions/os-consoles", **v(version))
    assert response.status_code == 200
    assert response.json()["extension"] == {
        "alias": "os-consoles",
        "name": "Consoles",
        "description": dict((a, d) for a, _n, d in OFFERED)["os-consoles"],
        "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
        "updated": "2014-12-03T00:00:00Z",
        "links": [],
    }


def test_unknown_alias_is_404(member):
    response = member.client.get(f"{BASE}/extensions/os-cells")
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404


def test_needs_authentication(client):
    assert client.get(f"{BASE}/extensions").status_code == 401
