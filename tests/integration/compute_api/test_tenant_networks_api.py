"""``/os-tenant-networks``: the caller's usable networks in the proxy's shape until 2.35, 404 from 2.36;
creating and deleting through the compute API are gone (410) at every version."""

import pytest
from django.conf import settings

from tests.integration.network_api.helpers import network, subnet

from .admin_helpers import BASE, v

pytestmark = pytest.mark.integration


@pytest.fixture
def tenant_mode(settings):
    settings.CLOUD = {**settings.CLOUD, "NETWORK": {**settings.CLOUD["NETWORK"], "mode": "tenant"}}


def test_user_mode_network_listed_and_shown(member):
    (listed,) = member.client.get(f"{BASE}/os-tenant-networks").json()["networks"]
    assert listed == {"id": listed["id"], "cidr": "None", "label": settings.CLOUD["NETWORK"]["label"]}
    shown = member.client.get(f"{BASE}/os-tenant-networks/{listed['id']}", **v("2.35"))
    assert shown.status_code == 200
    assert shown.json() == {"network": listed}


def test_the_callers_usable_networks(member, stranger, admin, tenant_mode):
    mine = network(member, name="mine")
    subnet(member, mine["id"], "10.91.0.0/24")
    bare = network(member, name="bare")
    theirs = network(stranger, name="theirs")
    shared = network(admin, name="shared", shared=True)
    listed = member.client.get(f"{BASE}/os-tenant-networks").json()["networks"]
    assert listed == [
        {"id": mine["id"], "cidr": "10.91.0.0/24", "label": "mine"},
        {"id": bare["id"], "cidr": "None", "label": "bare"},
        {"id": shared["id"], "cidr": "None", "label": "shared"},
    ]
    shown = member.client.get(f"{BASE}/os-tenant-networks/{mine['id']}").json()["network"]
    assert shown == listed[0]
    # Another project's network is not the caller's to see.
    response = member.client.get(f"{BASE}/os-tenant-networks/{theirs['id']}")
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == "Network not found"
    strangers = {n["id"] for n in stranger.client.get(f"{BASE}/os-tenant-networks").json()["networks"]}
    assert strangers == {theirs["id"], shared["id"]}


def test_unknown_network_is_404(member):
    assert member.client.get(f"{BASE}/os-tenant-networks/not-a-uuid").status_code == 404


def test_gone_from_2_36(member):
    network_id = member.client.get(f"{BASE}/os-tenant-networks").json()["networks"][0]["id"]
    assert member.client.get(f"{BASE}/os-tenant-networks", **v("2.36")).status_code == 404
    assert member.client.get(f"{BASE}/os-tenant-networks/{network_id}", **v("2.36")).status_code == 404


@pytest.mark.parametrize("version", ["2.1", "2.36"])
def test_create_and_delete_are_gone(member, version):
    body = {"network": {"label": "new", "cidr": "10.0.0.0/24"}}
    created = member.client.post(f"{BASE}/os-tenant-networks", body, format="json", **v(version))
    assert created.status_code == 410
    assert created.json()["computeFault"]["code"] == 410
    deleted = member.client.delete(f"{BASE}/os-tenant-networks/anything", **v(version))
    assert deleted.status_code == 410


def test_needs_authentication(client):
    assert client.get(f"{BASE}/os-tenant-networks").status_code == 401
