"""Kill -9 a compute worker in the middle of a build (while it downloads the image, held by the gate).

Promise: the instance ends ACTIVE after the build message is delivered again, or ERROR with a fault
within its task lease; no domain, disk, partial download or claim is left behind.

With RabbitMQ the broker gives the unacknowledged message back the moment the worker's connection dies,
so the restarted worker builds it: ACTIVE. With Redis the message waits for the transport's visibility
timeout (an hour), so the lease ends the build: ERROR, the claim released, the host told to clean up.
"""

import time

import pytest

from portal.models import Instance
from tests.processes import wait_for_host

from .harness import FAULT_ENV, FaultCluster, assert_nothing_left, boot, broker_for, build_events, fault_of, wait_status

pytestmark = pytest.mark.integration

HOST = "faulthost1"
LEASE_SPAWNING = "12"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_kill_compute_worker_mid_build(broker, tenant, image, faults, tmp_path):
    # A build lease of its own, short: with Redis the test waits it out, with RabbitMQ the build done again
    # by the restarted worker (a few seconds) fits in it.
    cluster = FaultCluster(tmp_path, broker_url=broker_for(broker, tmp_path, faults), LEASE_SPAWNING=LEASE_SPAWNING)
    faults.append(cluster)
    gate = cluster.with_image_gate()
    cluster.start(HOST)

    server_id = boot(cluster, tenant.session, image, name="victim")
    assert gate.holding.wait(60), "the build never started downloading"
    # Placed, and (as the host may have said by now) downloading the image.
    assert Instance.objects.get(uuid=server_id).task_state in ("networking", "block_device_mapping")
    claimed_at = time.monotonic()

    cluster.processes[f"compute-{HOST}"].kill()  # SIGKILL: no cleanup, no goodbye to the broker
    gate.opened.set()
    cluster.restart(f"compute-{HOST}")
    wait_for_host(HOST)

    lease = int(LEASE_SPAWNING) + 2 * int(FAULT_ENV["REAPER_INTERVAL"])
    final = wait_status(cluster, tenant.session, server_id, {"ACTIVE", "ERROR"}, timeout=lease + 30)
    ended_after = time.monotonic() - claimed_at
    events = build_events(server_id)
    if broker == "rabbitmq":
        assert final["status"] == "ACTIVE", final
        assert events.count(("compute_build_and_run_instance", "Success")) == 1, events
        assert Instance.objects.get(uuid=server_id).host.name == HOST
    else:
        assert final["status"] == "ERROR", final
        assert ended_after <= lease + 5, ended_after
        assert "did not finish before its deadline" in fault_of(server_id).message
        assert final["fault"]["message"] == fault_of(server_id).message
        # The next build on the restarted host works, and clears the download the killed worker left.
        after = boot(cluster, tenant.session, image, name="after")
        wait_status(cluster, tenant.session, after, "ACTIVE", timeout=60)
        assert_nothing_left(cluster, HOST, server_id)
