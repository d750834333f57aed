"""``/os-networks``: Nova's proxy shape until 2.35 (the network controller's networks, and in "user" mode
the one network servers are on), 404 from 2.36; a server asked for on that network by uuid gets its NIC."""

import pytest
from django.conf import settings

from portal.models import Instance
from tests.factories import FlavorFactory, ImageFactory
from tests.integration.network_api.helpers import network, subnet

from .admin_helpers import BASE, v

pytestmark = pytest.mark.integration

USER_FIELDS = {"id", "label", "cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6", "gateway_v6"}
USER_FIELDS |= {"netmask_v6"}


def test_list_and_show_in_the_proxy_shape(member, admin):
    (network,) = member.client.get(f"{BASE}/os-networks").json()["networks"]
    assert set(network) == USER_FIELDS
    assert network["label"] == settings.CLOUD["NETWORK"]["label"]
    assert all(network[f] is None for f in USER_FIELDS - {"id", "label"})
    shown = member.client.get(f"{BASE}/os-networks/{network['id']}", **v("2.35")).json()["network"]
    assert shown == network
    # Admins see Nova's system fields too, null as in Nova without nova-network.
    (as_admin,) = admin.client.get(f"{BASE}/os-networks").json()["networks"]
    assert set(as_admin) > USER_FIELDS and {"bridge", "vlan", "project_id", "mtu"} <= set(as_admin)
    assert as_admin["id"] == network["id"]


def test_the_controllers_networks_the_caller_sees(member, stranger, admin, settings):
    settings.CLOUD = {**settings.CLOUD, "NETWORK": {**settings.CLOUD["NETWORK"], "mode": "tenant"}}
    mine = network(member, name="mine")
    subnet(member, mine["id"], "10.90.0.0/24")
    network(stranger, name="theirs")
    listed = member.client.get(f"{BASE}/os-networks").json()["networks"]
    assert [(n["id"], n["label"], n["cidr"]) for n in listed] == [(mine["id"], "mine", "10.90.0.0/24")]
    assert member.client.get(f"{BASE}/os-networks/{mine['id']}").json()["network"]["label"] == "mine"
    theirs = stranger.client.get(f"{BASE}/os-networks").json()["networks"][0]["id"]
    assert member.client.get(f"{BASE}/os-networks/{theirs}").status_code == 404
    assert {n["label"] for n in admin.client.get(f"{BASE}/os-networks").json()["networks"]} == {"mine", "theirs"}


def test_unknown_network_is_404(member):
    response = member.client.get(f"{BASE}/os-networks/none")
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == "Network not found"


def test_gone_from_2_36(member):
    network_id = member.client.get(f"{BASE}/os-networks").json()["networks"][0]["id"]
    assert member.client.get(f"{BASE}/os-networks", **v("2.36")).status_code == 404
    assert member.client.get(f"{BASE}/os-networks/{network_id}", **v("2.36")).status_code == 404


def test_needs_authentication(client):
    assert client.get(f"{BASE}/os-networks").status_code == 401


@pytest.fixture
def boot(member):
    FlavorFactory(flavorid="1")
    image = ImageFactory(owner=member.project)

    def boot(networks, version="2.1"):
        server = {"name": "vm", "imageRef": str(image.id), "flavorRef": "1", "networks": networks}
        return member.client.post(f"{BASE}/servers", {"server": server}, format="json", **v(version))

    return boot


def test_server_on_the_network_by_uuid(member, boot):
    network_id = member.client.get(f"{BASE}/os-networks").json()["networks"][0]["id"]
    response = boot([{"uuid": network_id}])
    assert response.status_code == 202, response.content
    assert Instance.objects.get(uuid=response.json()["server"]["id"]).networks == "auto"
    assert boot([{"uuid": network_id}], "2.37").status_code == 202


@pytest.mark.parametrize(
    "networks, words",
    [
        ([{"uuid": "3b4f1c2e-0000-4000-8000-000000000000"}], "could not be found"),
        ([{"port": "3b4f1c2e-0000-4000-8000-000000000000"}], "could not be found"),
        (["x"], "must be an object"),
        ([{"uuid": "x", "bogus": 1}], "bogus"),
    ],
)
def test_other_networks_are_400(boot, networks, words):
    response = boot(networks)
    assert response.status_code == 400
    assert words in response.json()["badRequest"]["message"]


def test_the_network_twice_is_400(member, boot):
    network_id = member.client.get(f"{BASE}/os-networks").json()["networks"][0]["id"]
    response = boot([{"uuid": network_id}, {"uuid": network_id}])
    assert response.status_code == 400
    assert "one NIC" in response.json()["badRequest"]["message"]
