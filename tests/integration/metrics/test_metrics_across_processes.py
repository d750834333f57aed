"""The conductor runs in its own processes: what it counts reaches the API's ``/metrics`` through the shared
multiprocess directory. A boot with no host anywhere, over real HTTP, decided by a real conductor worker."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings
from django.test import override_settings

from tests.processes import Cluster, purge_broker, wait_until
from tests.prometheus import TOKEN, value

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def conductor(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("metrics-cluster"))
    cluster.start_conductor(concurrency=1)
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


def scrape_over_http(base_url: str) -> str:
    response = requests.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def test_a_decision_in_the_conductor_process_shows_in_the_api_s_metrics(
    conductor, live_server, api_user, tiny_flavor, small_image
):
    with override_settings(CLOUD={**settings.CLOUD, "METRICS_TOKEN": TOKEN}):
        before = scrape_over_http(live_server.url)
        body = {"server": {"name": "nowhere", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "none"}}
        response = api_user.post("/servers", body)
        assert response.status_code == 202, response.text
        server_id = response.json()["server"]["id"]
        wait_until(lambda: api_user.server(server_id)["status"] == "ERROR", 60, message="NoValidHost")

        after = scrape_over_http(live_server.url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cloud_scheduler_no_valid_host_total", reason="no_hosts") == 1
    assert moved("cloud_scheduler_decisions_total", result="no_valid_host") == 1
    assert moved("cloud_scheduler_duration_seconds_count", result="no_valid_host") == 1
    # The boot request itself, counted by the API under its route's name.
    assert moved("cloud_api_requests_total", route="servers", method="POST", status="202") == 1
    assert value(after, "cloud_instances", vm_state="error", task_state="none") >= 1
