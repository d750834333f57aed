"""Kill -9 the conductor in the middle of scheduling: it has taken the request, locked the instance and
waits for the host's row (held by the test), when it dies.

Promise: the instance still ends ACTIVE (or ERROR with a fault) within its lease, built exactly once.
With RabbitMQ the broker redelivers the request to the restarted conductor; with Redis the message is
stuck until the visibility timeout, and the reaper sends the request again because the database row,
still ``scheduling``, says what should happen.
"""

import pytest

from portal.models import Instance
from tests.processes import wait_until

from .harness import FaultCluster, HostRowLock, boot, broker_for, build_events, wait_status

pytestmark = pytest.mark.integration

HOST = "faulthost1"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_kill_conductor_mid_scheduling(broker, tenant, image, faults, tmp_path):
    # The host must still count as up when the restarted conductor takes the request: RabbitMQ hands it
    # back at once, with the beats the host sent while no conductor ran, and the restart alone took 6 s
    # on a busy machine (the harness's usual down time).
    cluster = FaultCluster(tmp_path, broker_url=broker_for(broker, tmp_path, faults), SERVICE_DOWN_TIME="20")
    faults.append(cluster)
    cluster.start(HOST, conductor_workers=6)  # the host's beats, once a second, wait on the row too

    with HostRowLock(HOST):
        server_id = boot(cluster, tenant.session, image, name="victim")
        wait_until(lambda: HostRowLock.waiters() > 0, 30, message="the conductor to wait for the host's row")
        cluster.processes["conductor"].kill()  # SIGKILL to the worker and its pool
        assert Instance.objects.get(uuid=server_id).task_state == "scheduling"
    cluster.restart("conductor")

    final = wait_status(cluster, tenant.session, server_id, {"ACTIVE", "ERROR"}, timeout=60)
    assert final["status"] == "ACTIVE", final
    events = build_events(server_id)
    assert events.count(("conductor_schedule_and_build", "Success")) == 1, events
    assert events.count(("compute_build_and_run_instance", "Success")) == 1, events
    resends = [e for e in events if e[0] == "conductor_resend_schedule"]
    if broker == "redis":
        assert resends, events  # repaired by the reaper, not by the broker
    assert Instance.objects.filter(project=tenant.project).count() == 1
