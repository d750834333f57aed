"""An instance's graphs on its portal page, through the broker from a real compute worker on libvirt's test
driver: the host samples its guest (every second here), keeps the rings, and answers a window of them."""

import json
import signal
import time

import pytest
from django.test import Client

from portal.models import Instance, Role
from tests.http import ApiUser
from tests.processes import Cluster, purge_broker, wait_for_host, wait_until

pytestmark = pytest.mark.integration

HOST = "graphhost1"


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("cluster"))
    cluster.start_conductor()
    cluster.start_compute(HOST, COMPUTE_GRAPHS_INTERVAL="1")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture
def active_server(cluster, transactional_db, settings, live_server, api_user, tiny_flavor, small_image):
    settings.CLOUD = {**settings.CLOUD, "PUBLIC_URL": live_server.url}
    wait_for_host(HOST)
    body = {"server": {"name": "vm", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "auto"}}
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 30, message="the server ACTIVE")
    yield server_id
    api_user.delete(f"/servers/{server_id}")
    wait_until(lambda: Instance.objects.filter(uuid=server_id, vm_state="deleted").exists(), 30, message="the deletion")


def portal_client(api_user) -> Client:
    client = Client()
    client.force_login(api_user.membership.user)
    return client


def graphs(client, server_id, range_=None):
    query = {} if range_ is None else {"range": range_}
    return client.get(f"/instances/{server_id}/graphs", query)


def test_the_portal_draws_what_the_host_sampled_and_any_range_stays_small(cluster, api_user, active_server):
    client = portal_client(api_user)

    def sampled():
        response = graphs(client, active_server)
        assert response.status_code == 200, response.content
        body = response.json()
        used = body["series"].get("memory_used_mib", [])
        cpu = body["series"].get("cpu_percent", [])
        return body if sum(v is not None for v in used) >= 2 and any(v is not None for v in cpu) else None

    body = wait_until(sampled, 30, interval=1, message="two samples of the guest")
    assert (body["resolution"], body["step"]) == ("hour", 10)
    assert set(body) == {"resolution", "start", "step", "series", "no_history"}
    assert all(len(values) == 360 for values in body["series"].values())
    assert body["start"] % 10 == 0 and abs(body["start"] + 359 * 10 - time.time()) < 30
    assert max(v for v in body["series"]["memory_maximum_mib"] if v is not None) > 0
    assert all(0 <= v <= 100 for v in body["series"]["cpu_percent"] if v is not None)
    assert any(name.startswith("disk.") for name in body["series"])

    for asked, resolution, points in [
        ("60", "hour", 6),
        ("1", "hour", 6),  # a minute at least
        ("day", "day", 288),
        ("week", "week", 336),
        ("99999999999", "week", 336),
        ("-5", "hour", 6),
    ]:
        response = graphs(client, active_server, asked)
        assert response.status_code == 200, (asked, response.content)
        body = response.json()
        assert body["resolution"] == resolution, asked
        assert {len(values) for values in body["series"].values()} == {points}, asked
        assert len(response.content) < 64 * 1024, asked

    refused = graphs(client, active_server, "fortnight")
    assert refused.status_code == 400
    assert "range must be one of hour, day, week" in refused.json()["error"]


def test_graphs_are_the_projects_own(cluster, api_user, active_server, live_server):
    stranger = portal_client(ApiUser(live_server.url))
    assert graphs(stranger, active_server).status_code == 404
    reader = ApiUser(live_server.url, Role.READER)
    reader.membership.project = api_user.membership.project
    reader.membership.save()
    assert graphs(portal_client(reader), active_server).status_code == 200
    assert Client().get(f"/instances/{active_server}/graphs").status_code == 302  # to the sign-in page


def test_a_host_that_does_not_answer_is_a_503_within_the_bound(cluster, api_user, active_server, settings):
    settings.CLOUD = {**settings.CLOUD, "CONSOLE_OUTPUT_TIMEOUT": 2}
    client = portal_client(api_user)
    compute = cluster.processes[f"compute-{HOST}"]
    compute.kill(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = graphs(client, active_server)
        assert response.status_code == 503
        assert "did not answer within 2s" in json.loads(response.content)["error"]
        assert 1.5 < time.monotonic() - started < 6
    finally:
        compute.kill(signal.SIGCONT)


def test_the_instance_page_loads_the_vendored_chart_library(cluster, api_user, active_server):
    page = portal_client(api_user).get(f"/instances/{active_server}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "/static/portal/vendor/uplot/uPlot.iife.min.js" in html
    assert f"/instances/{active_server}/graphs" in html
    assert "https://" not in html.split("<body", 1)[0]  # nothing from elsewhere


def test_a_worker_that_stops_saves_its_rings_for_the_next_start(cluster, api_user, active_server):
    from compute_tasks.guest_graphs import GuestGraphs

    client = portal_client(api_user)
    wait_until(
        lambda: sum(v is not None for v in graphs(client, active_server).json()["series"].get("cpu_percent", [])) >= 2,
        30,
        interval=1,
        message="two CPU samples",
    )
    shown = graphs(client, active_server, "week").json()
    name = f"compute-{HOST}"
    cluster.processes[name].stop()  # SIGTERM: the worker's shutdown stops the sampler, which saves
    try:
        directory = cluster.work_dir / "compute" / HOST / "graphs"
        assert (directory / f"{active_server}.ring").is_file()
        kept = GuestGraphs(directory)
        kept.load()
        window = kept.window(active_server, 7 * 86400, shown["start"] + 335 * shown["step"])
        assert window.start == shown["start"]
        # The sampler went on between the page's answer and the stop: the saved rings hold at least as much.
        assert set(window.series) >= set(shown["series"])
        for series, values in shown["series"].items():
            assert sum(v is not None for v in window.series[series]) >= sum(v is not None for v in values), series
        assert all(0 <= v <= 100 for v in window.series["cpu_percent"] if v is not None)
    finally:
        cluster.restart(name)
        wait_for_host(HOST)
