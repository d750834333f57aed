"""Deletes when things are not calm: during the build, twice at once, and while the host is down.

Promise: each ends cleanly: the server is gone from the API (404), its row DELETED with its quota
free, and nothing of it stays on the host (no disk, and no domain in the host's next heartbeat).
"""

import signal
import threading

import pytest

from portal.models import Instance
from tests.processes import wait_until

from .harness import FAULT_ENV, FaultCluster, assert_nothing_left, boot, broker_for, build_events, server, wait_status

pytestmark = pytest.mark.integration

HOST = "delhost1"


@pytest.fixture
def cluster(faults, tmp_path):
    cluster = FaultCluster(tmp_path, broker_url=broker_for("redis", tmp_path, faults))
    faults.append(cluster)
    cluster.with_image_gate()
    return cluster.start(HOST)


def delete(cluster, session, server_id) -> int:
    return session.delete(f"{cluster.api_url}/compute/v2.1/servers/{server_id}", timeout=60).status_code


def gone(cluster, session, server_id):
    wait_until(lambda: server(cluster, session, server_id)["status"] == "DELETED", 60, message=f"{server_id} gone")
    assert Instance.objects.get(uuid=server_id).vm_state == "deleted"


def test_delete_during_build(cluster, tenant, image):
    server_id = boot(cluster, tenant.session, image, name="doomed")
    assert cluster.gate.holding.wait(60)
    # Placed, and (as the host may have said by now) downloading the image.
    assert Instance.objects.get(uuid=server_id).task_state in ("networking", "block_device_mapping")
    assert delete(cluster, tenant.session, server_id) == 204
    cluster.gate.opened.set()  # the build finishes after the delete was asked for
    gone(cluster, tenant.session, server_id)
    assert_nothing_left(cluster, HOST, server_id)
    events = [event for event, _ in build_events(server_id)]
    assert "compute_terminate_instance" in events, events


def test_double_delete(cluster, tenant, image):
    cluster.gate.opened.set()
    server_id = boot(cluster, tenant.session, image, name="twice")
    wait_status(cluster, tenant.session, server_id, "ACTIVE")
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(delete(cluster, tenant.session, server_id))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) in ([204, 204], [204, 404]), codes
    gone(cluster, tenant.session, server_id)
    assert delete(cluster, tenant.session, server_id) == 404
    assert Instance.objects.get(uuid=server_id).actions.filter(action="delete").count() == 1
    assert_nothing_left(cluster, HOST, server_id)


def test_delete_while_the_host_is_down(cluster, tenant, image):
    cluster.gate.opened.set()
    server_id = boot(cluster, tenant.session, image, name="stranded")
    wait_status(cluster, tenant.session, server_id, "ACTIVE")
    compute = cluster.processes[f"compute-{HOST}"]
    compute.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: _host_down(HOST), 30, message="the host to be down")
        assert delete(cluster, tenant.session, server_id) == 204
        # Deleted at once, as Nova's local delete: the host cannot confirm while it is down.
        gone(cluster, tenant.session, server_id)
        assert Instance.objects.filter(project=tenant.project).exclude(vm_state="deleted").count() == 0
    finally:
        compute.send_signal(signal.SIGCONT)
    # The terminate waited in the host's queue: the domain and disk go when the host is back.
    assert_nothing_left(cluster, HOST, server_id)


def _host_down(name: str) -> bool:
    """As the API sees it: no heartbeat for longer than the cluster's SERVICE_DOWN_TIME."""
    from django.utils import timezone

    from portal.models import ComputeHost

    beat = ComputeHost.objects.get(name=name).last_heartbeat
    return (timezone.now() - beat).total_seconds() > int(FAULT_ENV["SERVICE_DOWN_TIME"]) + 1
