"""Open console sessions end with their user's rights: the real proxy, the portal's consoleauth view on a
live server, and a real QEMU screen. Removing a membership, lowering it to reader or deactivating the user
closes the websocket at the proxy's next check."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from consoleproxy_services import PORTAL_ORIGIN, ConsoleAuthEndpoint, start_proxy
from django.conf import settings
from django.test import Client

from portal.models import ComputeHost, ConsoleSession, ConsoleToken, Role
from portal.services.projects_admin import membership_remove, membership_set, user_deactivate
from tests.factories import InstanceFactory, MembershipFactory
from tests.processes import wait_until
from tests.wsclient import ConnectionClosed, WebSocketClient

pytestmark = pytest.mark.integration

RFB_VERSION = b"RFB 003.008\n"
CHECK_INTERVAL = 0.5


@pytest.fixture(scope="module")
def portal_proxy(tmp_path_factory, live_server):
    """A proxy that asks the portal itself, and checks its sessions in twice a second."""
    consoleauth = ConsoleAuthEndpoint(
        url=f"{live_server.url}/internal/consoleauth/", secret=settings.CONSOLE["AUTH_SECRET"]
    )
    running = start_proxy(
        tmp_path_factory.mktemp("portal-proxy"), consoleauth, CONSOLEPROXY_SESSION_CHECK_INTERVAL=str(CHECK_INTERVAL)
    )
    yield running
    running.stop()


@pytest.fixture
def member(transactional_db, qemu_vnc):
    """A member signed in to the portal, and their running instance whose screen is QEMU's."""
    membership = MembershipFactory(role=Role.MEMBER)
    client = Client()
    client.force_login(membership.user)
    host = ComputeHost.objects.create(name="node1", vcpus=8, memory_mb=16384, disk_gb=100)
    instance = InstanceFactory(
        project=membership.project, user=membership.user, host=host, vnc_host=qemu_vnc.host, vnc_port=qemu_vnc.port
    )
    return SimpleNamespace(membership=membership, user=membership.user, client=client, instance=instance)


def open_console(proxy, member) -> WebSocketClient:
    response = member.client.post(f"/instances/{member.instance.uuid}/console/token")
    assert response.status_code == 200, response.content
    token = response.json()["websocket_url"].rsplit("/token/", 1)[1]
    ws = WebSocketClient.connect("127.0.0.1", proxy.port, f"/token/{token}", origin=PORTAL_ORIGIN)
    assert ws.recv_exactly(12) == RFB_VERSION
    return ws


def closed_by_server(ws: WebSocketClient, timeout: float) -> ConnectionClosed:
    ws._sock.settimeout(timeout)
    with pytest.raises(ConnectionClosed) as excinfo:
        while True:
            ws.recv_message()
    return excinfo.value


TAKE_AWAY = {
    "membership removed": lambda m: membership_remove(membership=m.membership),
    "lowered to reader": lambda m: membership_set(project=m.membership.project, user=m.user, role=Role.READER),
    "user deactivated": lambda m: user_deactivate(user=m.user),
}


@pytest.mark.parametrize("change", sorted(TAKE_AWAY))
def test_an_open_session_is_closed_when_its_users_rights_end(portal_proxy, member, change):
    ws = open_console(portal_proxy, member)
    try:
        session = ConsoleSession.objects.get(user=member.user, closed_at__isnull=True)
        # It lives while the checks say so.
        wait_until(
            lambda: ConsoleSession.objects.get(pk=session.pk).last_seen_at > session.opened_at,
            5,
            interval=0.05,
            message="the session's first check-in",
        )
        time.sleep(CHECK_INTERVAL * 2)
        ws.send_binary(RFB_VERSION)  # still relayed: QEMU answers with its security types
        assert ws.recv_exactly(1)[0] >= 1
        TAKE_AWAY[change](member)
        closed = closed_by_server(ws, timeout=CHECK_INTERVAL * 6)
    finally:
        ws.close()
    assert (closed.code, closed.reason) == (4002, "the console token was revoked")
    session = wait_until(
        lambda: ConsoleSession.objects.filter(pk=session.pk, closed_at__isnull=False).first(),
        5,
        interval=0.05,
        message="the session to be closed",
    )
    assert session.closed_reason == "the console token was revoked"
    assert not ConsoleToken.objects.filter(user=member.user).exists()
