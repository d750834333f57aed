"""The network controller in the operators' admin: provider networks made and changed through the services,
subnets, ports to look at and delete, what each host applied, and the network quotas."""

from __future__ import annotations

import html
import re

import pytest
from django.utils import timezone

from portal.models import ComputeHost, HostNetworkState, Network, Port, Project, QuotaLimit, Subnet
from portal.services import networks as network_services
from portal.services import ports as port_services
from portal.services.network_errors import OverQuota

pytestmark = pytest.mark.integration


@pytest.fixture
def project(db):
    return Project.objects.create(name="operators")


def network_form(project, **fields):
    data = {
        "project": str(project.pk), "name": "public", "description": "", "network_type": "flat",
        "physical_network": "physnet1", "segmentation_id": "", "mtu": "", "shared": "on", "external": "",
        "admin_state_up": "on", "port_security_enabled": "on",
    }  # fmt: skip
    data.update(fields)
    return data


def errors_on(page: str) -> str:
    return html.unescape(page)


def test_an_admin_creates_a_flat_shared_provider_network(admin_client, project):
    response = admin_client.post("/admin/portal/network/add/", network_form(project))
    assert response.status_code == 302, response.content.decode()[-3000:]
    network = Network.objects.get(name="public")
    assert (network.network_type, network.physical_network, network.segmentation_id) == ("flat", "physnet1", None)
    assert network.shared and not network.external and network.project == project
    assert network.mtu == 1500  # the flat type's largest, since none was given

    # A second flat network on the same physical network: the service's refusal, at the field.
    again = admin_client.post("/admin/portal/network/add/", network_form(project, name="again"))
    assert again.status_code == 200
    refused = errors_on(again.content.decode())
    assert "Unable to create the flat network. Physical network physnet1 is in use." in refused
    assert Network.objects.count() == 1
    # A flat network needs its physical network.
    bare = admin_client.post("/admin/portal/network/add/", network_form(project, name="bare", physical_network=""))
    assert bare.status_code == 200
    assert "physical_network required for flat provider network" in errors_on(bare.content.decode())

    listing = admin_client.get("/admin/portal/network/").content.decode()
    assert "public" in listing and "physnet1" in listing


