"""Task leases: a host that goes silent with work in its queue (a build, a stop, a reboot) must not
leave any instance in a task state past its deadline.

Promise: the reaper (run by beat) ends every task within one reaper interval of its deadline: the build
ERROR with a fault and its claim released, the power actions idle again with a fault. When the host
comes back and does the stale work anyway, nothing of the abandoned build stays on it.
"""

import signal
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from portal.models import Instance
from tests.processes import wait_until

from .harness import FAULT_ENV, FaultCluster, assert_nothing_left, boot, broker_for, fault_of, wait_status

pytestmark = pytest.mark.integration

HOST = "leasehost1"
LEASES = {"LEASE_SPAWNING": "12", "LEASE_POWER": "12"}


def test_no_task_outlives_its_lease(tenant, image, faults, tmp_path):
    # Leases of their own, short: the test waits them out (the first builds take a second or two).
    cluster = FaultCluster(tmp_path, broker_url=broker_for("redis", tmp_path, faults), **LEASES)
    faults.append(cluster)
    cluster.start(HOST)
    session, api = tenant.session, f"{cluster.api_url}/compute/v2.1"
    first = boot(cluster, session, image, name="to-stop")
    second = boot(cluster, session, image, name="to-reboot")
    for server_id in (first, second):
        wait_status(cluster, session, server_id, "ACTIVE")

    grace = int(FAULT_ENV["REAPER_INTERVAL"]) + 5  # one reaper run, and slack for a loaded machine
    overdue: list[tuple[str, str, float]] = []
    stop = threading.Event()

    def watch():
        # The invariant, checked continuously: no task state more than one reaper run past its deadline.
        try:
            while not stop.is_set():
                now = timezone.now()
                for uuid, task, deadline in Instance.objects.filter(
                    project=tenant.project, task_state__isnull=False
                ).values_list("uuid", "task_state", "task_deadline"):
                    late = (now - deadline).total_seconds()
                    if late > grace:
                        overdue.append((str(uuid), task, late))
                time.sleep(0.5)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    compute = cluster.processes[f"compute-{HOST}"]
    compute.send_signal(signal.SIGSTOP)
    try:
        third = boot(cluster, session, image, name="to-build")  # the host still looks up: it is claimed
        assert session.post(f"{api}/servers/{first}/action", json={"os-stop": None}, timeout=30).status_code == 202
        reboot = {"reboot": {"type": "SOFT"}}
        assert session.post(f"{api}/servers/{second}/action", json=reboot, timeout=30).status_code == 202
        wait_until(
            lambda: Instance.objects.get(uuid=third).task_state == "networking", 30, message="the build to be sent"
        )
        tasks = dict(Instance.objects.filter(project=tenant.project).values_list("name", "task_state"))
        assert tasks == {"to-stop": "powering-off", "to-reboot": "rebooting", "to-build": "networking"}, tasks

        longest = max(int(LEASES[k]) for k in ("LEASE_SPAWNING", "LEASE_POWER"))
        wait_until(
            lambda: not Instance.objects.filter(project=tenant.project, task_state__isnull=False).exists(),
            longest + grace + 10,
            message="every task to end",
        )
    finally:
        stop.set()
        watcher.join(10)
        compute.send_signal(signal.SIGCONT)
    assert not overdue, overdue

    built = Instance.objects.get(uuid=third)
    assert (built.vm_state, built.host_id) == ("error", None)
    assert "did not finish before its deadline" in fault_of(third).message
    for server_id in (first, second):
        instance = Instance.objects.get(uuid=server_id)
        assert instance.task_state is None and instance.vm_state in ("active", "stopped"), instance.vm_state
        assert "did not finish before its deadline" in fault_of(server_id).message
    # The host wakes up and does the stale work: the abandoned build must not leave a domain behind.
    assert_nothing_left(cluster, HOST, third)
