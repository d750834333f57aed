"""Live updates: server-sent events from the live server, and under gunicorn's threaded workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.test import Client
from django.utils import timezone

from compute_tasks import rpc
from portal.models import ComputeHost, Instance
from portal.services.build_progress import build_progress
from portal.services.lifecycle import compare_and_swap, mark_deleted, task_finish
from portal.web.live import open_streams
from tests.factories import InstanceFactory, MembershipFactory
from tests.processes import ROOT, VENV_BIN, database_url, free_port, wait_until

pytestmark = pytest.mark.integration


class EventStream:
    """A server-sent event stream read line by line, with a deadline on every wait."""

    def __init__(self, response: requests.Response):
        self.response = response
        self.lines = self._lines()
        self.retry = None
        self.ended = False

    def _lines(self):
        """Lines as soon as their bytes arrive (iter_lines would wait for a full chunk or the end)."""
        buffer = b""
        while True:
            chunk = self.response.raw.read1(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode().rstrip("\r")

    def next_event(self, timeout: float = 10, match=None) -> dict | None:
        """The next ``instance`` event's data (the next that ``match`` accepts), or None when the stream ends.

        Rows changed a moment before the page was rendered may come once more (the stream looks back a
        little, so that nothing committed late is missed): ``match`` skips them.
        """
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        for line in self.lines:
            if time.monotonic() > deadline:
                raise AssertionError("no event in time")
            if line.startswith("retry:"):
                self.retry = int(line.split(":", 1)[1])
            elif line.startswith(":"):
                continue
            elif line == "":
                if fields.get("event") == "instance":
                    event = {**json.loads(fields["data"]), "_id": fields.get("id")}
                    if match is None or match(event):
                        return event
                fields = {}
            else:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        self.ended = True
        return None

    def close(self):
        self.response.close()


def signed_in_session(base_url: str, user) -> requests.Session:
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    return session


def open_stream(session, url: str, **params) -> EventStream:
    response = session.get(url, params=params, stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return EventStream(response)


@pytest.fixture
def member(transactional_db, settings):
    settings.PORTAL = {**settings.PORTAL, "LIVE_STREAM_SECONDS": 8}
    yield MembershipFactory()
    time.sleep(0.1)


def test_the_list_stream_sends_each_change_as_a_rendered_row(live_server, member):
    host = ComputeHost.objects.create(name="live-hv")
    instance = InstanceFactory(
        project=member.project, user=member.user, vm_state="building", task_state="spawning", host=host
    )
    session = signed_in_session(live_server.url, member.user)
    stream = open_stream(session, f"{live_server.url}/instances/events", since=timezone.now().isoformat())
    try:
        task_finish(
            instance=instance,
            expected_task_state="spawning",
            event="built",
            reported_by=host.name,
            vm_state="active",
            power_state=1,
        )
        event = stream.next_event(match=lambda e: e.get("status") == "ACTIVE")
        assert event["uuid"] == str(instance.uuid)
        assert event["status"] == "ACTIVE"
        assert event["html"].startswith(f'<tr id="instance-{instance.uuid}" data-status="ACTIVE"')
        assert stream.retry == 1000
        # A new instance appears, and a deleted one says so.
        newcomer = InstanceFactory(project=member.project, user=member.user, name="newcomer")
        event = stream.next_event(match=lambda e: e["uuid"] == str(newcomer.uuid))
        assert "newcomer" in event["html"]
        mark_deleted(instance=newcomer, expected_task_states=[None], event="gone")
        event = stream.next_event(match=lambda e: e.get("deleted"))
        assert event["uuid"] == str(newcomer.uuid)
        assert event["_id"]  # the moment the browser resumes from
    finally:
        stream.close()


def test_a_builds_steps_and_download_percent_arrive_live(live_server, member):
    """What the host reports while it builds moves the instance page's progress bar as it comes."""
    host = ComputeHost.objects.create(name="live-hv")
    instance = InstanceFactory(
        project=member.project, user=member.user, vm_state="building", task_state="networking", host=host
    )
    session = signed_in_session(live_server.url, member.user)
    page = session.get(f"{live_server.url}/instances/{instance.uuid}/", timeout=10).text
    assert "Networking" in page and '<progress max="100" value="5"' in page
    stream = open_stream(
        session, f"{live_server.url}/instances/{instance.uuid}/events", since=timezone.now().isoformat()
    )

    def report(step, percent):
        report = rpc.BuildProgress(
            instance_uuid=str(instance.uuid), host=host.name, request_id="", step=step, percent=percent
        )
        assert build_progress(report=report)

    try:
        report(rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING, 0)
        report(rpc.BUILD_STEP_BLOCK_DEVICE_MAPPING, 50)
        event = stream.next_event(match=lambda e: "Downloading the image: 50 %" in e["html"])
        assert event["task_state"] == "block_device_mapping"
        assert '<progress max="100" value="50"' in event["html"]
        report(rpc.BUILD_STEP_SPAWNING, 0)
        event = stream.next_event(match=lambda e: e["task_state"] == "spawning")
        assert '<progress max="100" value="90"' in event["html"] and "Spawning" in event["html"]
    finally:
        stream.close()
    rows = session.get(f"{live_server.url}/instances/", timeout=10).text
    assert '<progress max="100" value="90"' in rows


