"""The portal's pages through Django's test client: sign-in, projects, the dashboard, lists and labels."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from portal.models import QuotaLimit, Role
from portal.services.lifecycle import compare_and_swap
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.integration


def labels_and_controls(html: str) -> tuple[set[str], set[str]]:
    """The ids labels point at, and the ids of every visible form control."""
    labelled = set(re.findall(r'<label[^>]* for="([^"]+)"', html))
    controls = set()
    for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
        if 'type="hidden"' in tag:
            continue
        match = re.search(r'\bid="([^"]+)"', tag)
        assert match, f"a form control without an id: {tag}"
        controls.add(match.group(1))
    return labelled, controls


def assert_every_control_labelled(html: str) -> None:
    labelled, controls = labels_and_controls(html)
    assert controls, "no form controls found"
    assert controls <= labelled, f"controls without a <label>: {controls - labelled}"


def test_anonymous_visitors_are_sent_to_the_login_page(db):
    response = Client().get("/instances/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/instances/")


def test_logging_in_with_the_form_and_out_with_the_button(db):
    member = MembershipFactory()
    client = Client()
    page = client.get("/login/")
    assert_every_control_labelled(page.content.decode())
    assert ">Log in</button>" in page.content.decode()
    wrong = client.post("/login/", {"username": member.user.username, "password": "nope"})
    assert wrong.status_code == 200 and 'role="alert"' in wrong.content.decode()
    response = client.post("/login/", {"username": member.user.username, "password": "secret"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/logout/").status_code == 405  # logging out is a POST, from the button
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_a_user_without_a_project_is_told_so(db):
    from tests.factories import UserFactory

    client = Client()
    client.force_login(UserFactory())
    response = client.get("/")
    assert response.status_code == 403
    assert "Ask an administrator" in response.content.decode()


def test_switching_project_changes_what_the_pages_show(portal_member):
    other = ProjectFactory(name="second")
    MembershipFactory(user=portal_member.user, project=other, role=Role.MEMBER)
    portal_member.instance(name="in-first")
    page = portal_member.client.get("/instances/").content.decode()
    assert "in-first" in page and f'value="{other.pk}"' in page
    assert '<label for="project-switch">Project</label>' in page
    response = portal_member.client.post("/project/", {"project": other.pk, "next": "/instances/"})
    assert response.status_code == 302 and response["Location"] == "/instances/"
    page = portal_member.client.get("/instances/").content.decode()
    assert "in-first" not in page
    assert "Instances in second" in page


def test_a_project_the_user_has_no_role_in_cannot_be_chosen(portal_member):
    stranger_project = ProjectFactory()
    portal_member.client.post("/project/", {"project": stranger_project.pk})
    page = portal_member.client.get("/instances/").content.decode()
    assert f"Instances in {portal_member.project.name}" in page


def test_a_redirect_after_switching_stays_on_this_site(portal_member):
    response = portal_member.client.post(
        "/project/", {"project": portal_member.project.pk, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_the_dashboard_counts_instances_by_state_and_shows_quota_bars(portal_member, flavor):
    QuotaLimit.objects.create(project=portal_member.project, resource="instances", hard_limit=4)
    QuotaLimit.objects.create(project=portal_member.project, resource="cores", hard_limit=-1)
    portal_member.instance(flavor=flavor)
    portal_member.instance(flavor=flavor)
    portal_member.instance(flavor=flavor, vm_state="stopped", power_state=4)
    portal_member.instance(flavor=flavor, vm_state="deleted")
    html = portal_member.client.get("/").content.decode()
    states = dict(re.findall(r'<tr data-status="(\w+)"><td[^>]*>\w+</td><td>(\d+)</td>', html))
    assert states == {"ACTIVE": "2", "SHUTOFF": "1"}
    assert "Instances: 3 of 4" in html
    assert re.search(r'<progress id="quota-instances" class="quota-ok" value="3" max="4">', html)
    assert "vCPUs: 6 of unlimited" in html
    assert "RAM: 3072 MB of 51200 MB" in html  # Nova's default limit
    assert_every_control_labelled(html)


def test_the_dashboard_summary_is_fetchable_alone(portal_member):
    response = portal_member.client.get("/dashboard/summary")
    assert response.status_code == 200
    assert "<html" not in response.content.decode()
    assert 'id="quota-instances"' in response.content.decode()


def test_the_instance_list_shows_the_buttons_the_state_table_allows(portal_member, host):
    active = portal_member.instance(name="web-1", host=host, vnc_port=5900, addresses=[{"addr": "10.0.0.5"}])
    stopped = portal_member.instance(name="web-2", host=host, vm_state="stopped", power_state=4)
    html = portal_member.client.get("/instances/").content.decode()
    row = re.search(rf'<tr id="instance-{active.uuid}".*?</tr>', html, re.S).group(0)
    assert 'aria-label="Stop web-1">Stop</button>' in row
    assert 'aria-label="Console of web-1">Console</a>' in row
    assert "Start" not in row and "10.0.0.5" in row
    row = re.search(rf'<tr id="instance-{stopped.uuid}".*?</tr>', html, re.S).group(0)
    assert 'aria-label="Start web-2">Start</button>' in row
    assert "Console" not in row and ">Stop<" not in row
    assert "node1" not in html  # hosts are for admins


def test_readers_see_no_buttons(portal_reader, portal_member, host):
    portal_member.instance(name="web-1", host=host, vnc_port=5900)
    html = portal_reader.client.get("/instances/").content.decode()
    assert "web-1" in html and ">Stop<" not in html and "Launch instance" not in html


def test_other_projects_instances_are_not_found(portal_member, db):
    from tests.factories import InstanceFactory

    other = InstanceFactory()
    assert portal_member.client.get(f"/instances/{other.uuid}/").status_code == 404
    assert portal_member.client.post(f"/instances/{other.uuid}/action", {"action": "stop"}).status_code == 404
    assert portal_member.client.get(f"/instances/{other.uuid}/console/").status_code == 404


def test_the_detail_page_shows_status_log_fault_and_host_for_admins(portal_admin, host):
    instance = portal_admin.instance(
        name="db-1", host=host, vm_state="error", power_state=0, addresses=[{"addr": "10.0.0.9"}]
    )
    from portal.models import InstanceAction, InstanceFault
    from portal.services.lifecycle import record_event

    action = InstanceAction.objects.create(
        instance=instance, action="create", request_id="req-1", user=portal_admin.user
    )
    record_event(action, "api_create")
    record_event(action, "build_failed", result="Error", host="node1", details="disk full")
    InstanceFault.objects.create(instance=instance, code=500, message="Build of the instance failed", details="trace")
    html = portal_admin.client.get(f"/instances/{instance.uuid}/").content.decode()
    assert 'id="instance-status" class="status status-ERROR' in html
    assert '<dd id="instance-host">node1</dd>' in html
    assert "Fault 500:</strong> Build of the instance failed" in html
    assert '<li data-event="build_failed">build_failed: <span class="status status-ERROR">Error</span> on node1' in html
    assert "10.0.0.9" in html
    assert ">Delete</button>" in html and ">Stop</button>" in html  # from ERROR the table allows these


def test_members_do_not_see_the_host_or_the_fault_details(portal_member, host):
    instance = portal_member.instance(host=host, vm_state="error", power_state=0)
    from portal.models import InstanceFault

    InstanceFault.objects.create(instance=instance, code=500, message="It broke", details="secret trace")
    html = portal_member.client.get(f"/instances/{instance.uuid}/").content.decode()
    assert "It broke" in html
    assert "secret trace" not in html and "node1" not in html and 'id="instance-host"' not in html


def test_a_stop_button_goes_through_the_lifecycle_service(portal_member, host):
    instance = portal_member.instance(host=host)
    response = portal_member.client.post(f"/instances/{instance.uuid}/action", {"action": "stop"})
    assert response.status_code == 302 and response["Location"] == f"/instances/{instance.uuid}/"
    instance.refresh_from_db()
    assert instance.task_state == "powering-off"
    assert instance.actions.get().action == "stop"
    # Again while the stop runs: the state table refuses, and the page says why.
    response = portal_member.client.post(f"/instances/{instance.uuid}/action", {"action": "stop"}, follow=True)
    assert "while it is in task_state powering-off" in response.content.decode()


def test_an_unknown_action_is_refused(portal_member, host):
    instance = portal_member.instance(host=host)
    response = portal_member.client.post(f"/instances/{instance.uuid}/action", {"action": "explode"}, follow=True)
    assert "There is no such action." in response.content.decode()
    instance.refresh_from_db()
    assert instance.task_state is None


def test_a_reader_cannot_press_buttons(portal_reader, portal_member, host):
    instance = portal_member.instance(host=host)
    response = portal_reader.client.post(f"/instances/{instance.uuid}/action", {"action": "stop"}, follow=True)
    assert "read-only" in response.content.decode()
    instance.refresh_from_db()
    assert instance.task_state is None


def test_deleting_an_unplaced_instance_finishes_at_once(portal_member):
    instance = portal_member.instance(vm_state="error", power_state=0)
    response = portal_member.client.post(f"/instances/{instance.uuid}/action", {"action": "delete"})
    assert response["Location"] == "/instances/"
    instance.refresh_from_db()
    assert instance.vm_state == "deleted"


def test_flavors_images_and_keypairs_pages_list_what_the_project_may_use(portal_member, flavor, image):
    from tests.factories import FlavorFactory, ImageFactory

    FlavorFactory(name="secret.flavor", is_public=False)
    ImageFactory(name="their-private", visibility="private")
    flavors = portal_member.client.get("/flavors/").content.decode()
    assert "m1.small" in flavors and "secret.flavor" not in flavors
    images = portal_member.client.get("/images/").content.decode()
    assert "cirros" in images and "their-private" not in images


def test_the_list_updates_itself_rows_change_state(portal_member, host):
    """The row partial the live stream sends is the same as the page's."""
    instance = portal_member.instance(host=host)
    compare_and_swap(instance, expected_task_states=[None], task_state="powering-off")
    html = portal_member.client.get("/instances/").content.decode()
    assert 'data-task-state="powering-off"' in html


