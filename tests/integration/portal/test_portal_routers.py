"""Routers and floating IPs in the portal: the Routers page (list; create with or without a gateway; set and
clear the gateway; add and remove interfaces; delete), the Floating IPs page (list; allocate; associate
with an instance's address; disassociate; release) and an instance's floating IPs, all through the router
and floating IP services and scoped to the signed-in user's project."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.models import FloatingIP, Port, Role, Router
from portal.services import floating_ips as floating_ip_services
from portal.services import instance_ports
from portal.services import networks as network_services
from portal.services import routers as router_services

from .conftest import PortalUser
from .test_portal_forms import field_errors
from .test_portal_networks import _ctx, make_network, page_messages, row_of, running

pytestmark = pytest.mark.integration

READ_ONLY = "Your role in this project is read-only."


def error_messages(response) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<li class="error">(.*?)</li>', response.content.decode())]


@pytest.fixture
def stranger(db):
    """A member of another project."""
    return PortalUser(Role.MEMBER)


@pytest.fixture
def nets(portal_member, stranger):
    """The member's own network, another project's shared one and private one, and an external network."""
    return {
        "own": make_network(portal_member.project, "own-net", "10.30.0.0/24"),
        "shared": make_network(stranger.project, "public-net", "10.31.0.0/24", shared=True),
        "private": make_network(stranger.project, "their-net", "10.32.0.0/24"),
        "external": make_network(stranger.project, "ext-net", "203.0.113.0/24", external=True),
    }


def make_router(user, name: str, *, gateway=None, subnets=()) -> Router:
    router = router_services.router_create(
        project=user.project,
        user_is_admin=False,
        name=name,
        external_gateway_info={"network_id": str(gateway.pk)} if gateway is not None else None,
    )
    for subnet in subnets:
        router_services.router_add_interface(
            router=router, project=user.project, user_is_admin=False, subnet_id=str(subnet.pk)
        )
    return router


def interfaces_of(router: Router) -> list[Port]:
    return list(Port.objects.filter(device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_INTERFACE))


def allocate(user, network, **fields) -> FloatingIP:
    return floating_ip_services.floating_ip_create(
        project=user.project, user_is_admin=False, floating_network=network, **fields
    )


def with_address(user, host, network, **fields):
    """A running instance of ``user`` with a port on ``network``, and that port."""
    instance = running(user, host, **fields)
    port = instance_ports.interface_attach(ctx=_ctx(user), instance=instance, network_id=str(network.pk))
    return instance, port


def fixed_ip(port: Port) -> str:
    return port.fixed_ips.get().ip_address


# --- the Routers page -----------------------------------------------------------------------------------


def test_the_routers_page_lists_the_projects_routers(portal_member, stranger, nets, host):
    own_subnet = nets["own"].subnets.get()
    router = make_router(portal_member, "edge", gateway=nets["external"], subnets=[own_subnet])
    bare = make_router(portal_member, "bare")
    theirs = make_router(stranger, "their-router", subnets=[nets["private"].subnets.get()])
    Router.objects.filter(pk=router.pk).update(host=host)  # where it runs is not the project's business

    response = portal_member.client.get("/routers/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<a href="/routers/" aria-current="page">Routers</a>' in page
    assert re.search(r'<a href="/floating-ips/"\s*>Floating IPs</a>', page)
    row = row_of(page, "data-router", router.pk)
    assert "edge" in row and f'data-gateway="{nets["external"].pk}"' in row and "ext-net" in row
    gateway_ip = Port.objects.get(device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_GATEWAY)
    assert gateway_ip.fixed_ips.get().ip_address in row
    assert '<span class="status">ACTIVE</span>' in row
    (interface,) = interfaces_of(router)
    assert f'data-interface="{interface.pk}"' in row
    assert "<code>10.30.0.1</code> on <code>10.30.0.0/24</code>" in row
    assert f'action="/routers/{router.pk}/interfaces/{interface.pk}/remove"' in row
    assert host.name not in page
    # The interface form offers the subnets the router is not on yet: the shared one, not its own.
    add_form = re.search(r'<form[^>]*class="actions interface-add-form".*?</form>', row, re.S).group(0)
    assert str(nets["shared"].subnets.get().pk) in add_form and str(own_subnet.pk) not in add_form
    assert str(nets["private"].subnets.get().pk) not in page
    assert str(nets["external"].subnets.get().pk) not in add_form
    bare_row = row_of(page, "data-router", bare.pk)
    assert 'data-gateway=""' in bare_row and "Clear gateway" not in bare_row and str(own_subnet.pk) in bare_row
    assert "their-router" not in page and str(theirs.pk) not in page
    assert 'id="router-create-form"' in page


def test_routers_are_created_and_deleted_through_the_services(portal_member, nets):
    external = nets["external"]
    response = portal_member.client.post("/routers/", {"name": "edge", "external_network": str(external.pk)})
    assert response.status_code == 302 and response["Location"] == "/routers/"
    assert page_messages(portal_member.client.get("/routers/")) == ["Created router edge."]
    router = Router.objects.get(name="edge")
    assert router.project == portal_member.project and router.external_network == external
    assert Port.objects.filter(device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_GATEWAY).exists()
    response = portal_member.client.post("/routers/", {"name": "inside", "external_network": ""}, follow=True)
    assert page_messages(response) == ["Created router inside."]
    assert Router.objects.get(name="inside").external_network is None

    # What the form refuses is shown at its field: no name, a network that is not external.
    response = portal_member.client.post("/routers/", {"name": ""})
    assert response.status_code == 400 and field_errors(response.content.decode(), "name")
    response = portal_member.client.post("/routers/", {"name": "x", "external_network": str(nets["own"].pk)})
    assert response.status_code == 400
    assert "Select a valid choice" in field_errors(response.content.decode(), "external_network")[0]
    assert Router.objects.count() == 2

    response = portal_member.client.post(f"/routers/{router.pk}/delete", follow=True)
    assert page_messages(response) == ["Deleted router edge."]
    assert not Router.objects.filter(pk=router.pk).exists()
    assert not Port.objects.filter(device_id=str(router.pk)).exists()  # its gateway port went with it


def test_the_gateway_is_set_and_cleared(portal_member, nets):
    router = make_router(portal_member, "edge")
    url = f"/routers/{router.pk}/gateway"
    response = portal_member.client.post(url, {"network": str(nets["external"].pk)}, follow=True)
    assert page_messages(response) == ["Set the gateway of router edge to ext-net."]
    router.refresh_from_db()
    assert router.external_network == nets["external"]
    page = response.content.decode()
    assert f'<option value="{nets["external"].pk}" selected>ext-net</option>' in row_of(page, "data-router", router.pk)

    response = portal_member.client.post(url, {"network": str(nets["shared"].pk)}, follow=True)
    assert error_messages(response)[0].startswith("External network: Select a valid choice")
    router.refresh_from_db()
    assert router.external_network == nets["external"]

    response = portal_member.client.post(url, {"network": ""}, follow=True)
    assert page_messages(response) == ["Cleared the gateway of router edge."]
    router.refresh_from_db()
    assert router.external_network is None
    assert not Port.objects.filter(device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_GATEWAY).exists()


def test_interfaces_are_added_and_removed_and_refusals_are_messages(portal_member, nets):
    router = make_router(portal_member, "edge")
    own_subnet = nets["own"].subnets.get()
    add = f"/routers/{router.pk}/interfaces/add"
    response = portal_member.client.post(add, {"subnet": str(own_subnet.pk)}, follow=True)
    assert page_messages(response) == ["Added an interface on own-net: 10.30.0.0/24 to router edge."]
    (interface,) = interfaces_of(router)
    assert fixed_ip(interface) == "10.30.0.1"  # the subnet's gateway address

    # The same subnet again: the service's refusal, as a message; nothing more made.
    response = portal_member.client.post(add, {"subnet": str(own_subnet.pk)}, follow=True)
    assert error_messages(response) == [f"Bad router request: Router already has a port on subnet {own_subnet.pk}."]
    # A subnet without a gateway address cannot take a router.
    quiet = make_network(portal_member.project, "quiet")
    quiet_subnet = network_services.subnet_create(
        project=portal_member.project, user_is_admin=False, network=quiet, cidr="10.33.0.0/24", gateway_ip=None
    )
    response = portal_member.client.post(add, {"subnet": str(quiet_subnet.pk)}, follow=True)
    assert error_messages(response) == [
        f"Bad router request: Subnet {quiet_subnet.pk} for router interface must have a gateway IP."
    ]
    # Another project's private subnet is no choice.
    response = portal_member.client.post(add, {"subnet": str(nets["private"].subnets.get().pk)}, follow=True)
    assert error_messages(response)[0].startswith("Subnet: Select a valid choice")
    assert interfaces_of(router) == [interface]

    # A router with interfaces is not deleted.
    response = portal_member.client.post(f"/routers/{router.pk}/delete", follow=True)
    assert error_messages(response) == ["Router edge still has interfaces: remove them first."]
    assert Router.objects.filter(pk=router.pk).exists()

    response = portal_member.client.post(f"/routers/{router.pk}/interfaces/{interface.pk}/remove", follow=True)
    assert page_messages(response) == ["Removed the interface on 10.30.0.0/24 from router edge."]
    assert interfaces_of(router) == [] and not Port.objects.filter(pk=interface.pk).exists()
    # A shared network's subnet takes an interface of the project's router too.
    response = portal_member.client.post(add, {"subnet": str(nets["shared"].subnets.get().pk)}, follow=True)
    assert page_messages(response) == ["Added an interface on public-net: 10.31.0.0/24 to router edge."]
    (shared_interface,) = interfaces_of(router)
    assert shared_interface.project == portal_member.project and fixed_ip(shared_interface) == "10.31.0.1"
    response = portal_member.client.post(f"/routers/{router.pk}/interfaces/{shared_interface.pk}/remove", follow=True)
    assert page_messages(response) == ["Removed the interface on 10.31.0.0/24 from router edge."]
    response = portal_member.client.post(f"/routers/{router.pk}/delete", follow=True)
    assert page_messages(response) == ["Deleted router edge."]


def test_what_floating_ips_go_through_is_kept_with_a_message(portal_member, nets, host):
    own_subnet = nets["own"].subnets.get()
    router = make_router(portal_member, "edge", gateway=nets["external"], subnets=[own_subnet])
    (interface,) = interfaces_of(router)
    instance, port = with_address(portal_member, host, nets["own"])
    floating_ip = allocate(portal_member, nets["external"], port=port)
    assert floating_ip.router == router

    response = portal_member.client.post(f"/routers/{router.pk}/gateway", {"network": ""}, follow=True)
    assert error_messages(response) == [
        "Floating IPs go out through the gateway of router edge: disassociate them first."
    ]
    response = portal_member.client.post(f"/routers/{router.pk}/interfaces/{interface.pk}/remove", follow=True)
    assert error_messages(response) == ["Floating IPs reach 10.30.0.0/24 through router edge: disassociate them first."]
    router.refresh_from_db()
    assert router.external_network == nets["external"] and interfaces_of(router) == [interface]

    response = portal_member.client.post(f"/floating-ips/{floating_ip.pk}/disassociate", follow=True)
    assert page_messages(response) == [f"Disassociated floating IP {floating_ip.floating_ip_address}."]
    response = portal_member.client.post(f"/routers/{router.pk}/interfaces/{interface.pk}/remove", follow=True)
    assert page_messages(response) == ["Removed the interface on 10.30.0.0/24 from router edge."]


def test_another_projects_routers_are_not_found(portal_member, stranger, nets):
    their_subnet = nets["private"].subnets.get()
    theirs = make_router(stranger, "theirs", subnets=[their_subnet])
    (their_interface,) = interfaces_of(theirs)
    mine = make_router(portal_member, "mine")
    client = portal_member.client
    assert client.post(f"/routers/{theirs.pk}/delete").status_code == 404
    assert client.post(f"/routers/{theirs.pk}/gateway", {"network": str(nets["external"].pk)}).status_code == 404
    own_subnet = str(nets["own"].subnets.get().pk)
    assert client.post(f"/routers/{theirs.pk}/interfaces/add", {"subnet": own_subnet}).status_code == 404
    assert client.post(f"/routers/{theirs.pk}/interfaces/{their_interface.pk}/remove").status_code == 404
    # Their interface named on my router is not one of its interfaces.
    assert client.post(f"/routers/{mine.pk}/interfaces/{their_interface.pk}/remove").status_code == 404
    assert client.post("/routers/not-a-uuid/delete").status_code == 404
    theirs.refresh_from_db()
    assert theirs.external_network is None and interfaces_of(theirs) == [their_interface]


def test_an_admin_in_the_portal_sees_only_the_projects_routers(portal_admin, stranger, nets):
    theirs = make_router(stranger, "theirs")
    page = portal_admin.client.get("/routers/").content.decode()
    assert str(theirs.pk) not in page
    assert portal_admin.client.post(f"/routers/{theirs.pk}/delete").status_code == 404
    assert Router.objects.filter(pk=theirs.pk).exists()


def test_readers_see_routers_but_cannot_act(portal_reader, portal_member, nets):
    own_subnet = nets["own"].subnets.get()
    router = make_router(portal_member, "edge", gateway=nets["external"], subnets=[own_subnet])
    (interface,) = interfaces_of(router)
    page = portal_reader.client.get("/routers/").content.decode()
    assert "edge" in page and "<form" not in page.split("<main>", 1)[1]
    for path, data in (
        ("/routers/", {"name": "nope"}),
        (f"/routers/{router.pk}/delete", {}),
        (f"/routers/{router.pk}/gateway", {"network": ""}),
        (f"/routers/{router.pk}/interfaces/add", {"subnet": str(nets["shared"].subnets.get().pk)}),
        (f"/routers/{router.pk}/interfaces/{interface.pk}/remove", {}),
    ):
        response = portal_reader.client.post(path, data, follow=True)
        assert error_messages(response)[0].startswith(READ_ONLY), path
    router.refresh_from_db()
    assert list(Router.objects.all()) == [router] and router.external_network == nets["external"]
    assert interfaces_of(router) == [interface]


def test_the_router_forms_need_the_csrf_token(portal_member, nets):
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_member.user)
    router = make_router(portal_member, "edge", subnets=[nets["own"].subnets.get()])
    (interface,) = interfaces_of(router)
    assert client.post("/routers/", {"name": "x"}).status_code == 403
    assert client.post(f"/routers/{router.pk}/delete").status_code == 403
    assert client.post(f"/routers/{router.pk}/gateway", {"network": str(nets["external"].pk)}).status_code == 403
    shared_subnet = str(nets["shared"].subnets.get().pk)
    assert client.post(f"/routers/{router.pk}/interfaces/add", {"subnet": shared_subnet}).status_code == 403
    assert client.post(f"/routers/{router.pk}/interfaces/{interface.pk}/remove").status_code == 403
    router.refresh_from_db()
    assert list(Router.objects.all()) == [router] and router.external_network is None
    assert interfaces_of(router) == [interface]
    page = client.get("/routers/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') == page.count("<form")


def test_the_routers_page_takes_the_same_queries_for_any_number_of_routers(portal_member, nets):
    counts = []
    for number in range(3):
        for extra in range(1 if number == 0 else 3):
            network = make_network(portal_member.project, f"n{number}-{extra}", f"10.{90 + number}.{extra}.0/24")
            make_router(portal_member, f"r{number}-{extra}", gateway=nets["external"], subnets=[network.subnets.get()])
        with CaptureQueriesContext(connection) as queries:
            page = portal_member.client.get("/routers/").content.decode()
        counts.append(len(queries))
        assert page.count("<tr data-router=") == Router.objects.count()
    assert len(set(counts)) == 1, counts


# --- the Floating IPs page ------------------------------------------------------------------------------


@pytest.fixture
def routed(portal_member, nets):
    """The member's router between its own network and the external one."""
    return make_router(portal_member, "edge", gateway=nets["external"], subnets=[nets["own"].subnets.get()])


