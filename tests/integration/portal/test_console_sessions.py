"""Console tokens for the portal's page, and console sessions as the proxy reports them."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext, resolve_context
from portal.models import ConsoleSession, ConsoleToken, Instance, InstanceActionEvent, Membership, Role
from portal.services import actions
from portal.services.actions import instance_action
from portal.services.console_sessions import console_sessions_close_stale
from portal.services.consoles import ConsoleForbidden, console_token_create
from portal.services.identity import (
    keystone_membership_sync,
    keystone_project_sync,
    keystone_sign_in_sync,
    keystone_user_sync,
)
from portal.services.lifecycle import compare_and_swap
from portal.services.projects_admin import membership_remove, membership_set, user_deactivate
from portal.states import VmState
from tests.factories import InstanceFactory, MembershipFactory

from .conftest import PortalUser

pytestmark = pytest.mark.integration

SECRET_HEADER = "HTTP_X_CONSOLE_AUTH_SECRET"


@pytest.fixture
def running(portal_member, host):
    return portal_member.instance(name="web-1", host=host, vnc_host="127.0.0.1", vnc_port=5901)


def new_token(user, instance) -> str:
    response = user.client.post(f"/instances/{instance.uuid}/console/token")
    assert response.status_code == 200, response.content
    url = response.json()["websocket_url"]
    return re.fullmatch(r"ws://127\.0\.0\.1:6080/token/([A-Za-z0-9_-]+)", url).group(1)


def proxy(settings) -> Client:
    client = Client()
    client.defaults[SECRET_HEADER] = settings.CONSOLE["AUTH_SECRET"]
    return client


def open_session(client, token, *, max_sessions=1, client_address="10.1.2.3"):
    return client.post(
        "/internal/consoleauth/sessions",
        {"token": token, "client": client_address, "max_sessions": max_sessions},
        content_type="application/json",
    )


def test_the_console_page_is_the_portals_and_holds_no_token(portal_member, running):
    response = portal_member.client.get(f"/instances/{running.uuid}/console/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'import(novncBase + "core/rfb.js")' in html and 'const novncBase = "http://127.0.0.1:6080/"' in html
    assert ">Send Ctrl-Alt-Del</button>" in html and ">Reconnect</button>" in html
    assert "token=" not in html and "/token/" not in html
    assert ConsoleToken.objects.count() == 0


def test_a_token_is_made_per_connection_for_this_user_and_instance(portal_member, running, settings):
    token = new_token(portal_member, running)
    stored = ConsoleToken.objects.get()
    assert stored.token_hash == ConsoleToken.hash(token) and token not in stored.token_hash
    assert (stored.instance, stored.user) == (running, portal_member.user)
    ttl = (stored.expires_at - timezone.now()).total_seconds()
    assert settings.CONSOLE["TOKEN_TTL"] - 5 < ttl <= settings.CONSOLE["TOKEN_TTL"]
    assert new_token(portal_member, running) != token


def test_no_token_for_an_instance_that_is_not_running(portal_member, host):
    stopped = portal_member.instance(host=host, vm_state="stopped", power_state=4)
    response = portal_member.client.post(f"/instances/{stopped.uuid}/console/token")
    assert response.status_code == 409
    assert "not ready for a console" in response.json()["error"]


def test_tokens_need_a_post_from_the_page(portal_member, running, stranger_instance):
    assert portal_member.client.get(f"/instances/{running.uuid}/console/token").status_code == 405
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(portal_member.user)
    assert csrf_client.post(f"/instances/{running.uuid}/console/token").status_code == 403
    assert portal_member.client.post(f"/instances/{stranger_instance.uuid}/console/token").status_code == 404


@pytest.fixture
def stranger_instance(db):
    from tests.factories import InstanceFactory

    return InstanceFactory(vnc_port=5999)


def test_a_session_opens_checks_in_and_closes_with_the_action_log(portal_member, running, settings):
    token = new_token(portal_member, running)
    client = proxy(settings)
    response = open_session(client, token)
    assert response.status_code == 201
    session = ConsoleSession.objects.get(pk=response.json()["session_id"])
    assert (session.instance, session.user, session.client) == (running, portal_member.user, "10.1.2.3")
    assert session.action.action == "console"
    assert client.post(f"/internal/consoleauth/sessions/{session.pk}/check").json() == {"close": False}
    closed = client.post(
        f"/internal/consoleauth/sessions/{session.pk}/close", {"reason": "closed by the client"}, "application/json"
    )
    assert closed.status_code == 200
    session.refresh_from_db()
    assert session.closed_at is not None and session.closed_reason == "closed by the client"
    events = list(InstanceActionEvent.objects.filter(action=session.action).values_list("event", "details"))
    assert events == [("console_open", "novnc from 10.1.2.3"), ("console_close", "closed by the client")]
    # The instance's page shows both, and the page learns why the session ended.
    page = portal_member.client.get(f"/instances/{running.uuid}/").content.decode()
    assert 'data-event="console_open"' in page and 'data-event="console_close"' in page
    latest = portal_member.client.get(f"/instances/{running.uuid}/console/session").json()["session"]
    assert latest["closed_reason"] == "closed by the client"


def test_the_session_limit_per_token_is_held_under_the_tokens_lock(portal_member, running, settings):
    token = new_token(portal_member, running)
    client = proxy(settings)
    assert open_session(client, token).status_code == 201
    refused = open_session(client, token)
    assert refused.status_code == 409
    assert refused.json()["error"] == "the token already has 1 open console session(s) (at most 1)"
    assert open_session(client, token, max_sessions=2).status_code == 201


def test_sessions_whose_proxy_went_silent_stop_counting(portal_member, running, settings):
    token = new_token(portal_member, running)
    client = proxy(settings)
    first = ConsoleSession.objects.get(pk=open_session(client, token).json()["session_id"])
    ConsoleSession.objects.filter(pk=first.pk).update(last_seen_at=timezone.now() - timedelta(minutes=5))
    assert open_session(client, token).status_code == 201
    first.refresh_from_db()
    assert first.closed_reason == "the console proxy stopped reporting the session"
    assert console_sessions_close_stale() == 0


def test_unknown_expired_and_revoked_tokens_open_nothing(portal_member, running, settings):
    client = proxy(settings)
    assert open_session(client, "x" * 40).status_code == 404
    token = new_token(portal_member, running)
    ConsoleToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert open_session(client, token).status_code == 404
    token = new_token(portal_member, running)
    session_id = open_session(client, token).json()["session_id"]
    # Stopping the instance revokes its tokens; the proxy's next check closes the session.
    compare_and_swap(running, expected_task_states=[None], vm_state="stopped")
    answer = client.post(f"/internal/consoleauth/sessions/{session_id}/check").json()
    assert answer == {"close": True, "reason": "the console token was revoked"}


def test_the_internal_endpoints_need_the_secret_and_sane_bodies(portal_member, running, settings):
    token = new_token(portal_member, running)
    anonymous = Client()
    assert open_session(anonymous, token).status_code == 403
    assert anonymous.post("/internal/consoleauth/sessions/1/check").status_code == 403
    client = proxy(settings)
    assert client.post("/internal/consoleauth/sessions", "not json", "application/json").status_code == 400
    assert open_session(client, token, max_sessions=0).status_code == 400
    assert open_session(client, token, max_sessions=True).status_code == 400
    assert client.get("/internal/consoleauth/sessions").status_code == 405
    assert (
        client.post("/internal/consoleauth/sessions/999/close", {"reason": "x"}, "application/json").status_code == 404
    )
    assert client.post("/internal/consoleauth/sessions/999/check").json()["close"] is True
    assert ConsoleSession.objects.count() == 0


def test_an_admin_ends_a_session_and_the_next_check_closes_it(portal_member, running, settings, admin_client):
    token = new_token(portal_member, running)
    client = proxy(settings)
    session_id = open_session(client, token).json()["session_id"]
    changelist = admin_client.get("/admin/portal/consolesession/?state=open").content.decode()
    assert "web-1" in changelist and portal_member.user.username in changelist and "10.1.2.3" in changelist
    response = admin_client.post(
        "/admin/portal/consolesession/", {"action": "end_sessions", "_selected_action": [session_id]}
    )
    assert response.status_code == 302
    answer = client.post(f"/internal/consoleauth/sessions/{session_id}/check").json()
    assert answer == {"close": True, "reason": "ended by admin"}
    client.post(f"/internal/consoleauth/sessions/{session_id}/close", {"reason": "ended by admin"}, "application/json")
    session = ConsoleSession.objects.get(pk=session_id)
    assert session.closed_reason == "ended by admin"
    events = [e for (e,) in InstanceActionEvent.objects.filter(action=session.action).values_list("event")]
    assert events == ["console_open", "console_end_requested", "console_close"]


# --- who may open a console ---------------------------------------------------------------------------


def test_a_reader_gets_no_console_page_token_or_button(portal_reader, portal_member, running):
    console_path = f"/instances/{running.uuid}/console/"
    assert portal_reader.client.get(console_path).status_code == 403
    refused = portal_reader.client.post(f"/instances/{running.uuid}/console/token")
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert not ConsoleToken.objects.exists()
    for listing in ("/instances/", f"/instances/{running.uuid}/"):
        assert console_path not in portal_reader.client.get(listing).content.decode()
        assert console_path in portal_member.client.get(listing).content.decode()


# --- where a token leads -------------------------------------------------------------------------------


def consoleauth(client, token):
    return client.get(f"/internal/consoleauth/{token}")


def test_consoleauth_leads_where_the_screen_is_now_not_where_it_was(portal_member, running, settings):
    token = new_token(portal_member, running)
    client = proxy(settings)
    assert consoleauth(client, token).json()["port"] == 5901
    ctx = RequestContext(user=portal_member.user, project=portal_member.project, role=Role.MEMBER)
    instance_action(ctx=ctx, instance=running, action="reboot_hard")
    # While QEMU restarts, the row still names the port it is leaving: nothing until the host reports.
    assert consoleauth(client, token).status_code == 404
    assert open_session(client, token).status_code == 404
    moved = rpc.ActionResult(
        instance_uuid=str(running.uuid),
        host="node1",
        request_id=ctx.request_id,
        action="reboot",
        power_state=rpc.RUNNING,
        vnc_host="127.0.0.1",
        vnc_port=5907,
    )
    actions.action_result(report=moved)  # what the conductor does with the host's report
    answer = consoleauth(client, token)
    assert answer.status_code == 200
    assert (answer.json()["host"], answer.json()["port"]) == ("127.0.0.1", 5907)
    assert open_session(client, token).status_code == 201


def test_consoleauth_refuses_an_instance_without_a_screen_now(portal_member, running, settings):
    token = new_token(portal_member, running)
    client = proxy(settings)
    Instance.objects.filter(pk=running.pk).update(vnc_port=None)
    assert consoleauth(client, token).status_code == 404
    Instance.objects.filter(pk=running.pk).update(vnc_port=5901, vm_state=VmState.DELETED)
    assert consoleauth(client, token).status_code == 404
    Instance.objects.filter(pk=running.pk).update(vm_state=VmState.ACTIVE)
    assert consoleauth(client, token).json()["port"] == 5901


# --- rights taken away take the consoles with them -----------------------------------------------------


def open_console(user, instance, settings) -> int:
    """A session the proxy opened with a fresh token of ``user``; its check says it may go on."""
    client = proxy(settings)
    session_id = open_session(client, new_token(user, instance)).json()["session_id"]
    assert client.post(f"/internal/consoleauth/sessions/{session_id}/check").json() == {"close": False}
    return session_id


def check(settings, session_id) -> dict:
    return proxy(settings).post(f"/internal/consoleauth/sessions/{session_id}/check").json()


REVOKED = {"close": True, "reason": "the console token was revoked"}


def test_removing_a_membership_revokes_that_projects_consoles_only(portal_member, running, host, settings):
    colleague = PortalUser(Role.MEMBER, project=portal_member.project)
    in_project = open_console(colleague, running, settings)
    elsewhere = MembershipFactory(user=colleague.user, role=Role.MEMBER).project
    colleague.client.post("/project/", {"project": elsewhere.pk})
    their_own = InstanceFactory(project=elsewhere, user=colleague.user, host=host, vnc_host="127.0.0.1", vnc_port=5902)
    in_their_own = open_console(colleague, their_own, settings)
    membership_remove(membership=colleague.membership)
    assert check(settings, in_project) == REVOKED
    assert check(settings, in_their_own) == {"close": False}
    assert list(ConsoleToken.objects.values_list("instance", flat=True)) == [their_own.pk]


def test_a_role_lowered_to_reader_revokes_its_consoles(portal_member, running, settings):
    session_id = open_console(portal_member, running, settings)
    membership_set(project=portal_member.project, user=portal_member.user, role=Role.READER)
    assert check(settings, session_id) == REVOKED
    assert not ConsoleToken.objects.exists()
    assert portal_member.client.post(f"/instances/{running.uuid}/console/token").status_code == 403


def test_a_request_resolved_before_a_role_change_leaves_no_token(portal_member, running):
    """The role is read again under the membership's lock when the token is made, not only at the request's start."""
    ctx = resolve_context(portal_member.user, portal_member.project.pk)
    membership_set(project=portal_member.project, user=portal_member.user, role=Role.READER)
    with pytest.raises(ConsoleForbidden):
        console_token_create(ctx=ctx, instance=running)
    assert not ConsoleToken.objects.exists()


def test_a_superuser_without_a_role_in_the_project_still_opens_its_consoles(admin_user, running):
    token, _expires_at = console_token_create(ctx=resolve_context(admin_user, running.project_id), instance=running)
    assert ConsoleToken.objects.get(token_hash=ConsoleToken.hash(token)).user == admin_user


def test_an_admin_who_loses_the_role_loses_every_projects_consoles(portal_admin, running, settings):
    """An admin opens consoles of any project's servers, so losing the role anywhere revokes them all."""
    session_id = open_console(portal_admin, running, settings)
    membership_set(project=portal_admin.project, user=portal_admin.user, role=Role.MEMBER)
    assert check(settings, session_id) == REVOKED


