"""50 boots at once against an instance quota of 10, over real HTTP to the API under gunicorn on
PostgreSQL: exactly 10 are accepted, 40 refused with the compute API's quota error, and the number of
instances the database holds never goes above the limit, not even for a moment."""

import threading
import time

import pytest
import requests
from django.db import connection

from portal.models import Instance, QuotaLimit
from tests.factories import FlavorFactory, ImageFactory, MembershipFactory
from tests.processes import Cluster, free_port, purge_broker

pytestmark = pytest.mark.integration

BOOTS = 50
LIMIT = 10


@pytest.fixture
def api(transactional_db, tmp_path):
    purge_broker()
    port = free_port()
    cluster = Cluster(f"http://127.0.0.1:{port}", tmp_path)
    cluster.start_api(port, workers=4, threads=4)
    yield cluster
    cluster.stop()
    purge_broker()


def test_fifty_concurrent_boots_against_a_quota_of_ten(api):
    membership = MembershipFactory()
    project = membership.project
    QuotaLimit.objects.create(project=project, resource="instances", hard_limit=LIMIT)
    FlavorFactory(flavorid="1", name="m1.tiny", vcpus=1, memory_mb=64)
    image = ImageFactory(owner=project)
    body = {"server": {"name": "burst", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}

    start = threading.Barrier(BOOTS + 1)
    results: list[tuple[int, dict]] = []
    results_lock = threading.Lock()

    def boot():
        session = requests.Session()
        session.auth = (membership.user.username, "secret")
        session.headers["OpenStack-API-Version"] = "compute 2.47"
        start.wait()
        response = session.post(f"{api.api_url}/compute/v2.1/servers", json=body, timeout=60)
        with results_lock:
            results.append((response.status_code, response.json() if response.content else {}))

    seen: list[int] = []
    stop = threading.Event()

    def watch():
        # Committed rows as any other reader sees them, sampled as fast as the database answers.
        try:
            while not stop.is_set():
                seen.append(Instance.objects.filter(project=project).exclude(vm_state="deleted").count())
                time.sleep(0.002)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=boot) for _ in range(BOOTS)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join(90)
    elapsed = time.monotonic() - started
    stop.set()
    watcher.join(10)

    statuses = sorted(status for status, _ in results)
    assert len(results) == BOOTS, api.logs()
    assert statuses.count(202) == LIMIT, (statuses, api.logs())
    assert statuses.count(403) == BOOTS - LIMIT, statuses
    for status, payload in results:
        if status == 403:
            assert payload == {
                "forbidden": {
                    "code": 403,
                    "message": f"Quota exceeded for instances: Requested 1, but already used {LIMIT} of {LIMIT} "
                    "instances",
                }
            }
    accepted = {payload["server"]["id"] for status, payload in results if status == 202}
    assert len(accepted) == LIMIT
    assert {str(u) for u in Instance.objects.filter(project=project).values_list("uuid", flat=True)} == accepted
    assert len(seen) > 10 and max(seen) <= LIMIT, seen[-20:]
    print(f"{BOOTS} concurrent boots answered in {elapsed:.2f}s; usage sampled {len(seen)} times, max {max(seen)}")
