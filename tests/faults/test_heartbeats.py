"""A compute host stops sending heartbeats (its worker is frozen with SIGSTOP, as a hung host would be).

Promise: within SERVICE_DOWN_TIME (plus one heartbeat) os-services reports it down, the scheduler
stops choosing it, and its servers show ``host_status: DOWN``; when it beats again it is up again.
"""

import signal
import time

import pytest

from portal.models import Instance
from tests.processes import wait_until

from .harness import FAULT_ENV, FaultCluster, boot, broker_for, server, wait_status

pytestmark = pytest.mark.integration

HOSTS = ("beathost1", "beathost2")


def services(cluster, session) -> dict[str, str]:
    response = session.get(f"{cluster.api_url}/compute/v2.1/os-services", timeout=30)
    assert response.status_code == 200, response.text
    return {s["host"]: s["state"] for s in response.json()["services"]}


def test_a_silent_host_is_reported_down_and_avoided(tenant, image, admin_session, faults, tmp_path):
    cluster = FaultCluster(tmp_path, broker_url=broker_for("redis", tmp_path, faults))
    faults.append(cluster)
    cluster.start(*HOSTS)
    admin_session.headers["OpenStack-API-Version"] = "compute 2.47"
    assert services(cluster, admin_session) == {h: "up" for h in HOSTS}

    # One server on each host: boot until both have one (the scheduler spreads by free RAM).
    placed: dict[str, str] = {}
    for index in range(6):
        server_id = boot(cluster, tenant.session, image, name=f"spread-{index}")
        wait_status(cluster, tenant.session, server_id, "ACTIVE")
        placed.setdefault(Instance.objects.get(uuid=server_id).host.name, server_id)
        if len(placed) == 2:
            break
    assert set(placed) == set(HOSTS), placed

    frozen, alive = HOSTS
    cluster.processes[f"compute-{frozen}"].send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_until(lambda: services(cluster, admin_session)[frozen] == "down", 30, message=f"{frozen} down")
        noticed = time.monotonic() - stopped_at
        assert noticed <= int(FAULT_ENV["SERVICE_DOWN_TIME"]) + 3, noticed
        assert services(cluster, admin_session)[alive] == "up"
        assert server(cluster, admin_session, placed[frozen])["host_status"] == "DOWN"
        assert server(cluster, admin_session, placed[alive])["host_status"] == "UP"

        for index in range(4):
            server_id = boot(cluster, tenant.session, image, name=f"after-{index}")
            wait_status(cluster, tenant.session, server_id, "ACTIVE")
            assert Instance.objects.get(uuid=server_id).host.name == alive
    finally:
        cluster.processes[f"compute-{frozen}"].send_signal(signal.SIGCONT)
    wait_until(lambda: services(cluster, admin_session)[frozen] == "up", 30, message=f"{frozen} up again")
    assert server(cluster, admin_session, placed[frozen])["host_status"] == "UP"
    print(f"{frozen} reported down {noticed:.1f}s after its last heartbeat could have been sent")