def test_floating_ips_are_allocated_and_listed(portal_member, stranger, nets):
    external = nets["external"]
    theirs = allocate(stranger, external)
    response = portal_member.client.post("/floating-ips/", {"network": str(external.pk), "description": "web"})
    assert response.status_code == 302 and response["Location"] == "/floating-ips/"
    floating_ip = FloatingIP.objects.get(project=portal_member.project)
    assert floating_ip.floating_network == external and floating_ip.description == "web"
    assert floating_ip.port is None and floating_ip.status == FloatingIP.Status.DOWN

    response = portal_member.client.get("/floating-ips/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<a href="/floating-ips/" aria-current="page">Floating IPs</a>' in page
    row = row_of(page, "data-floating-ip", f'{floating_ip.pk}" data-status="DOWN')
    assert f"<code>{floating_ip.floating_ip_address}</code>" in row and "ext-net" in row and "not associated" in row
    assert f'action="/floating-ips/{floating_ip.pk}/delete"' in row
    assert theirs.floating_ip_address not in page and str(theirs.pk) not in page

    # Only external networks are offered; another network is refused at the field, and nothing is made.
    response = portal_member.client.post("/floating-ips/", {"network": str(nets["own"].pk)})
    assert response.status_code == 400
    assert "Select a valid choice" in field_errors(response.content.decode(), "network")[0]
    assert FloatingIP.objects.filter(project=portal_member.project).count() == 1


def test_an_external_network_without_addresses_is_a_refusal_at_its_field(portal_member, stranger):
    empty = make_network(stranger.project, "empty-ext", None, external=True)
    response = portal_member.client.post("/floating-ips/", {"network": str(empty.pk)})
    assert response.status_code == 400
    (refusal,) = field_errors(response.content.decode(), "network")
    assert refusal and "Select a valid choice" not in refusal
    assert not FloatingIP.objects.exists()


def test_a_floating_ip_is_associated_disassociated_and_released(portal_member, nets, host, routed):
    instance, port = with_address(portal_member, host, nets["own"], name="web-1")
    address = fixed_ip(port)
    floating_ip = allocate(portal_member, nets["external"])
    page = portal_member.client.get("/floating-ips/").content.decode()
    row = row_of(page, "data-floating-ip", f'{floating_ip.pk}" data-status="DOWN')
    target = f"{port.pk}/{address}"
    assert f'<option value="{target}">web-1: {address} on own-net</option>' in row

    response = portal_member.client.post(f"/floating-ips/{floating_ip.pk}/associate", {"target": target}, follow=True)
    assert page_messages(response) == [
        f"Associated floating IP {floating_ip.floating_ip_address} with web-1 ({address})."
    ]
    floating_ip.refresh_from_db()
    assert (floating_ip.port, floating_ip.fixed_ip_address, floating_ip.router) == (port, address, routed)
    assert floating_ip.status == FloatingIP.Status.ACTIVE
    row = row_of(response.content.decode(), "data-floating-ip", f'{floating_ip.pk}" data-status="ACTIVE')
    assert f'<a href="/instances/{instance.uuid}/">web-1</a>' in row and f"<code>{address}</code>" in row
    # The address taken is no longer offered to another floating IP.
    second = allocate(portal_member, nets["external"])
    page = portal_member.client.get("/floating-ips/").content.decode()
    assert target not in row_of(page, "data-floating-ip", f'{second.pk}" data-status="DOWN')
    response = portal_member.client.post(f"/floating-ips/{second.pk}/associate", {"target": target}, follow=True)
    assert error_messages(response)[0].startswith("Instance address: Select a valid choice")

    response = portal_member.client.post(f"/floating-ips/{floating_ip.pk}/disassociate", follow=True)
    assert page_messages(response) == [f"Disassociated floating IP {floating_ip.floating_ip_address}."]
    floating_ip.refresh_from_db()
    assert floating_ip.port is None and floating_ip.fixed_ip_address is None
    response = portal_member.client.post(f"/floating-ips/{floating_ip.pk}/disassociate", follow=True)
    assert error_messages(response) == [f"Floating IP {floating_ip.floating_ip_address} is not associated."]

    response = portal_member.client.post(f"/floating-ips/{floating_ip.pk}/delete", follow=True)
    assert page_messages(response) == [f"Released floating IP {floating_ip.floating_ip_address}."]
    assert not FloatingIP.objects.filter(pk=floating_ip.pk).exists()
    assert not Port.objects.filter(pk=floating_ip.floating_port_id).exists()


def test_an_association_the_service_refuses_is_a_message(portal_member, nets, host):
    """No router joins the instance's network to the external one: the service says so, not a 500."""
    instance, port = with_address(portal_member, host, nets["own"], name="web-1")
    floating_ip = allocate(portal_member, nets["external"])
    target = f"{port.pk}/{fixed_ip(port)}"
    response = portal_member.client.post(f"/floating-ips/{floating_ip.pk}/associate", {"target": target}, follow=True)
    assert response.status_code == 200
    assert error_messages(response) == [
        f"External network {nets['external'].pk} is not reachable from subnet {nets['own'].subnets.get().pk}.  "
        f"Therefore, cannot associate Port {port.pk} with a Floating IP."
    ]
    floating_ip.refresh_from_db()
    assert floating_ip.port is None


def test_another_projects_floating_ips_and_instances_are_not_found(portal_member, stranger, nets, host, routed):
    theirs = allocate(stranger, nets["external"])
    their_instance, their_port = with_address(stranger, host, nets["private"], name="their-vm")
    mine = allocate(portal_member, nets["external"])
    instance, port = with_address(portal_member, host, nets["own"])
    client = portal_member.client
    my_target = {"target": f"{port.pk}/{fixed_ip(port)}"}
    assert client.post(f"/floating-ips/{theirs.pk}/associate", my_target).status_code == 404
    assert client.post(f"/floating-ips/{theirs.pk}/disassociate").status_code == 404
    assert client.post(f"/floating-ips/{theirs.pk}/delete").status_code == 404
    # Their instance's address is no choice for my floating IP, and their instance is not there.
    their_target = {"target": f"{their_port.pk}/{fixed_ip(their_port)}"}
    response = client.post(f"/floating-ips/{mine.pk}/associate", their_target, follow=True)
    assert error_messages(response)[0].startswith("Instance address: Select a valid choice")
    assert "their-vm" not in client.get("/floating-ips/").content.decode()
    url = f"/instances/{their_instance.uuid}/floating-ips/"
    assert client.post(f"{url}associate", {"floating_ip": str(mine.pk), **their_target}).status_code == 404
    assert client.post(f"{url}{theirs.pk}/disassociate").status_code == 404
    # Their floating IP on my instance is no choice; one not on my instance is not found there.
    response = client.post(
        f"/instances/{instance.uuid}/floating-ips/associate", {"floating_ip": str(theirs.pk), **my_target}, follow=True
    )
    assert error_messages(response)[0].startswith("Floating IP: Select a valid choice")
    assert client.post(f"/instances/{instance.uuid}/floating-ips/{mine.pk}/disassociate").status_code == 404
    assert FloatingIP.objects.filter(port__isnull=False).count() == 0
    assert FloatingIP.objects.filter(pk__in=[theirs.pk, mine.pk]).count() == 2


def test_readers_see_floating_ips_but_cannot_act(portal_reader, portal_member, nets, host, routed):
    instance, port = with_address(portal_member, host, nets["own"])
    floating_ip = allocate(portal_member, nets["external"])
    target = {"target": f"{port.pk}/{fixed_ip(port)}"}
    page = portal_reader.client.get("/floating-ips/").content.decode()
    assert floating_ip.floating_ip_address in page and "<form" not in page.split("<main>", 1)[1]
    page = portal_reader.client.get(f"/instances/{instance.uuid}/").content.decode()
    assert "floating-ip-associate-form" not in page
    for path, data in (
        ("/floating-ips/", {"network": str(nets["external"].pk)}),
        (f"/floating-ips/{floating_ip.pk}/associate", target),
        (f"/floating-ips/{floating_ip.pk}/disassociate", {}),
        (f"/floating-ips/{floating_ip.pk}/delete", {}),
        (f"/instances/{instance.uuid}/floating-ips/associate", {"floating_ip": str(floating_ip.pk), **target}),
    ):
        response = portal_reader.client.post(path, data, follow=True)
        assert error_messages(response)[0].startswith(READ_ONLY), path
    assert list(FloatingIP.objects.all()) == [floating_ip]
    floating_ip.refresh_from_db()
    assert floating_ip.port is None


def test_the_floating_ip_forms_need_the_csrf_token(portal_member, nets, host, routed):
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_member.user)
    instance, port = with_address(portal_member, host, nets["own"])
    floating_ip = allocate(portal_member, nets["external"])
    target = {"target": f"{port.pk}/{fixed_ip(port)}"}
    assert client.post("/floating-ips/", {"network": str(nets["external"].pk)}).status_code == 403
    assert client.post(f"/floating-ips/{floating_ip.pk}/associate", target).status_code == 403
    assert client.post(f"/floating-ips/{floating_ip.pk}/delete").status_code == 403
    url = f"/instances/{instance.uuid}/floating-ips/"
    assert client.post(f"{url}associate", {"floating_ip": str(floating_ip.pk), **target}).status_code == 403
    floating_ip_services.floating_ip_associate(
        floating_ip=floating_ip, project=portal_member.project, user_is_admin=False, port=port
    )
    assert client.post(f"/floating-ips/{floating_ip.pk}/disassociate").status_code == 403
    assert client.post(f"{url}{floating_ip.pk}/disassociate").status_code == 403
    floating_ip.refresh_from_db()
    assert list(FloatingIP.objects.all()) == [floating_ip] and floating_ip.port == port
    for path in ("/floating-ips/", f"/instances/{instance.uuid}/"):
        page = client.get(path).content.decode()
        assert page.count('name="csrfmiddlewaretoken"') == page.count("<form"), path


