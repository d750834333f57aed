"""Security groups in the operators' admin: groups made, renamed and deleted through the services, their
rules shown inline, rules added and deleted through the services, and the security group quotas."""

from __future__ import annotations

import html

import pytest

from portal.models import Project, QuotaLimit, SecurityGroup, SecurityGroupRule
from portal.services import networks as network_services
from portal.services import ports as port_services
from portal.services import security_groups as group_services
from portal.services.network_errors import OverQuota

pytestmark = pytest.mark.integration


@pytest.fixture
def project(db):
    return Project.objects.create(name="operators")


def test_an_admin_creates_renames_and_deletes_a_group_through_the_services(admin_client, project):
    response = admin_client.post(
        "/admin/portal/securitygroup/add/", {"project": str(project.pk), "name": "web", "description": "front"}
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    group = SecurityGroup.objects.get(project=project, name="web")
    # The services' starting rules, and the project's default group made on the way.
    assert group.rules.count() == 2 and SecurityGroup.objects.filter(project=project, is_default=True).exists()

    page = admin_client.get(f"/admin/portal/securitygroup/{group.pk}/change/").content.decode()
    assert "egress" in page and "IPv6" in page  # the rules inline
    response = admin_client.post(
        f"/admin/portal/securitygroup/{group.pk}/change/",
        {"name": "web2", "description": "front", "rules-TOTAL_FORMS": "2", "rules-INITIAL_FORMS": "2"},
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    group.refresh_from_db()
    assert group.name == "web2" and group.revision_number == 1

    response = admin_client.post("/admin/portal/securitygroup/add/", {"project": str(project.pk), "name": "default"})
    assert response.status_code == 200
    assert "Default security group already exists." in html.unescape(response.content.decode())

    listing = admin_client.get("/admin/portal/securitygroup/").content.decode()
    assert "web2" in listing and "operators" in listing

    # In use: the service refuses, shown as a message on the group's page.
    network = network_services.network_create(project=project, user_is_admin=True, name="n")
    port = port_services.port_create(project=project, user_is_admin=True, network=network)
    port.security_groups.add(group)
    response = admin_client.post(f"/admin/portal/securitygroup/{group.pk}/delete/", {"post": "yes"}, follow=True)
    assert "in use" in html.unescape(response.content.decode())
    assert SecurityGroup.objects.filter(pk=group.pk).exists()
    port.security_groups.remove(group)
    response = admin_client.post(f"/admin/portal/securitygroup/{group.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not SecurityGroup.objects.filter(pk=group.pk).exists()
    # An admin may delete a project's default group, once no port is in it.
    port_services.port_delete(port=port)
    default = SecurityGroup.objects.get(project=project, is_default=True)
    response = admin_client.post(f"/admin/portal/securitygroup/{default.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not SecurityGroup.objects.filter(pk=default.pk).exists()


def test_an_admin_adds_and_deletes_rules_through_the_services(admin_client, project):
    group = group_services.group_create(project=project, name="web")
    rule = {"security_group": str(group.pk), "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": "22", "port_range_max": "22", "remote_ip_prefix": "192.0.2.0/24",
            "remote_group": "", "description": ""}  # fmt: skip
    response = admin_client.post("/admin/portal/securitygrouprule/add/", rule)
    assert response.status_code == 302, response.content.decode()[-3000:]
    made = group.rules.get(direction="ingress")
    assert (made.project, made.protocol, made.port_range_min, made.remote_ip_prefix) == (
        project, "tcp", 22, "192.0.2.0/24"
    )  # fmt: skip
    response = admin_client.post("/admin/portal/securitygrouprule/add/", rule)
    assert response.status_code == 200 and "already exists" in html.unescape(response.content.decode())
    response = admin_client.post("/admin/portal/securitygrouprule/add/", {**rule, "port_range_max": "99999"})
    assert response.status_code == 200 and group.rules.filter(direction="ingress").count() == 1

    # Rules are not changed in place.
    response = admin_client.post(f"/admin/portal/securitygrouprule/{made.pk}/change/", {**rule, "protocol": "udp"})
    assert response.status_code == 403 or SecurityGroupRule.objects.get(pk=made.pk).protocol == "tcp"
    assert SecurityGroupRule.objects.get(pk=made.pk).protocol == "tcp"

    response = admin_client.post(f"/admin/portal/securitygrouprule/{made.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not SecurityGroupRule.objects.filter(pk=made.pk).exists()
    group.refresh_from_db()
    assert group.revision_number == 2  # one for the rule added, one for the rule deleted


def test_security_group_quotas_are_set_in_the_quota_admin_and_enforced(admin_client, project):
    for resource, limit in (("security_group", "2"), ("security_group_rule", "7")):
        response = admin_client.post(
            "/admin/portal/quotalimit/add/",
            {"project": project.pk, "user": "", "resource": resource, "hard_limit": limit},
        )
        assert response.status_code == 302, response.content.decode()[-2000:]
    assert dict(QuotaLimit.objects.filter(project=project).values_list("resource", "hard_limit")) == {
        "security_group": 2, "security_group_rule": 7,
    }  # fmt: skip
    group = group_services.group_create(project=project, name="one")  # with default: 2 groups, 6 rules
    with pytest.raises(OverQuota):
        group_services.group_create(project=project, name="two")
    group_services.rule_create(project=project, group=group, attrs={"direction": "ingress"}, remote_group=None)
    with pytest.raises(OverQuota):
        group_services.rule_create(
            project=project, group=group, attrs={"direction": "ingress", "protocol": "tcp"}, remote_group=None
        )
    response = admin_client.post("/admin/portal/securitygroup/add/", {"project": str(project.pk), "name": "three"})
    assert response.status_code == 200
    assert "Quota exceeded for resources: ['security_group']." in html.unescape(response.content.decode())