def test_other_projects_changes_are_not_sent(live_server, member):
    session = signed_in_session(live_server.url, member.user)
    stream = open_stream(session, f"{live_server.url}/instances/events", since=timezone.now().isoformat())
    try:
        foreign = InstanceFactory(name="foreign")
        mine = InstanceFactory(project=member.project, user=member.user, name="mine")
        compare_and_swap(foreign, expected_task_states=[None], task_state="powering-off")
        compare_and_swap(mine, expected_task_states=[None], task_state="powering-off")
        seen = []
        while True:
            event = stream.next_event()
            seen.append(event["uuid"])
            if event["task_state"] == "powering-off":
                break
        assert event["uuid"] == str(mine.uuid)
        assert str(foreign.uuid) not in seen
    finally:
        stream.close()


def test_a_stream_resumes_from_the_last_event_id(live_server, member):
    old = InstanceFactory(project=member.project, user=member.user, name="old")
    # Changed a minute ago: since the page's time it is news, since a moment ago it is past the stream's
    # look-back.
    Instance.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    session = signed_in_session(live_server.url, member.user)
    long_ago = (timezone.now() - timedelta(minutes=5)).isoformat()
    stream = open_stream(session, f"{live_server.url}/instances/events", since=long_ago)
    try:
        assert stream.next_event()["uuid"] == str(old.uuid)  # changed since the page's time
    finally:
        stream.close()
    resume_from = timezone.now().isoformat()
    time.sleep(0.1)
    newer = InstanceFactory(project=member.project, user=member.user, name="newer")
    # A reconnecting browser sends the last id it saw, which wins over the page's time in the URL.
    response = session.get(
        f"{live_server.url}/instances/events",
        params={"since": long_ago},
        headers={"Last-Event-ID": resume_from},
        stream=True,
        timeout=10,
    )
    stream = EventStream(response)
    try:
        assert stream.next_event()["uuid"] == str(newer.uuid)
    finally:
        stream.close()


def test_the_detail_stream_follows_the_action_log_too(live_server, member):
    from portal.models import InstanceAction
    from portal.services.lifecycle import record_event

    instance = InstanceFactory(project=member.project, user=member.user)
    action = InstanceAction.objects.create(instance=instance, action="console", request_id="req-x", user=member.user)
    session = signed_in_session(live_server.url, member.user)
    stream = open_stream(
        session, f"{live_server.url}/instances/{instance.uuid}/events", since=timezone.now().isoformat()
    )
    try:
        time.sleep(1.2)
        record_event(action, "console_open", details="novnc from 127.0.0.1")  # the instance row is unchanged
        event = stream.next_event(match=lambda e: 'data-event="console_open"' in e["html"])
        assert "novnc from 127.0.0.1" in event["html"]
    finally:
        stream.close()


def test_the_detail_stream_follows_the_instances_ports(live_server, member):
    """A port turning ACTIVE (the host plugged it) changes neither the instance nor its log."""
    from portal.models import Network, Port

    instance = InstanceFactory(project=member.project, user=member.user, networks="ports")
    network = Network.objects.create(project=member.project, name="live-net", segmentation_id=1999)
    port = Port.objects.create(
        network=network, project=member.project, mac_address="fa:16:3e:00:00:01", device_id=str(instance.uuid)
    )
    session = signed_in_session(live_server.url, member.user)
    stream = open_stream(
        session, f"{live_server.url}/instances/{instance.uuid}/events", since=timezone.now().isoformat()
    )
    try:
        time.sleep(1.2)
        Port.objects.filter(pk=port.pk).update(status=Port.Status.ACTIVE, updated_at=timezone.now())
        row = f'<tr data-port="{port.pk}" data-status="ACTIVE">'
        event = stream.next_event(match=lambda e: row in e["html"])
        assert "live-net" in event["html"]
    finally:
        stream.close()