def test_the_floating_ips_page_takes_the_same_queries_for_any_number_of_addresses(portal_member, nets, host, routed):
    counts = []
    for number in range(3):
        for _ in range(1 if number == 0 else 3):
            instance, port = with_address(portal_member, host, nets["own"])
            floating_ip_services.floating_ip_associate(
                floating_ip=allocate(portal_member, nets["external"]),
                project=portal_member.project,
                user_is_admin=False,
                port=port,
            )
            allocate(portal_member, nets["external"])
            with_address(portal_member, host, nets["own"])  # an address to offer
        with CaptureQueriesContext(connection) as queries:
            page = portal_member.client.get("/floating-ips/").content.decode()
        counts.append(len(queries))
        assert page.count("<tr data-floating-ip=") == FloatingIP.objects.count()
    assert len(set(counts)) == 1, counts


# --- an instance's floating IPs -------------------------------------------------------------------------


def test_the_instance_page_shows_its_security_groups_and_floating_ips(portal_member, nets, host, routed):
    instance, port = with_address(portal_member, host, nets["own"], name="web-1")
    address = fixed_ip(port)
    url = f"/instances/{instance.uuid}/"
    page = portal_member.client.get(url).content.decode()
    assert 'id="no-floating-ips"' in page
    groups = re.search(r'<ul id="server-security-groups">(.*?)</ul>', page, re.S).group(1)
    assert "default" in groups  # the port's security group, beside its floating IPs
    form = re.search(r'<form[^>]*id="floating-ip-associate-form".*?</form>', page, re.S).group(0)
    assert f'<option value="new:{nets["external"].pk}">A new address from ext-net</option>' in form
    assert f'<option value="{port.pk}/{address}">{address} on own-net</option>' in form

    # A new address from the external network, associated at once.
    data = {"floating_ip": f"new:{nets['external'].pk}", "target": f"{port.pk}/{address}"}
    response = portal_member.client.post(f"{url}floating-ips/associate", data, follow=True)
    floating_ip = FloatingIP.objects.get(project=portal_member.project)
    assert page_messages(response) == [
        f"Associated floating IP {floating_ip.floating_ip_address} with web-1 ({address})."
    ]
    assert (floating_ip.port, floating_ip.fixed_ip_address) == (port, address)
    page = response.content.decode()
    row = row_of(page, "data-floating-ip", f'{floating_ip.pk}" data-status="ACTIVE')
    assert f"<code>{floating_ip.floating_ip_address}</code>" in row and address in row and "ext-net" in row
    assert 'id="floating-ip-associate-form"' not in page and 'id="no-fixed-addresses"' in page  # its one address
    # The instance's addresses (here and in the list) show the floating one, marked.
    shown = f"<dd>{address}, {floating_ip.floating_ip_address} (floating)</dd>"
    assert shown in page
    listing = portal_member.client.get("/instances/").content.decode()
    assert f"{address}, {floating_ip.floating_ip_address} (floating)" in listing

    response = portal_member.client.post(f"{url}floating-ips/{floating_ip.pk}/disassociate", follow=True)
    assert page_messages(response) == [f"Disassociated floating IP {floating_ip.floating_ip_address} from web-1."]
    floating_ip.refresh_from_db()
    assert floating_ip.port is None

    # A free floating IP of the project is offered, and associated.
    page = response.content.decode()
    form = re.search(r'<form[^>]*id="floating-ip-associate-form".*?</form>', page, re.S).group(0)
    assert f'<option value="{floating_ip.pk}">{floating_ip.floating_ip_address} (ext-net)</option>' in form
    data = {"floating_ip": str(floating_ip.pk), "target": f"{port.pk}/{address}"}
    response = portal_member.client.post(f"{url}floating-ips/associate", data, follow=True)
    assert page_messages(response)[0].startswith(f"Associated floating IP {floating_ip.floating_ip_address}")
    floating_ip.refresh_from_db()
    assert floating_ip.port == port and FloatingIP.objects.count() == 1


def test_an_instance_without_a_route_out_gets_the_services_refusal(portal_member, nets, host):
    instance, port = with_address(portal_member, host, nets["own"], name="web-1")
    data = {"floating_ip": f"new:{nets['external'].pk}", "target": f"{port.pk}/{fixed_ip(port)}"}
    response = portal_member.client.post(f"/instances/{instance.uuid}/floating-ips/associate", data, follow=True)
    assert response.status_code == 200 and len(error_messages(response)) == 1
    assert not FloatingIP.objects.exists()  # the allocation went with the refused association


def test_an_instance_on_the_user_mode_network_offers_no_floating_ip(portal_member, host, nets):
    instance = portal_member.instance(host=host, networks="auto")
    page = portal_member.client.get(f"/instances/{instance.uuid}/").content.decode()
    assert 'id="no-floating-ips"' in page and "floating-ip-associate-form" not in page