def test_vxlan_networks_get_a_vni_and_change_only_what_may_change(admin_client, project):
    response = admin_client.post(
        "/admin/portal/network/add/",
        network_form(project, name="overlay", network_type="vxlan", physical_network="", shared=""),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    overlay = Network.objects.get(name="overlay")
    assert overlay.segmentation_id == 1000 and overlay.mtu == 1450  # the range's lowest VNI; 50 bytes of VXLAN
    taken = admin_client.post(
        "/admin/portal/network/add/",
        network_form(project, name="clash", network_type="vxlan", physical_network="", segmentation_id="1000"),
    )
    assert taken.status_code == 200 and Network.objects.count() == 1
    assert "The tunnel ID 1000 is in use." in errors_on(taken.content.decode())

    page = admin_client.get(f"/admin/portal/network/{overlay.pk}/change/").content.decode()
    assert 'name="network_type"' not in page and 'name="segmentation_id"' not in page  # fixed once made
    change = {"name": "overlay-2", "description": "d", "mtu": "1400", "shared": "on", "admin_state_up": "on",
              "port_security_enabled": "on"}  # fmt: skip
    response = admin_client.post(f"/admin/portal/network/{overlay.pk}/change/", change)
    assert response.status_code == 302, response.content.decode()[-3000:]
    overlay.refresh_from_db()
    assert (overlay.name, overlay.mtu, overlay.shared, overlay.revision_number) == ("overlay-2", 1400, True, 1)
    too_big = admin_client.post(f"/admin/portal/network/{overlay.pk}/change/", {**change, "mtu": "9000"})
    assert too_big.status_code == 200 and "must be between 68 and 1450" in errors_on(too_big.content.decode())
    overlay.refresh_from_db()
    assert overlay.mtu == 1400


def test_deleting_a_network_with_ports_is_refused_with_a_message(admin_client, project):
    network = network_services.network_create(project=project, user_is_admin=True, name="busy")
    network_services.subnet_create(project=project, user_is_admin=True, network=network, cidr="10.80.0.0/24")
    port = port_services.port_create(project=project, user_is_admin=True, network=network)

    response = admin_client.post(f"/admin/portal/network/{network.pk}/delete/", {"post": "yes"}, follow=True)
    page = errors_on(response.content.decode())
    assert (
        f"Unable to complete operation on network {network.pk}" in page
        and Network.objects.filter(pk=network.pk).exists()
    )
    assert "delete_selected" not in admin_client.get("/admin/portal/network/").content.decode()

    subnet = network.subnets.get()
    response = admin_client.post(f"/admin/portal/subnet/{subnet.pk}/delete/", {"post": "yes"}, follow=True)
    assert "One or more ports have an IP allocation" in errors_on(response.content.decode())

    # The port: shown with its addresses and binding, deleted through the service; then the network goes.
    address = port.fixed_ips.get().ip_address
    page = admin_client.get(f"/admin/portal/port/{port.pk}/change/").content.decode()
    assert address in page and port.mac_address in page
    assert re.search(r'field-status">.*?<div class="readonly">Down</div>', page, re.S)
    assert admin_client.post(f"/admin/portal/port/{port.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Port.objects.filter(pk=port.pk).exists()
    dhcp = Port.objects.get(network=network, device_owner=Port.OWNER_DHCP)
    assert admin_client.post(f"/admin/portal/port/{dhcp.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"/admin/portal/network/{network.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Network.objects.filter(pk=network.pk).exists() and not Port.objects.exists()


def test_subnets_are_made_and_changed_through_the_services(admin_client, project):
    network = network_services.network_create(project=project, user_is_admin=True, name="n")
    data = {"network": str(network.pk), "name": "s", "description": "", "cidr": "10.81.0.0/24", "gateway_ip": "",
            "enable_dhcp": "on", "dns_servers": "10.81.0.2"}  # fmt: skip
    response = admin_client.post("/admin/portal/subnet/add/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    subnet = Subnet.objects.get(network=network)
    assert (subnet.gateway_ip, subnet.dns_nameservers, subnet.project) == ("10.81.0.1", ["10.81.0.2"], project)
    assert Port.objects.filter(network=network, device_owner=Port.OWNER_DHCP).exists()
    overlap = admin_client.post("/admin/portal/subnet/add/", {**data, "cidr": "10.81.0.128/25"})
    assert overlap.status_code == 200 and "overlaps with another subnet" in errors_on(overlap.content.decode())

    change = {"name": "s2", "description": "", "gateway_ip": "10.81.0.1", "enable_dhcp": "", "dns_servers": ""}
    response = admin_client.post(f"/admin/portal/subnet/{subnet.pk}/change/", change)
    assert response.status_code == 302, response.content.decode()[-3000:]
    subnet.refresh_from_db()
    assert (subnet.name, subnet.enable_dhcp, subnet.dns_nameservers, subnet.gateway_ip) == (
        "s2",
        False,
        [],
        "10.81.0.1",
    )
    assert not Port.objects.filter(network=network).exists()  # no DHCP, no DHCP port


def test_host_network_states_are_shown_read_only(admin_client):
    host = ComputeHost.objects.create(name="hv-net", vcpus=4, memory_mb=4096, disk_gb=10)
    state = HostNetworkState.objects.create(
        host=host, generation=7, applied_generation=5, applied_at=timezone.now(),
        drift=["bridge brq1234 was missing"], error="dnsmasq would not start",
    )  # fmt: skip
    listing = admin_client.get("/admin/portal/hostnetworkstate/").content.decode()
    assert "hv-net" in listing and "bridge brq1234 was missing" in listing and "dnsmasq would not start" in listing
    assert 'alt="False"' in listing  # not in sync: 5 of 7 applied
    page = admin_client.get(f"/admin/portal/hostnetworkstate/{state.pk}/change/").content.decode()
    assert 'name="generation"' not in page and "Save" not in page
    assert admin_client.get("/admin/portal/hostnetworkstate/add/").status_code == 403


def test_network_quotas_are_set_in_the_quota_admin_and_enforced(admin_client, project):
    response = admin_client.post(
        "/admin/portal/quotalimit/add/", {"project": project.pk, "user": "", "resource": "network", "hard_limit": "1"}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    for resource in ("subnet", "port"):
        response = admin_client.post(
            "/admin/portal/quotalimit/add/",
            {"project": project.pk, "user": "", "resource": resource, "hard_limit": "3"},
        )
        assert response.status_code == 302
    assert dict(QuotaLimit.objects.filter(project=project).values_list("resource", "hard_limit")) == {
        "network": 1, "subnet": 3, "port": 3,
    }  # fmt: skip
    network_services.network_create(project=project, user_is_admin=False, name="one")
    with pytest.raises(OverQuota):
        network_services.network_create(project=project, user_is_admin=False, name="two")
    # The admin's own network creation counts against the project too.
    response = admin_client.post("/admin/portal/network/add/", network_form(project, name="third"))
    assert response.status_code == 200
    assert "Quota exceeded for resources: ['network']." in errors_on(response.content.decode())
    assert Network.objects.filter(project=project).count() == 1