def test_a_deactivated_users_consoles_close_and_tokens_go(portal_member, running, settings):
    session_id = open_console(portal_member, running, settings)
    token = new_token(portal_member, running)
    user_deactivate(user=portal_member.user)
    assert check(settings, session_id) == REVOKED
    assert not ConsoleToken.objects.exists()
    assert consoleauth(proxy(settings), token).status_code == 404


def test_a_user_deactivated_behind_the_services_back_is_closed_at_the_next_check(portal_member, running, settings):
    session_id = open_console(portal_member, running, settings)
    token = new_token(portal_member, running)
    type(portal_member.user).objects.filter(pk=portal_member.user.pk).update(is_active=False)
    assert check(settings, session_id) == {"close": True, "reason": "the user was deactivated"}
    assert consoleauth(proxy(settings), token).status_code == 404
    assert open_session(proxy(settings), token).status_code == 404


def test_the_admins_project_and_user_pages_revoke_consoles(portal_member, running, admin_client, settings):
    session_id = open_console(portal_member, running, settings)
    project = portal_member.project
    membership = portal_member.membership
    data = {
        "name": project.name, "description": project.description, "enabled": "on",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": membership.pk, "memberships-0-project": project.pk,
        "memberships-0-user": portal_member.user.pk, "memberships-0-role": "member", "memberships-0-DELETE": "on",
    }  # fmt: skip
    response = admin_client.post(f"/admin/portal/project/{project.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert check(settings, session_id) == REVOKED

    Membership.objects.create(user=portal_member.user, project=project, role=Role.MEMBER)
    session_id = open_console(portal_member, running, settings)
    user = portal_member.user
    joined = user.date_joined
    # "Active" unticked: the form sends no is_active.
    data = {
        "username": user.username, "first_name": "", "last_name": "", "email": "",
        "date_joined_0": joined.strftime("%Y-%m-%d"), "date_joined_1": joined.strftime("%H:%M:%S"),
    }  # fmt: skip
    response = admin_client.post(f"/admin/auth/user/{user.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    user.refresh_from_db()
    assert not user.is_active
    assert check(settings, session_id) == REVOKED


def test_keystones_mirror_revokes_what_a_role_no_longer_allows(host, settings):
    user = keystone_user_sync(user_id="a1b2c3", name="kate")
    project = keystone_project_sync(project_id="d4e5f6", name="research", domain="Default")
    keystone_membership_sync(user=user, project=project, role=Role.MEMBER)
    kate = SimpleNamespace(client=Client(), user=user)
    kate.client.force_login(user)
    running = InstanceFactory(project=project, user=user, host=host, vnc_host="127.0.0.1", vnc_port=5903)

    session_id = open_console(kate, running, settings)
    keystone_membership_sync(user=user, project=project, role=Role.MEMBER)  # unchanged: nothing happens
    assert check(settings, session_id) == {"close": False}
    keystone_membership_sync(user=user, project=project, role=Role.READER)
    assert check(settings, session_id) == REVOKED

    keystone_membership_sync(user=user, project=project, role=Role.MEMBER)
    session_id = open_console(kate, running, settings)
    keystone_membership_sync(user=user, project=project, role=None)
    assert check(settings, session_id) == REVOKED

    keystone_membership_sync(user=user, project=project, role=Role.MEMBER)
    session_id = open_console(kate, running, settings)
    keystone_sign_in_sync(user_id="a1b2c3", user_name="kate", projects=[])  # the grant is gone at sign-in
    assert check(settings, session_id) == REVOKED