@pytest.mark.parametrize("count", [2, 12])
def test_the_instance_list_takes_the_same_queries_for_any_number_of_instances(
    portal_admin, host, count, django_assert_max_num_queries
):
    for number in range(count):
        portal_admin.instance(name=f"vm-{number}", host=host, vm_state="error" if number % 2 else "active")
    with django_assert_max_num_queries(6):
        html = portal_admin.client.get("/instances/").content.decode()
    assert html.count('<tr id="instance-') == count


def test_the_instance_list_costs_the_same_queries_whatever_its_length(portal_admin, host):
    """Each row shows its host, status, addresses and console button from the one query for the list
    (and one for the faults of those in ERROR)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from portal.models import InstanceFault
    from tests.factories import InstanceFactory

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            page = portal_admin.client.get("/instances/")
        assert page.status_code == 200
        return len(captured)

    broken = InstanceFactory(project=portal_admin.project, host=host, vm_state="error")
    InstanceFault.objects.create(instance=broken, code=500, message="the build failed")
    InstanceFactory(project=portal_admin.project, host=host, vnc_port=5900)
    few = queries()
    for n in range(6):
        InstanceFactory(project=portal_admin.project, host=host if n % 2 else None, vnc_port=5901 + n)
    broken = InstanceFactory(project=portal_admin.project, host=host, vm_state="error")
    InstanceFault.objects.create(instance=broken, code=500, message="again")
    assert queries() == few
    assert "node1" in portal_admin.client.get("/instances/").content.decode()
