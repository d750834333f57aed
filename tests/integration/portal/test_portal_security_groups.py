"""Security groups in the portal: the Security groups page (groups and their rules; create and delete a
group, add and remove a rule), an instance's groups (add, remove), and the groups chosen on the launch
form, all through the security group services and scoped to the signed-in user's project."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.models import Instance, Role, SecurityGroup, SecurityGroupRule
from portal.services import instance_ports
from portal.services import security_groups as group_services

from .conftest import PortalUser
from .test_portal_forms import field_errors
from .test_portal_networks import _ctx, launch, make_network, page_messages, running

pytestmark = pytest.mark.integration


@pytest.fixture
def stranger(db):
    return PortalUser(Role.MEMBER)


def section_of(page: str, group) -> str:
    match = re.search(rf'<section class="card" data-security-group="{group.pk}"[^>]*>(.*?)</section>', page, re.S)
    assert match, f"no section for group {group.pk}"
    return match.group(1)


def rule_rows(section: str) -> list[list[str]]:
    rows = re.findall(r"<tr data-rule=\"[^\"]+\">(.*?)</tr>", section, re.S)
    return [re.findall(r"<td>([^<]*)</td>", row)[:5] for row in rows]


def groups_of(port) -> set[str]:
    return {g.name for g in port.security_groups.all()}


# --- the page -------------------------------------------------------------------------------------------


def test_the_page_lists_the_projects_groups_with_their_rules(portal_member, stranger):
    default = group_services.default_group(portal_member.project)
    web = group_services.group_create(project=portal_member.project, name="web", description="front ends")
    group_services.rule_create(
        project=portal_member.project,
        group=web,
        attrs={
            "direction": "ingress",
            "protocol": "tcp",
            "port_range_min": 80,
            "port_range_max": 443,
            "remote_ip_prefix": "192.0.2.0/24",
        },  # fmt: skip
        remote_group=None,
    )
    group_services.rule_create(
        project=portal_member.project,
        group=web,
        attrs={"direction": "ingress", "protocol": "icmp"},
        remote_group=default,
    )
    theirs = group_services.group_create(project=stranger.project, name="their-group")

    response = portal_member.client.get("/security-groups/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<a href="/security-groups/" aria-current="page">Security groups</a>' in page
    assert "their-group" not in page and str(theirs.pk) not in page
    assert rule_rows(section_of(page, web)) == [
        ["egress", "IPv4", "any", "any", "0.0.0.0/0"],
        ["egress", "IPv6", "any", "any", "::/0"],
        ["ingress", "IPv4", "tcp", "80–443", "192.0.2.0/24"],
        ["ingress", "IPv4", "icmp", "any", "group default"],
    ]
    default_section = section_of(page, default)
    assert ["ingress", "IPv4", "any", "any", "group default"] in rule_rows(default_section)
    # The default group has no delete button; another group has.
    assert "Delete group" not in default_section and f"/security-groups/{web.pk}/delete" in section_of(page, web)


def test_groups_are_created_and_deleted_through_the_services(portal_member, host):
    response = portal_member.client.post("/security-groups/", {"name": "db", "description": "databases"}, follow=True)
    assert page_messages(response) == ["Created security group db."]
    group = SecurityGroup.objects.get(project=portal_member.project, name="db")
    assert group.description == "databases" and group.rules.count() == 2  # the services' starting rules
    assert SecurityGroup.objects.filter(project=portal_member.project, is_default=True).exists()

    response = portal_member.client.post("/security-groups/", {"name": "default"})
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "name") == ["Default security group already exists."]
    response = portal_member.client.post("/security-groups/", {"name": ""})
    assert response.status_code == 400 and field_errors(response.content.decode(), "name")

    default = SecurityGroup.objects.get(project=portal_member.project, is_default=True)
    response = portal_member.client.post(f"/security-groups/{default.pk}/delete", follow=True)
    assert page_messages(response) == ["The default security group cannot be deleted."]
    assert SecurityGroup.objects.filter(pk=default.pk).exists()

    # A group in use: the service's refusal as a clear message.
    own = make_network(portal_member.project, "own-net", "10.30.0.0/24")
    instance = running(portal_member, host)
    port = instance_ports.interface_attach(ctx=_ctx(portal_member), instance=instance, network_id=str(own.pk))
    instance_ports.server_security_group_add(ctx=_ctx(portal_member), instance=instance, name="db")
    response = portal_member.client.post(f"/security-groups/{group.pk}/delete", follow=True)
    assert page_messages(response) == ["Security group db is in use by instances or ports: remove it from them first."]
    assert "db" in groups_of(port)
    instance_ports.server_security_group_remove(ctx=_ctx(portal_member), instance=instance, name="db")
    response = portal_member.client.post(f"/security-groups/{group.pk}/delete", follow=True)
    assert page_messages(response) == ["Deleted security group db."]
    assert not SecurityGroup.objects.filter(pk=group.pk).exists()


def test_rules_are_added_and_removed(portal_member):
    web = group_services.group_create(project=portal_member.project, name="web")
    default = group_services.default_group(portal_member.project)
    url = f"/security-groups/{web.pk}/rules"
    ssh = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": "22",
           "port_range_max": "22", "remote_ip_prefix": "198.51.100.0/24", "remote_group": ""}  # fmt: skip
    response = portal_member.client.post(url, ssh, follow=True)
    assert page_messages(response) == ["Added a rule to security group web."]
    rule = web.rules.get(direction="ingress")
    assert (rule.protocol, rule.port_range_min, rule.port_range_max, rule.remote_ip_prefix) == (
        "tcp", 22, 22, "198.51.100.0/24"
    )  # fmt: skip
    assert ["ingress", "IPv4", "tcp", "22", "198.51.100.0/24"] in rule_rows(section_of(response.content.decode(), web))

    # The same rule again, a bad range, a bad prefix, both remotes: refused, as messages.
    response = portal_member.client.post(url, ssh, follow=True)
    assert "already exists" in page_messages(response)[0]
    response = portal_member.client.post(url, {**ssh, "port_range_min": "30", "port_range_max": "20"}, follow=True)
    assert "port_range_min" in page_messages(response)[0]
    response = portal_member.client.post(url, {**ssh, "remote_ip_prefix": "not-a-net"}, follow=True)
    assert "not a valid IP prefix" in page_messages(response)[0]
    both = {**ssh, "remote_group": str(default.pk)}
    response = portal_member.client.post(url, both, follow=True)
    assert page_messages(response) == ["Give a remote CIDR or a remote group, not both."]
    assert web.rules.filter(direction="ingress").count() == 1

    icmp = {"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "remote_group": str(default.pk)}
    assert page_messages(portal_member.client.post(url, icmp, follow=True)) == ["Added a rule to security group web."]
    assert web.rules.get(protocol="icmp").remote_group == default
    anything = {"direction": "egress", "ethertype": "IPv4", "protocol": "", "remote_ip_prefix": "10.0.0.0/8"}
    assert page_messages(portal_member.client.post(url, anything, follow=True))[0].startswith("Added")
    assert web.rules.get(remote_ip_prefix="10.0.0.0/8").protocol is None

    response = portal_member.client.post(f"/security-groups/rules/{rule.pk}/delete", follow=True)
    assert page_messages(response) == ["Removed the rule."]
    assert not SecurityGroupRule.objects.filter(pk=rule.pk).exists()


def test_another_projects_groups_and_rules_are_not_found(portal_member, stranger, host):
    theirs = group_services.group_create(project=stranger.project, name="theirs")
    their_rule = theirs.rules.first()
    mine = group_services.group_create(project=portal_member.project, name="mine")
    client = portal_member.client
    assert client.post(f"/security-groups/{theirs.pk}/delete").status_code == 404
    assert client.post(f"/security-groups/{theirs.pk}/rules", {"direction": "ingress"}).status_code == 404
    assert client.post(f"/security-groups/rules/{their_rule.pk}/delete").status_code == 404
    # Their group as the remote group of my rule: not a choice.
    response = client.post(
        f"/security-groups/{mine.pk}/rules",
        {"direction": "ingress", "ethertype": "IPv4", "remote_group": str(theirs.pk)},
        follow=True,
    )
    assert "Select a valid choice" in page_messages(response)[0]
    assert SecurityGroup.objects.filter(pk=theirs.pk).exists() and theirs.rules.count() == 2
    assert not mine.rules.filter(remote_group=theirs).exists()
    # On my instance, their group is not found either.
    instance = running(portal_member, host)
    response = client.post(f"/instances/{instance.uuid}/security-groups/add", {"group": str(theirs.pk)})
    assert response.status_code == 404
    # Their instance is not found, whichever group.
    their_instance = running(stranger, host)
    for action in ("add", "remove"):
        response = client.post(f"/instances/{their_instance.uuid}/security-groups/{action}", {"group": str(mine.pk)})
        assert response.status_code == 404


def test_readers_see_groups_but_cannot_act(portal_reader, portal_member, host):
    web = group_services.group_create(project=portal_member.project, name="web")
    rule = web.rules.first()
    page = portal_reader.client.get("/security-groups/").content.decode()
    assert "web" in page and "Add rule" not in page and "Delete group" not in page
    assert "security-group-create-form" not in page
    read_only = "Your role in this project is read-only."
    response = portal_reader.client.post("/security-groups/", {"name": "nope"}, follow=True)
    assert page_messages(response) == [f"{read_only} You cannot create security groups."]
    response = portal_reader.client.post(f"/security-groups/{web.pk}/delete", follow=True)
    assert page_messages(response) == [read_only]
    rule_form = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    response = portal_reader.client.post(f"/security-groups/{web.pk}/rules", rule_form, follow=True)
    assert page_messages(response) == [read_only]
    response = portal_reader.client.post(f"/security-groups/rules/{rule.pk}/delete", follow=True)
    assert page_messages(response) == [read_only]
    instance = running(portal_member, host)
    response = portal_reader.client.post(
        f"/instances/{instance.uuid}/security-groups/add", {"group": str(web.pk)}, follow=True
    )
    assert page_messages(response) == [read_only]
    assert SecurityGroup.objects.filter(project=portal_member.project).count() == 2  # web and default
    assert SecurityGroupRule.objects.filter(pk=rule.pk).exists() and web.rules.count() == 2


def test_the_security_group_forms_need_the_csrf_token(portal_member, host):
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_member.user)
    web = group_services.group_create(project=portal_member.project, name="web")
    rule = web.rules.first()
    instance = running(portal_member, host)
    assert client.post("/security-groups/", {"name": "x"}).status_code == 403
    assert client.post(f"/security-groups/{web.pk}/delete").status_code == 403
    assert client.post(f"/security-groups/{web.pk}/rules", {"direction": "ingress"}).status_code == 403
    assert client.post(f"/security-groups/rules/{rule.pk}/delete").status_code == 403
    assert client.post(f"/instances/{instance.uuid}/security-groups/add", {"group": str(web.pk)}).status_code == 403
    assert client.post(f"/instances/{instance.uuid}/security-groups/remove", {"group": str(web.pk)}).status_code == 403
    assert SecurityGroup.objects.filter(pk=web.pk).exists() and web.rules.count() == 2
    page = client.get("/security-groups/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') == page.count("<form")


def test_the_security_groups_page_takes_the_same_queries_for_any_number_of_groups(portal_member):
    counts = []
    for number in range(3):
        for extra in range(1 if number == 0 else 3):
            group = group_services.group_create(project=portal_member.project, name=f"g{number}-{extra}")
            group_services.rule_create(
                project=portal_member.project,
                group=group,
                attrs={"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
                remote_group=group,
            )
        with CaptureQueriesContext(connection) as queries:
            page = portal_member.client.get("/security-groups/").content.decode()
        counts.append(len(queries))
        assert page.count('<section class="card" data-security-group=') == SecurityGroup.objects.count()
    assert len(set(counts)) == 1, counts


# --- an instance's groups -------------------------------------------------------------------------------


def test_the_instance_page_shows_its_groups_and_adds_and_removes_one(portal_member, host):
    own = make_network(portal_member.project, "own-net", "10.30.0.0/24")
    web = group_services.group_create(project=portal_member.project, name="web")
    instance = running(portal_member, host)
    url = f"/instances/{instance.uuid}/"
    page = portal_member.client.get(url).content.decode()
    assert "Security groups" in page and 'id="no-security-groups"' in page

    # Without ports the service refuses; the refusal is a message.
    response = portal_member.client.post(f"{url}security-groups/add", {"group": str(web.pk)}, follow=True)
    assert page_messages(response) == [f"Instance {instance.uuid} has no network ports to apply security group to."]

    port = instance_ports.interface_attach(ctx=_ctx(portal_member), instance=instance, network_id=str(own.pk))
    assert groups_of(port) == {"default"}
    page = portal_member.client.get(url).content.decode()
    listed = re.search(r'<ul id="server-security-groups">(.*?)</ul>', page, re.S).group(1)
    assert "default" in listed and "web" not in listed
    add_form = re.search(r'<form[^>]*id="server-group-add-form".*?</form>', page, re.S).group(0)
    assert f'<option value="{web.pk}">web</option>' in add_form and "default" not in add_form

    response = portal_member.client.post(f"{url}security-groups/add", {"group": str(web.pk)}, follow=True)
    assert page_messages(response) == [f"Added security group web to {instance.name}."]
    assert groups_of(port) == {"default", "web"}
    response = portal_member.client.post(f"{url}security-groups/add", {"group": str(web.pk)}, follow=True)
    assert page_messages(response) == [
        f"Security group {web.pk} is already associated with the instance {instance.uuid}"
    ]

    default = SecurityGroup.objects.get(project=portal_member.project, is_default=True)
    response = portal_member.client.post(f"{url}security-groups/remove", {"group": str(default.pk)}, follow=True)
    assert page_messages(response) == [f"Removed security group default from {instance.name}."]
    assert groups_of(port) == {"web"}
    response = portal_member.client.post(f"{url}security-groups/remove", {"group": str(default.pk)}, follow=True)
    assert page_messages(response) == [f"Security group {default.pk} not associated with the instance {instance.uuid}"]
    assert portal_member.client.post(f"{url}security-groups/add", {"group": "nope"}).status_code == 404


# --- the launch form ------------------------------------------------------------------------------------


def test_the_launch_form_offers_the_projects_groups_and_passes_the_chosen(portal_member, stranger, flavor, image):
    own = make_network(portal_member.project, "own-net", "10.30.0.0/24")
    web = group_services.group_create(project=portal_member.project, name="web")
    default = SecurityGroup.objects.get(project=portal_member.project, is_default=True)
    theirs = group_services.group_create(project=stranger.project, name="theirs")
    page = portal_member.client.get("/instances/launch/").content.decode()
    select = re.search(r'<select name="security_groups"[^>]*multiple[^>]*>(.*?)</select>', page, re.S).group(1)
    assert re.findall(r'<option value="([0-9a-f-]{36})"( selected)?>([^<]*)</option>', select) == [
        (str(default.pk), " selected", "default"),
        (str(web.pk), "", "web"),
    ]

    response = launch(
        portal_member, image=str(image.pk), network="chosen", networks=[str(own.pk)], security_groups=[str(web.pk)]
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    instance = Instance.objects.get(project=portal_member.project)
    (port,) = instance_ports.instance_ports(instance)
    assert groups_of(port) == {"web"}

    response = launch(portal_member, image=str(image.pk), network="chosen", networks=[str(own.pk)],
                      security_groups=[str(theirs.pk)])  # fmt: skip
    assert "Select a valid choice" in field_errors(response.content.decode(), "security_groups")[0]
    assert Instance.objects.count() == 1


def test_a_new_projects_launch_form_offers_the_default_group_by_name(portal_member, flavor, image):
    own = make_network(portal_member.project, "own-net", "10.30.0.0/24")
    assert not SecurityGroup.objects.filter(project=portal_member.project).exists()
    page = portal_member.client.get("/instances/launch/").content.decode()
    assert '<option value="default" selected>default</option>' in page
    response = launch(
        portal_member, image=str(image.pk), network="chosen", networks=[str(own.pk)], security_groups=["default"]
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    (port,) = instance_ports.instance_ports(Instance.objects.get(project=portal_member.project))
    assert groups_of(port) == {"default"}
    # The preselected default sent along with the user-mode network, or with none: the launch goes ahead.
    default = SecurityGroup.objects.get(project=portal_member.project, is_default=True)
    assert (
        f'<option value="{default.pk}" selected>default</option>'
        in portal_member.client.get("/instances/launch/").content.decode()
    )
    for network in ("auto", "none"):
        response = launch(portal_member, image=str(image.pk), network=network, security_groups=[str(default.pk)])
        assert response.status_code == 302, response.content.decode()[-3000:]
    assert Instance.objects.filter(project=portal_member.project).count() == 3
