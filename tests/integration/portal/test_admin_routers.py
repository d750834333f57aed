"""Routers and floating IPs in the operators' admin: routers made, changed and deleted through the router
services (their refusals on the page), with their project, host and interfaces shown; floating IPs to
look at, search, disassociate and release through the floating IP services, never edited in place."""

from __future__ import annotations

import html
import re

import pytest

from portal.models import ComputeHost, FloatingIP, Port, Project, Router
from portal.services import floating_ips as floating_ip_services
from portal.services import networks as network_services
from portal.services import ports as port_services
from portal.services import routers as router_services

from .test_admin_networks import errors_on

pytestmark = pytest.mark.integration


@pytest.fixture
def project(db):
    return Project.objects.create(name="operators")


@pytest.fixture
def nets(project):
    """An external network with addresses, and the project's own network with a subnet."""
    external = network_services.network_create(project=project, user_is_admin=True, name="public", external=True)
    network_services.subnet_create(project=project, user_is_admin=True, network=external, cidr="203.0.113.0/24")
    own = network_services.network_create(project=project, user_is_admin=True, name="inside")
    subnet = network_services.subnet_create(project=project, user_is_admin=True, network=own, cidr="10.50.0.0/24")
    return {"external": external, "own": own, "subnet": subnet}


def router_form(project, **fields):
    data = {"project": str(project.pk), "name": "edge", "description": "", "admin_state_up": "on",
            "external_network": ""}  # fmt: skip
    data.update(fields)
    return data


def listing_rows(page: str) -> list[str]:
    return re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)


