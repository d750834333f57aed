"""Restart the broker (a private redis-server, then a private RabbitMQ node) in the middle of a burst of
50 boots sent over HTTP to the API under gunicorn, with conductor, beat and a compute host running.

Promise: every request the API accepted reaches a final state (ACTIVE, or ERROR with a fault); none is
lost (each accepted request has its instance), none duplicated (one instance per request, built at
most once). An instance whose build message was in a worker's hands at the restart may end in ERROR
when its lease runs out: the only fault allowed. docs/reliability.md keeps the last counts.

A message the API could not send is sent again by the reaper; the workers wait out the restart before
they give up on a message of their own.
"""

import threading
import time
from collections import Counter

import pytest

from portal.models import Instance, InstanceFault, QuotaLimit
from tests.processes import wait_until

from .harness import FaultCluster, PrivateRabbit, PrivateRedis, build_events

pytestmark = pytest.mark.integration

HOST = "faulthost1"
BOOTS = 50
CLIENTS = 10


@pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])
def test_broker_restart_during_a_burst_of_boots(broker_kind, tenant, image, faults, tmp_path):
    broker = PrivateRedis(tmp_path) if broker_kind == "redis" else PrivateRabbit(tmp_path)
    faults.append(broker)
    broker.start()
    for resource in ("instances", "cores", "ram"):
        QuotaLimit.objects.create(project=tenant.project, resource=resource, hard_limit=-1)
    # Hosts count as down after the production default of 60 s here, not the fault tests' 6 s: a broker
    # restart silences every heartbeat for as long as it lasts (up to 25 s for RabbitMQ on this machine),
    # and a host is not down because the broker was.
    cluster = FaultCluster(
        tmp_path,
        broker_url=broker.url,
        CPU_ALLOCATION_RATIO="100",
        RAM_ALLOCATION_RATIO="100",
        SERVICE_DOWN_TIME="60",
    )
    faults.append(cluster)
    cluster.start(HOST)

    names = iter(f"burst-{i:02d}" for i in range(BOOTS))
    names_lock = threading.Lock()
    answers: dict[str, int] = {}
    sent = threading.Semaphore(0)
    body = {"server": {"imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}

    def client():
        session = type(tenant.session)()
        session.auth, session.headers = tenant.session.auth, tenant.session.headers
        while True:
            with names_lock:
                name = next(names, None)
            if name is None:
                return
            response = session.post(
                f"{cluster.api_url}/compute/v2.1/servers", json={"server": {**body["server"], "name": name}}, timeout=90
            )
            answers[name] = response.status_code
            sent.release()
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for _ in range(15):
        assert sent.acquire(timeout=60)
    restart_started = time.monotonic()
    broker.stop()
    time.sleep(2)
    broker.start()
    outage = time.monotonic() - restart_started
    for thread in threads:
        thread.join(180)

    assert sorted(answers) == [f"burst-{i:02d}" for i in range(BOOTS)]
    assert Counter(answers.values()) == {202: BOOTS}, Counter(answers.values())

    def settled():
        rows = list(Instance.objects.filter(project=tenant.project).values_list("name", "vm_state", "task_state"))
        return rows if all(task is None and vm in ("active", "error") for _, vm, task in rows) else None

    try:
        rows = wait_until(settled, 150, interval=0.2, message="every instance to reach a final state")
    except AssertionError:
        states = Counter(Instance.objects.filter(project=tenant.project).values_list("vm_state", "task_state"))
        raise AssertionError(f"not every instance reached a final state: {dict(states)}") from None
    by_name = Counter(name for name, _, _ in rows)
    assert sorted(by_name) == sorted(answers) and set(by_name.values()) == {1}, by_name  # none lost or duplicated
    outcome = Counter(vm for _, vm, _ in rows)
    for instance in Instance.objects.filter(project=tenant.project):
        events = build_events(str(instance.uuid))
        assert events.count(("compute_build_and_run_instance", "Success")) <= 1, events
        if instance.vm_state == "error":
            assert instance.faults.exists(), events
        else:
            assert events.count(("conductor_schedule_and_build", "Success")) == 1, events
    resent = sum(
        1
        for i in Instance.objects.filter(project=tenant.project)
        if ("conductor_resend_schedule", "Success") in build_events(str(i.uuid))
    )
    print(
        f"{broker_kind}: restart took {outage:.1f}s; outcome {dict(outcome)}; "
        f"{resent} requests sent again by the reaper"
    )
    # An instance may end in ERROR only because the restart cost it a message its lease then replaced,
    # and only a message a worker held at that moment: a build (4 compute threads) or a report (2
    # conductor processes). Everything else waits out the restart or is sent again.
    faults_seen = [f.message for f in InstanceFault.objects.filter(instance__project=tenant.project)]
    assert len(faults_seen) == outcome["error"], faults_seen
    assert all("did not finish before its deadline" in message for message in faults_seen), faults_seen
    assert outcome["error"] <= 6, outcome
