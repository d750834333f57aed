"""The operators' admin: every write through the services, their refusals shown on the page."""

from __future__ import annotations

import pytest

from portal.models import Aggregate, ComputeHost, Flavor, Membership, Project, QuotaLimit

pytestmark = pytest.mark.integration


def flavor_form(**fields):
    data = {
        "name": "m1.special", "flavorid": "77", "vcpus": "2", "memory_mb": "2048", "root_gb": "10",
        "ephemeral_gb": "0", "swap": "0", "is_public": "on", "description": "",
        "extra_specs-TOTAL_FORMS": "3", "extra_specs-INITIAL_FORMS": "0",
        "extra_specs-MIN_NUM_FORMS": "0", "extra_specs-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    for number in range(3):
        data[f"extra_specs-{number}-key"] = ""
        data[f"extra_specs-{number}-value"] = ""
    data.update(fields)
    return data


def test_a_flavor_is_created_with_extra_specs_edited_inline(admin_client):
    page = admin_client.get("/admin/portal/flavor/add/").content.decode()
    assert "Extra specs" in page and 'name="extra_specs-0-key"' in page
    response = admin_client.post(
        "/admin/portal/flavor/add/",
        flavor_form(**{"extra_specs-0-key": "hw:cpu_policy", "extra_specs-0-value": "dedicated",
                       "extra_specs-1-key": "custom:thing", "extra_specs-1-value": "x"}),
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[-3000:]
    flavor = Flavor.objects.get(flavorid="77")
    assert flavor.extra_specs == {"hw:cpu_policy": "dedicated", "custom:thing": "x"}
    assert (flavor.vcpus, flavor.memory_mb, flavor.root_gb) == (2, 2048, 10)


def test_invalid_extra_specs_are_refused_next_to_their_row(admin_client):
    response = admin_client.post(
        "/admin/portal/flavor/add/",
        flavor_form(**{"extra_specs-0-key": "hw:cpu_policy", "extra_specs-0-value": "sometimes"}),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Correct the extra specs below." in page
    assert "sometimes" in page and 'class="errorlist"' in page
    assert not Flavor.objects.filter(flavorid="77").exists()


def test_extra_specs_of_an_existing_flavor_are_changed_and_removed(admin_client):
    admin_client.post(
        "/admin/portal/flavor/add/",
        flavor_form(**{"extra_specs-0-key": "hw:cpu_policy", "extra_specs-0-value": "shared"}),
    )
    flavor = Flavor.objects.get(flavorid="77")
    data = {
        "description": "for databases",
        "extra_specs-TOTAL_FORMS": "2", "extra_specs-INITIAL_FORMS": "1",
        "extra_specs-MIN_NUM_FORMS": "0", "extra_specs-MAX_NUM_FORMS": "1000",
        "extra_specs-0-key": "hw:cpu_policy", "extra_specs-0-value": "shared", "extra_specs-0-DELETE": "on",
        "extra_specs-1-key": "hw:numa_nodes", "extra_specs-1-value": "1",
    }  # fmt: skip
    response = admin_client.post(f"/admin/portal/flavor/{flavor.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    flavor.refresh_from_db()
    assert flavor.extra_specs == {"hw:numa_nodes": "1"} and flavor.description == "for databases"
    assert flavor.vcpus == 2  # sizes are fixed once the flavor exists


def test_a_taken_flavor_name_is_the_services_refusal_shown_on_the_form(admin_client):
    admin_client.post("/admin/portal/flavor/add/", flavor_form())
    response = admin_client.post("/admin/portal/flavor/add/", flavor_form(flavorid="78"))
    assert response.status_code == 200
    assert "Flavor with name m1.special already exists." in response.content.decode()
    assert Flavor.objects.filter(name="m1.special").count() == 1


def aggregate_form(**fields):
    data = {
        "name": "rack-a", "availability_zone": "zone-a",
        "metadata-TOTAL_FORMS": "3", "metadata-INITIAL_FORMS": "0",
        "metadata-MIN_NUM_FORMS": "0", "metadata-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    for number in range(3):
        data[f"metadata-{number}-key"] = ""
        data[f"metadata-{number}-value"] = ""
    data.update(fields)
    return data


@pytest.fixture
def hosts(db):
    return [ComputeHost.objects.create(name=f"node{n}", vcpus=4, memory_mb=4096, disk_gb=40) for n in (1, 2)]


def test_an_aggregate_with_hosts_metadata_and_a_zone(admin_client, hosts):
    response = admin_client.post(
        "/admin/portal/aggregate/add/",
        aggregate_form(hosts=[hosts[0].pk], **{"metadata-0-key": "ssd", "metadata-0-value": "true"}),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    aggregate = Aggregate.objects.get(name="rack-a")
    assert aggregate.metadata == {"availability_zone": "zone-a", "ssd": "true"}
    assert list(aggregate.hosts.all()) == [hosts[0]]
    listing = admin_client.get("/admin/portal/aggregate/").content.decode()
    assert "zone-a" in listing and "node1" in listing and "ssd=true" in listing


def test_the_zone_rules_of_the_service_hold_in_the_admin(admin_client, hosts):
    from tests.factories import InstanceFactory

    admin_client.post("/admin/portal/aggregate/add/", aggregate_form(hosts=[hosts[0].pk]))
    # node2 runs an instance in the default zone: moving it into zone-b would move the instance.
    InstanceFactory(host=hosts[1])
    response = admin_client.post(
        "/admin/portal/aggregate/add/", aggregate_form(name="rack-b", availability_zone="zone-b", hosts=[hosts[1].pk])
    )
    assert response.status_code == 200
    assert "already has 1 instance(s)" in response.content.decode()
    assert not Aggregate.objects.filter(name="rack-b").exists()  # all or nothing


def test_hosts_show_state_and_resources_and_are_disabled_with_a_reason(admin_client, hosts):
    from django.utils import timezone

    ComputeHost.objects.filter(pk=hosts[0].pk).update(last_heartbeat=timezone.now())
    listing = admin_client.get("/admin/portal/computehost/").content.decode()
    assert "up" in listing and "down" in listing and "0 of 4" in listing
    response = admin_client.post(
        "/admin/portal/computehost/", {"action": "disable_hosts", "_selected_action": [hosts[0].pk]}
    )
    assert response.status_code == 200 and "Reason" in response.content.decode()
    response = admin_client.post(
        "/admin/portal/computehost/",
        {"action": "disable_hosts", "_selected_action": [hosts[0].pk], "reason": "firmware update"},
    )
    assert response.status_code == 302
    hosts[0].refresh_from_db()
    assert (hosts[0].enabled, hosts[0].disabled_reason) == (False, "firmware update")
    change = admin_client.post(
        f"/admin/portal/computehost/{hosts[0].pk}/change/", {"enabled": "", "disabled_reason": "", "forced_down": ""}
    )
    assert change.status_code == 200 and "Say why the host is disabled." in change.content.decode()
    admin_client.post("/admin/portal/computehost/", {"action": "enable_hosts", "_selected_action": [hosts[0].pk]})
    hosts[0].refresh_from_db()
    assert (hosts[0].enabled, hosts[0].disabled_reason) == (True, "")


def test_instance_actions_in_the_admin_go_through_the_state_table(admin_client, hosts):
    from tests.factories import InstanceFactory

    running = InstanceFactory(host=hosts[0])
    stopped = InstanceFactory(host=hosts[0], vm_state="stopped", power_state=4)
    response = admin_client.post(
        "/admin/portal/instance/", {"action": "stop", "_selected_action": [running.pk, stopped.pk]}, follow=True
    )
    page = response.content.decode()
    assert "Stop: requested for 1 instance(s)." in page
    assert f"Cannot &#x27;stop&#x27; instance {stopped.uuid} while it is in vm_state stopped" in page
    running.refresh_from_db()
    assert running.task_state == "powering-off"
    assert running.actions.get().action == "stop"
    assert admin_client.get(f"/admin/portal/instance/{running.pk}/change/").status_code == 200
    assert admin_client.post(f"/admin/portal/instance/{running.pk}/change/", {"name": "renamed"}).status_code == 403


def test_projects_and_memberships_through_the_service(admin_client, django_user_model):
    user = django_user_model.objects.create_user("alice", password="secret")
    data = {
        "name": "research", "description": "", "enabled": "on",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-user": user.pk, "memberships-0-role": "member",
    }  # fmt: skip
    response = admin_client.post("/admin/portal/project/add/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    project = Project.objects.get(name="research")
    assert Membership.objects.get(project=project).user == user


def test_host_credentials_are_shown_and_revoked_and_refusals_counted(admin_client):
    from compute_tasks import signing
    from portal.models import HostCredential, MessageRefusal
    from portal.services import host_trust

    host, _key = host_trust.host_enroll(name="hv-admin")
    credential = HostCredential.objects.get(host=host)
    host_trust.message_refused(
        sender="hv-admin", task="conductor.instance_built", reason=MessageRefusal.Reason.NOT_ITS_OWN, detail="x"
    )
    listing = admin_client.get("/admin/portal/hostcredential/").content.decode()
    assert "hv-admin" in listing and credential.fingerprint in listing
    refusals = admin_client.get("/admin/portal/messagerefusal/").content.decode()
    assert "conductor.instance_built" in refusals and "hv-admin" in refusals

    response = admin_client.post(
        "/admin/portal/hostcredential/", {"action": "revoke", "_selected_action": [credential.pk]}
    )
    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    assert host_trust.public_key_of("hv-admin") is None
    assert host_trust.public_key_of(signing.CONTROL_PLANE) is not None


def test_image_quotas_are_set_per_project_where_the_other_quotas_are(admin_client, django_user_model):
    project = Project.objects.create(name="tenant")
    user = django_user_model.objects.create_user("someone", password="x")

    response = admin_client.post(
        "/admin/portal/quotalimit/add/",
        {"project": project.pk, "user": "", "resource": "image_size_total", "hard_limit": "2048"},
    )
    assert response.status_code == 302, response.content.decode()
    assert QuotaLimit.objects.get(project=project, user=None, resource="image_size_total").hard_limit == 2048

    per_user = admin_client.post(
        "/admin/portal/quotalimit/add/",
        {"project": project.pk, "user": user.pk, "resource": "image_count_total", "hard_limit": "5"},
    )
    assert per_user.status_code == 200
    assert "image_count_total is set per project only" in per_user.content.decode()
    assert not QuotaLimit.objects.filter(resource="image_count_total").exists()