def test_an_admin_creates_changes_and_deletes_a_router_through_the_services(admin_client, project, nets):
    external = nets["external"]
    response = admin_client.post("/admin/portal/router/add/", router_form(project, external_network=str(external.pk)))
    assert response.status_code == 302, response.content.decode()[-3000:]
    router = Router.objects.get(name="edge")
    assert router.project == project and router.external_network == external
    assert Port.objects.filter(device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_GATEWAY).exists()

    # Only external networks are offered for the gateway.
    page = admin_client.get("/admin/portal/router/add/").content.decode()
    gateway_select = re.search(r'<select name="external_network".*?</select>', page, re.S).group(0)
    assert str(external.pk) in gateway_select and str(nets["own"].pk) not in gateway_select

    router_services.router_add_interface(
        router=router, project=project, user_is_admin=True, subnet_id=str(nets["subnet"].pk)
    )
    page = admin_client.get(f"/admin/portal/router/{router.pk}/change/").content.decode()
    assert 'name="project"' not in page and 'name="host"' not in page  # fixed, or the control plane's choice
    shown = errors_on(page)
    assert "interface: 10.50.0.1 on 10.50.0.0/24" in shown and "gateway: 203.0.113." in shown

    response = admin_client.post(
        f"/admin/portal/router/{router.pk}/change/",
        {"name": "edge-2", "description": "d", "admin_state_up": "on", "external_network": ""},
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    router.refresh_from_db()
    assert (router.name, router.description, router.external_network) == ("edge-2", "d", None)
    assert not Port.objects.filter(device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_GATEWAY).exists()

    # Deleting it while it has an interface: the service's refusal, as a message on its page.
    response = admin_client.post(f"/admin/portal/router/{router.pk}/delete/", {"post": "yes"}, follow=True)
    assert response.status_code == 200 and Router.objects.filter(pk=router.pk).exists()
    assert f'<li class="error">Router {router.pk} still has ports</li>' in response.content.decode()
    router_services.router_remove_interface(
        router=router, project=project, user_is_admin=True, subnet_id=str(nets["subnet"].pk)
    )
    response = admin_client.post(f"/admin/portal/router/{router.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Router.objects.filter(pk=router.pk).exists()


def test_a_gateway_the_service_refuses_is_shown_on_the_form(admin_client, project, nets):
    # A network that is external but has no subnet to give the gateway an address.
    bare = network_services.network_create(project=project, user_is_admin=True, name="bare-ext", external=True)
    response = admin_client.post("/admin/portal/router/add/", router_form(project, external_network=str(bare.pk)))
    assert response.status_code == 200
    assert f"Bad router request: No subnets on external network {bare.pk}." in errors_on(response.content.decode())
    assert not Router.objects.exists()
    response = admin_client.post("/admin/portal/router/add/", {**router_form(project), "project": ""})
    assert response.status_code == 200 and not Router.objects.exists()


def test_the_router_list_shows_project_host_and_interfaces_and_searches(admin_client, project, nets):
    router = router_services.router_create(project=project, user_is_admin=True, name="edge")
    router_services.router_add_interface(
        router=router, project=project, user_is_admin=True, subnet_id=str(nets["subnet"].pk)
    )
    other = router_services.router_create(project=project, user_is_admin=True, name="quiet")
    host = ComputeHost.objects.create(name="router-host-1", vcpus=8, memory_mb=16384, disk_gb=100)
    Router.objects.filter(pk=router.pk).update(host=host)

    page = admin_client.get("/admin/portal/router/").content.decode()
    edge_row = next(r for r in listing_rows(page) if f"/router/{router.pk}/change/" in r)
    quiet_row = next(r for r in listing_rows(page) if f"/router/{other.pk}/change/" in r)
    assert "operators" in edge_row and "router-host-1" in edge_row and "public" not in edge_row
    assert '<td class="field-interface_count">1</td>' in edge_row
    assert '<td class="field-interface_count">0</td>' in quiet_row
    found = admin_client.get("/admin/portal/router/", {"q": "router-host-1"}).content.decode()
    assert (
        f"/admin/portal/router/{router.pk}/change/" in found and f"/admin/portal/router/{other.pk}/change/" not in found
    )


def test_floating_ips_are_looked_at_disassociated_and_released_not_edited(admin_client, project, nets):
    router = router_services.router_create(
        project=project, user_is_admin=True, name="edge", external_gateway_info={"network_id": str(nets["external"].pk)}
    )
    router_services.router_add_interface(
        router=router, project=project, user_is_admin=True, subnet_id=str(nets["subnet"].pk)
    )
    port = port_services.port_create(project=project, user_is_admin=True, network=nets["own"])
    floating_ip = floating_ip_services.floating_ip_create(
        project=project, user_is_admin=True, floating_network=nets["external"], port=port
    )
    free = floating_ip_services.floating_ip_create(
        project=project, user_is_admin=True, floating_network=nets["external"]
    )
    fixed = port.fixed_ips.get().ip_address
    assert floating_ip.fixed_ip_address == fixed

    listing = admin_client.get("/admin/portal/floatingip/").content.decode()
    assert floating_ip.floating_ip_address in listing and free.floating_ip_address in listing
    assert "operators" in listing and fixed in listing and "public" in listing
    found = admin_client.get("/admin/portal/floatingip/", {"q": fixed}).content.decode()
    assert f"/admin/portal/floatingip/{floating_ip.pk}/change/" in found
    assert f"/admin/portal/floatingip/{free.pk}/change/" not in found

    # Not made or changed here.
    assert admin_client.get("/admin/portal/floatingip/add/").status_code == 403
    page = admin_client.get(f"/admin/portal/floatingip/{floating_ip.pk}/change/").content.decode()
    assert floating_ip.floating_ip_address in page and 'name="floating_ip_address"' not in page
    response = admin_client.post(
        f"/admin/portal/floatingip/{floating_ip.pk}/change/", {"floating_ip_address": "203.0.113.250"}
    )
    assert response.status_code == 403
    floating_ip.refresh_from_db()
    assert floating_ip.floating_ip_address != "203.0.113.250"

    response = admin_client.post(
        "/admin/portal/floatingip/", {"action": "disassociate", "_selected_action": [str(floating_ip.pk)]}, follow=True
    )
    assert "Disassociated 1 floating IP." in html.unescape(response.content.decode())
    floating_ip.refresh_from_db()
    assert floating_ip.port is None and floating_ip.status == FloatingIP.Status.DOWN

    response = admin_client.post(f"/admin/portal/floatingip/{floating_ip.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not FloatingIP.objects.filter(pk=floating_ip.pk).exists()
    assert not Port.objects.filter(pk=floating_ip.floating_port_id).exists()  # the service's work, not a cascade
    assert FloatingIP.objects.filter(pk=free.pk).exists()


def test_routers_and_floating_ips_are_for_staff_only(client, project, nets):
    router = router_services.router_create(project=project, user_is_admin=True, name="edge")
    for path in ("/admin/portal/router/", f"/admin/portal/router/{router.pk}/change/", "/admin/portal/floatingip/"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_router_and_floating_ip_quotas_set_in_the_admin_are_refusals_in_the_portal(admin_client, project, nets):
    from tests.factories import MembershipFactory

    for resource in ("router", "floatingip"):
        response = admin_client.post(
            "/admin/portal/quotalimit/add/",
            {"project": project.pk, "user": "", "resource": resource, "hard_limit": "1"},
        )
        assert response.status_code == 302, response.content.decode()[-2000:]
    member = MembershipFactory(project=project)
    admin_client.force_login(member.user)
    portal = admin_client
    assert portal.post("/routers/", {"name": "first"}).status_code == 302
    response = portal.post("/routers/", {"name": "second"})
    assert response.status_code == 400
    assert "Quota exceeded for resources: ['router']." in html.unescape(response.content.decode())
    external = str(nets["external"].pk)
    assert portal.post("/floating-ips/", {"network": external}).status_code == 302
    response = portal.post("/floating-ips/", {"network": external})
    assert response.status_code == 400
    assert "Quota exceeded for resources: ['floatingip']." in html.unescape(response.content.decode())
    assert Router.objects.filter(project=project).count() == 1
    assert FloatingIP.objects.filter(project=project).count() == 1
