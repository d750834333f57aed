"""Networks in the portal: the Networks page (list, create with a subnet, delete), networks on the launch
form, and an instance's network interfaces (list, attach, detach), all through the network controller's
services and scoped to the signed-in user's project."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.models import Instance, Network, Port, Role, Subnet
from portal.services import instance_ports
from portal.services import networks as network_services
from portal.services import ports as port_services

from .conftest import PortalUser
from .test_portal_forms import field_errors, launch

pytestmark = pytest.mark.integration


def make_network(project, name: str, cidr: str | None = None, **attrs) -> Network:
    is_admin = bool(attrs)  # shared, external and provider attributes are an admin's
    network = network_services.network_create(project=project, user_is_admin=is_admin, name=name, **attrs)
    if cidr:
        network_services.subnet_create(project=project, user_is_admin=is_admin, network=network, cidr=cidr)
    return network


def page_messages(response) -> list[str]:
    return [
        html.unescape(m) for m in re.findall(r'<li class="(?:error|success)">(.*?)</li>', response.content.decode())
    ]


def row_of(page: str, attribute: str, value) -> str:
    match = re.search(rf'<tr {attribute}="{value}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row {attribute}={value}"
    return match.group(1)


@pytest.fixture
def stranger(db):
    """A member of another project."""
    return PortalUser(Role.MEMBER)


@pytest.fixture
def nets(portal_member, stranger):
    """The member's own network, another project's shared one, its private one and an external one."""
    return {
        "own": make_network(portal_member.project, "own-net", "10.30.0.0/24"),
        "shared": make_network(stranger.project, "public-net", "10.31.0.0/24", shared=True),
        "private": make_network(stranger.project, "their-net", "10.32.0.0/24"),
        "external": make_network(stranger.project, "ext-net", None, external=True),
    }


def running(user, host, **fields) -> Instance:
    return user.instance(host=host, networks="none", **fields)


# --- the Networks page ----------------------------------------------------------------------------------


def test_the_networks_page_lists_the_projects_and_the_shared_networks(portal_member, stranger, nets):
    own, shared = nets["own"], nets["shared"]
    port_services.port_create(project=portal_member.project, user_is_admin=False, network=own)
    port_services.port_create(project=stranger.project, user_is_admin=False, network=shared)
    port_services.port_create(project=portal_member.project, user_is_admin=False, network=shared)

    response = portal_member.client.get("/networks/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<a href="/networks/" aria-current="page">Networks</a>' in page
    own_row = row_of(page, "data-network", own.pk)
    assert "own-net" in own_row and "<code>10.30.0.0/24</code>" in own_row and "gateway 10.30.0.1, DHCP on" in own_row
    assert 'data-ports="1"' in own_row  # the DHCP port is not counted
    assert f'action="/networks/{own.pk}/delete"' in own_row
    assert f'action="/networks/subnets/{own.subnets.get().pk}/delete"' in own_row
    shared_row = row_of(page, "data-network", f'{shared.pk}" data-shared="true')
    assert ">shared</span>" in shared_row and "10.31.0.0/24" in shared_row
    assert 'data-ports="1"' in shared_row  # of another project's network, only this project's ports
    assert "/delete" not in shared_row
    assert str(nets["private"].pk) not in page and str(nets["external"].pk) not in page
    assert 'id="network-create-form"' in page


def test_a_network_with_its_subnet_is_created_through_the_services(portal_member):
    data = {"name": "backend", "cidr": "10.40.0.0/24", "gateway_ip": "10.40.0.254", "enable_dhcp": "on",
            "dns_nameservers": "10.40.0.2, 10.40.0.3"}  # fmt: skip
    response = portal_member.client.post("/networks/", data)
    assert response.status_code == 302 and response["Location"] == "/networks/"
    network = Network.objects.get(name="backend")
    assert network.project == portal_member.project and network.network_type == "vxlan" and not network.shared
    subnet = network.subnets.get()
    assert (subnet.cidr, subnet.gateway_ip, subnet.enable_dhcp) == ("10.40.0.0/24", "10.40.0.254", True)
    assert subnet.dns_nameservers == ["10.40.0.2", "10.40.0.3"]
    assert Port.objects.filter(network=network, device_owner=Port.OWNER_DHCP).exists()  # subnet_create's work

    response = portal_member.client.post("/networks/", {"name": "quiet", "cidr": "10.41.0.5/24", "no_gateway": "on"})
    assert response.status_code == 302
    subnet = Subnet.objects.get(network__name="quiet")
    assert (subnet.cidr, subnet.gateway_ip, subnet.enable_dhcp) == ("10.41.0.0/24", None, False)
    assert not Port.objects.filter(network=subnet.network).exists()


def test_bad_network_input_is_shown_at_its_field_and_leaves_nothing(portal_member):
    response = portal_member.client.post("/networks/", {"name": " ", "cidr": "10.0.0.0/33", "dns_nameservers": "x"})
    assert response.status_code == 400
    page = response.content.decode()
    assert field_errors(page, "cidr") == ["10.0.0.0/33 is not an IP range such as 10.20.0.0/24."]
    assert field_errors(page, "dns_nameservers") == ["x is not an IPv4 address."]
    assert field_errors(page, "name")
    # The service's refusal (a gateway outside the subnet) is shown at the gateway, and the network that
    # was made before the subnet was refused is gone with it.
    response = portal_member.client.post("/networks/", {"name": "n", "cidr": "10.42.0.0/24", "gateway_ip": "10.9.9.9"})
    assert response.status_code == 400
    assert "conflicts with the subnet 10.42.0.0/24" in field_errors(response.content.decode(), "gateway_ip")[0]
    make_network(portal_member.project, "first", "10.43.0.0/24")
    response = portal_member.client.post("/networks/", {"name": "v6", "cidr": "fd00::/64"})
    assert field_errors(response.content.decode(), "cidr") == ["Only IPv4 subnets can be made here."]
    assert list(Network.objects.values_list("name", flat=True)) == ["first"]


def test_deleting_networks_and_subnets(portal_member, stranger, nets):
    own = nets["own"]
    port = port_services.port_create(project=portal_member.project, user_is_admin=False, network=own)
    response = portal_member.client.post(f"/networks/{own.pk}/delete", follow=True)
    assert page_messages(response) == [
        "Network own-net still has ports (instances or ports on it): detach or delete them first."
    ]
    subnet = own.subnets.get()
    response = portal_member.client.post(f"/networks/subnets/{subnet.pk}/delete", follow=True)
    in_use = (
        f"Unable to complete operation on subnet {subnet.pk}: One or more ports have an IP allocation from this subnet."
    )
    assert page_messages(response) == [in_use]
    port_services.port_delete(port=port)
    response = portal_member.client.post(f"/networks/subnets/{subnet.pk}/delete", follow=True)
    assert (
        page_messages(response) == ["Deleted subnet 10.30.0.0/24."] and not Subnet.objects.filter(pk=subnet.pk).exists()
    )
    response = portal_member.client.post(f"/networks/{own.pk}/delete", follow=True)
    assert page_messages(response) == ["Deleted network own-net."] and not Network.objects.filter(pk=own.pk).exists()

    # Another project's: its private network and subnet are not there; its shared one cannot be deleted.
    private, shared = nets["private"], nets["shared"]
    assert portal_member.client.post(f"/networks/{private.pk}/delete").status_code == 404
    assert portal_member.client.post(f"/networks/subnets/{private.subnets.get().pk}/delete").status_code == 404
    response = portal_member.client.post(f"/networks/{shared.pk}/delete", follow=True)
    assert page_messages(response) == ["Network public-net belongs to another project."]
    response = portal_member.client.post(f"/networks/subnets/{shared.subnets.get().pk}/delete", follow=True)
    assert page_messages(response) == ["Subnet 10.31.0.0/24 belongs to another project."]
    assert Network.objects.filter(pk__in=[private.pk, shared.pk]).count() == 2
    assert Subnet.objects.filter(network__in=[private, shared]).count() == 2
    assert portal_member.client.get("/networks/00000000-0000-0000-0000-000000000000/delete").status_code == 405


def test_readers_see_networks_but_cannot_act(portal_reader, portal_member, nets):
    own = nets["own"]
    page = portal_reader.client.get("/networks/").content.decode()
    assert "own-net" in page and "/delete" not in page and 'id="network-create-form"' not in page
    response = portal_reader.client.post("/networks/", {"name": "nope", "cidr": "10.50.0.0/24"}, follow=True)
    assert page_messages(response) == ["Your role in this project is read-only. You cannot create networks."]
    response = portal_reader.client.post(f"/networks/{own.pk}/delete", follow=True)
    assert page_messages(response) == ["Your role in this project is read-only."]
    response = portal_reader.client.post(f"/networks/subnets/{own.subnets.get().pk}/delete", follow=True)
    assert page_messages(response) == ["Your role in this project is read-only."]
    assert list(Network.objects.filter(project=portal_member.project)) == [own] and own.subnets.count() == 1


def test_the_network_forms_need_the_csrf_token(portal_member, host, nets):
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_member.user)
    own = nets["own"]
    instance = running(portal_member, host)
    port = instance_ports.interface_attach(ctx=_ctx(portal_member), instance=instance, network_id=str(own.pk))
    assert client.post("/networks/", {"name": "x", "cidr": "10.60.0.0/24"}).status_code == 403
    assert client.post(f"/networks/{own.pk}/delete").status_code == 403
    assert client.post(f"/networks/subnets/{own.subnets.get().pk}/delete").status_code == 403
    assert client.post(f"/instances/{instance.uuid}/interfaces/attach", {"network": str(own.pk)}).status_code == 403
    assert client.post(f"/instances/{instance.uuid}/interfaces/{port.pk}/detach").status_code == 403
    assert Network.objects.filter(project=portal_member.project).count() == 1
    assert list(instance_ports.instance_ports(instance)) == [port]


def _ctx(user):
    from portal.auth.context import resolve_context

    return resolve_context(user.user, str(user.project.pk))


# --- the launch form ------------------------------------------------------------------------------------


def test_the_launch_form_offers_the_projects_usable_networks(portal_member, flavor, image, nets):
    page = portal_member.client.get("/instances/launch/").content.decode()
    select = re.search(r'<select name="networks"[^>]*multiple[^>]*>(.*?)</select>', page, re.S)
    assert select, "no multi-select of networks"
    options = re.findall(r'<option value="([0-9a-f-]{36})">([^<]*)</option>', select.group(1))
    assert options == [(str(nets["own"].pk), "own-net"), (str(nets["shared"].pk), "public-net (shared)")]
    assert '<option value="auto" selected>Default network (outbound only, user-mode)</option>' in page


def test_an_admin_is_offered_the_same_networks_as_a_member(portal_admin, stranger, flavor, image):
    own = make_network(portal_admin.project, "admins-net", "10.33.0.0/24")
    shared = make_network(stranger.project, "public-net", "10.31.0.0/24", shared=True)
    make_network(stranger.project, "their-net", "10.32.0.0/24")
    page = portal_admin.client.get("/instances/launch/").content.decode()
    select = re.search(r'<select name="networks"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert re.findall(r'<option value="([0-9a-f-]{36})">', select) == [str(own.pk), str(shared.pk)]


def test_launching_on_chosen_networks_gives_the_server_a_port_on_each(portal_member, flavor, image, nets):
    own, shared = nets["own"], nets["shared"]
    response = launch(portal_member, image=str(image.pk), network="chosen", networks=[str(shared.pk), str(own.pk)])
    assert response.status_code == 302, field_errors(response.content.decode(), "networks")
    instance = Instance.objects.get(project=portal_member.project)
    ports = list(instance_ports.instance_ports(instance))
    assert [p.network_id for p in ports] == [shared.pk, own.pk] and instance.networks == "ports"
    assert all(p.project_id == portal_member.project.pk and p.auto_delete for p in ports)

    response = launch(portal_member, image=str(image.pk), network="chosen")
    assert field_errors(response.content.decode(), "networks") == [
        "Choose at least one network, or another network option."
    ]
    response = launch(portal_member, image=str(image.pk), network="none", networks=[str(own.pk)])
    assert field_errors(response.content.decode(), "networks") == [
        "To use the networks selected, choose “The networks chosen below” above."
    ]
    response = launch(portal_member, image=str(image.pk), network="chosen", networks=[str(nets["private"].pk)])
    assert "Select a valid choice" in field_errors(response.content.decode(), "networks")[0]
    assert Instance.objects.count() == 1


def test_a_network_request_refused_is_a_form_error(portal_member, flavor, image, settings):
    full = make_network(portal_member.project, "tiny")
    network_services.subnet_create(
        project=portal_member.project, user_is_admin=False, network=full, cidr="10.70.0.0/29",
        allocation_pools=[{"start": "10.70.0.5", "end": "10.70.0.5"}], enable_dhcp=False,
    )  # fmt: skip
    port_services.port_create(project=portal_member.project, user_is_admin=False, network=full)
    response = launch(portal_member, image=str(image.pk), network="chosen", networks=[str(full.pk)])
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "networks") == [
        f"No more IP addresses available on network {full.pk}."
    ]

    # With the cloud's own networks, "automatic" among several networks is for the user to settle.
    settings.CLOUD = {**settings.CLOUD, "NETWORK": {**settings.CLOUD["NETWORK"], "mode": "tenant"}}
    make_network(portal_member.project, "second", "10.71.0.0/24")
    response = launch(portal_member, image=str(image.pk), network="auto")
    assert field_errors(response.content.decode(), "network") == [
        "Multiple possible networks found, use a Network ID to be more specific."
    ]
    assert Instance.objects.count() == 0


# --- an instance's network interfaces --------------------------------------------------------------------


def test_the_instance_page_lists_its_interfaces_and_attaches_and_detaches(portal_member, host, nets):
    own, shared = nets["own"], nets["shared"]
    instance = running(portal_member, host)
    url = f"/instances/{instance.uuid}/"
    page = portal_member.client.get(url).content.decode()
    assert "Network interfaces" in page and "No network interfaces." in page
    assert re.search(
        rf'<option value="{own.pk}">own-net</option>\s*<option value="{shared.pk}">public-net \(shared\)', page
    )
    assert str(nets["private"].pk) not in page

    at_77 = {"network": str(own.pk), "fixed_ip": "10.30.0.77"}
    response = portal_member.client.post(f"{url}interfaces/attach", at_77, follow=True)
    assert page_messages(response) == ["Attaching an interface on own-net (10.30.0.77)."]
    response = portal_member.client.post(f"{url}interfaces/attach", {"network": str(shared.pk)}, follow=True)
    first, second = instance_ports.instance_ports(instance)
    assert (first.network_id, second.network_id) == (own.pk, shared.pk)
    page = response.content.decode()
    row = row_of(page, "data-port", first.pk)
    assert "own-net" in row and "10.30.0.77" in row and f"<code>{first.mac_address}</code>" in row and "DOWN" in row
    assert f'action="/instances/{instance.uuid}/interfaces/{second.pk}/detach"' in row_of(page, "data-port", second.pk)
    assert [a.action for a in instance.actions.all()].count("attach_interface") == 2

    # The services' refusals are messages: an address taken, an address off the network.
    response = portal_member.client.post(f"{url}interfaces/attach", at_77, follow=True)
    assert "10.30.0.77" in page_messages(response)[0] and len(instance_ports.instance_ports(instance)) == 2
    response = portal_member.client.post(f"{url}interfaces/attach", {"network": str(nets["private"].pk)}, follow=True)
    assert "Select a valid choice" in page_messages(response)[0]

    response = portal_member.client.post(f"{url}interfaces/{first.pk}/detach", follow=True)
    assert page_messages(response) == [f"Detaching interface {first.pk} from {instance.name}."]
    assert list(instance_ports.instance_ports(instance)) == [second]
    assert not Port.objects.filter(pk=first.pk).exists()  # made for the server, gone with the interface


def test_interfaces_of_hidden_instances_and_ports_are_not_found(portal_member, stranger, host, nets):
    theirs = running(stranger, host)
    their_port = instance_ports.interface_attach(
        ctx=_ctx(stranger), instance=theirs, network_id=str(nets["private"].pk)
    )
    mine = running(portal_member, host)
    my_port = instance_ports.interface_attach(ctx=_ctx(portal_member), instance=mine, network_id=str(nets["own"].pk))
    client = portal_member.client
    assert client.get(f"/instances/{theirs.uuid}/").status_code == 404
    assert (
        client.post(f"/instances/{theirs.uuid}/interfaces/attach", {"network": str(nets["own"].pk)}).status_code == 404
    )
    assert client.post(f"/instances/{theirs.uuid}/interfaces/{their_port.pk}/detach").status_code == 404
    # Their port named on my instance is not one of its interfaces.
    assert client.post(f"/instances/{mine.uuid}/interfaces/{their_port.pk}/detach").status_code == 404
    assert list(instance_ports.instance_ports(theirs)) == [their_port]
    assert list(instance_ports.instance_ports(mine)) == [my_port]


def test_readers_and_refused_states_cannot_change_interfaces(portal_member, portal_reader, host, nets):
    own = nets["own"]
    instance = running(portal_member, host)
    port = instance_ports.interface_attach(ctx=_ctx(portal_member), instance=instance, network_id=str(own.pk))
    url = f"/instances/{instance.uuid}/"
    page = portal_reader.client.get(url).content.decode()
    assert str(port.pk) in page and "interface-attach-form" not in page and "/detach" not in page
    for path, data in (
        (f"{url}interfaces/attach", {"network": str(own.pk)}),
        (f"{url}interfaces/{port.pk}/detach", {}),
    ):
        response = portal_reader.client.post(path, data, follow=True)
        assert page_messages(response) == ["Your role in this project is read-only."]
    assert list(instance_ports.instance_ports(instance)) == [port]

    Instance.objects.filter(pk=instance.pk).update(task_state="rebooting")
    page = portal_member.client.get(url).content.decode()
    assert "interface-attach-form" not in page and "/detach" not in page
    response = portal_member.client.post(f"{url}interfaces/{port.pk}/detach", follow=True)
    refused = f"Cannot 'detach_interface' instance {instance.uuid} while it is in task_state rebooting"
    assert page_messages(response) == [refused]
    assert list(instance_ports.instance_ports(instance)) == [port]

    user_mode = portal_member.instance(host=host, networks="auto")
    page = portal_member.client.get(f"/instances/{user_mode.uuid}/").content.decode()
    assert 'id="user-mode-nic"' in page and "interface-attach-form" not in page
    attach = f"/instances/{user_mode.uuid}/interfaces/attach"
    response = portal_member.client.post(attach, {"network": str(own.pk)}, follow=True)
    assert page_messages(response) == ["This server's network is QEMU user-mode networking; it takes no ports."]


def test_the_networks_page_takes_the_same_queries_for_any_number_of_networks(portal_member):
    counts = []
    for number in range(3):
        for extra in range(1 if number == 0 else 4):
            network = make_network(portal_member.project, f"n{number}-{extra}", f"10.{90 + number}.{extra}.0/24")
            port_services.port_create(project=portal_member.project, user_is_admin=False, network=network)
        with CaptureQueriesContext(connection) as queries:
            page = portal_member.client.get("/networks/").content.decode()
        counts.append(len(queries))
        assert page.count("<tr data-network=") == Network.objects.count()
    assert len(set(counts)) == 1, counts