def test_the_detail_stream_follows_the_floating_ips_of_its_ports(live_server, member):
    """A floating IP associated with the instance's port, or taken off it, changes neither the instance row
    nor its ports."""
    from portal.models import Port
    from portal.services import floating_ips, ports, routers
    from portal.services import networks as network_services

    project = member.project
    external = network_services.network_create(project=project, user_is_admin=True, name="ext", external=True)
    network_services.subnet_create(project=project, user_is_admin=True, network=external, cidr="203.0.113.0/24")
    own = network_services.network_create(project=project, user_is_admin=False, name="live-net")
    subnet = network_services.subnet_create(project=project, user_is_admin=False, network=own, cidr="10.30.0.0/24")
    router = routers.router_create(
        project=project, user_is_admin=False, external_gateway_info={"network_id": str(external.pk)}
    )
    routers.router_add_interface(router=router, project=project, user_is_admin=False, subnet_id=str(subnet.pk))
    instance = InstanceFactory(project=project, user=member.user, networks="ports")
    port = ports.port_create(
        project=project, user_is_admin=False, network=own, device_id=str(instance.uuid), device_owner="compute:nova"
    )
    floating_ip = floating_ips.floating_ip_create(project=project, user_is_admin=False, floating_network=external)
    session = signed_in_session(live_server.url, member.user)
    stream = open_stream(
        session, f"{live_server.url}/instances/{instance.uuid}/events", since=timezone.now().isoformat()
    )
    try:
        time.sleep(1.2)
        floating_ips.floating_ip_associate(floating_ip=floating_ip, project=project, user_is_admin=False, port=port)
        row = f'<tr data-floating-ip="{floating_ip.pk}" data-status="ACTIVE">'
        event = stream.next_event(match=lambda e: row in e["html"])
        assert floating_ip.floating_ip_address in event["html"]
        port_updated = Port.objects.get(pk=port.pk).updated_at
        time.sleep(1.2)
        floating_ips.floating_ip_disassociate(floating_ip=floating_ip)
        assert Port.objects.get(pk=port.pk).updated_at == port_updated
        event = stream.next_event(match=lambda e: 'id="no-floating-ips"' in e["html"])
        assert f'data-floating-ip="{floating_ip.pk}"' not in event["html"]
    finally:
        stream.close()


def test_streams_end_by_themselves_and_are_capped_per_process(live_server, member, settings):
    settings.PORTAL = {**settings.PORTAL, "LIVE_STREAM_SECONDS": 2, "LIVE_MAX_STREAMS": 1}
    wait_until(lambda: open_streams() == 0, 15, message="earlier tests' streams to end")  # same process
    session = signed_in_session(live_server.url, member.user)
    started = time.monotonic()
    first = open_stream(session, f"{live_server.url}/instances/events")
    try:
        # The only slot is taken: the second page gets what changed and a longer retry, at once.
        second = open_stream(session, f"{live_server.url}/instances/events")
        assert second.next_event(timeout=5) is None and second.ended
        assert second.retry == 5000
        assert time.monotonic() - started < 1.5
        assert first.next_event(timeout=10) is None and first.ended
        assert 1.5 < time.monotonic() - started < 6
    finally:
        first.close()


def test_anonymous_visitors_get_no_stream(live_server, transactional_db):
    response = requests.get(f"{live_server.url}/instances/events", allow_redirects=False, timeout=10)
    assert response.status_code == 302


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """The api process as the Procfile runs it: gunicorn with threaded workers, on the test database."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.base",
        "DATABASE_URL": database_url(),
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "CONSOLEAUTH_SECRET": settings.CONSOLE["AUTH_SECRET"],
        "CLOUD_STATE_DIR": str(tmp_path),
        "PORTAL_LIVE_STREAM_SECONDS": "20",
        "PORTAL_LIVE_MAX_STREAMS": "2",
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4", "--timeout", "60", "--graceful-timeout", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/login/", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()) from None
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
        log.close()
        from tests.processes import close_other_sessions

        close_other_sessions()


def test_under_gunicorn_threads_streams_leave_room_for_the_api(gunicorn, member):
    instance = InstanceFactory(project=member.project, user=member.user)
    session = signed_in_session(gunicorn, member.user)
    streams = [open_stream(session, f"{gunicorn}/instances/events", since=timezone.now().isoformat()) for _ in range(3)]
    try:
        # Two streams hold their threads; the third was turned away, so two threads still answer pages.
        assert streams[2].next_event(timeout=5, match=lambda e: False) is None and streams[2].retry == 5000
        started = time.monotonic()
        assert session.get(f"{gunicorn}/instances/", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
        compare_and_swap(instance, expected_task_states=[None], task_state="powering-off")
        for stream in streams[:2]:
            event = stream.next_event(timeout=10, match=lambda e: e["task_state"] == "powering-off")
            assert event["uuid"] == str(instance.uuid)
    finally:
        for stream in streams:
            stream.close()
