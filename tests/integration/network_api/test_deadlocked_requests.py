"""A write PostgreSQL ends to break a deadlock answers 503 with Retry-After, in the API's own envelope,
and keeps nothing: the request may be sent again. A real deadlock: a port update through the API locks
the port, then its host's network state; another transaction holds that state and then asks for the port.
The API's request waited first, so it is the one PostgreSQL ends when it looks (``deadlock_timeout``)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.models import ComputeHost, HostNetworkState, Port
from tests.integration.scheduling.conftest import at_once

from .helpers import call, fault, network, port, subnet

pytestmark = pytest.mark.integration


def lock_waiters() -> int:
    """Sessions waiting for a lock now (a transaction's view of the activity is otherwise kept as it first saw it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_request_ended_by_a_deadlock_answers_503_and_keeps_nothing(transactional_db, admin, monkeypatch):
    monkeypatch.setattr(rpc, "apply_network_state", lambda host, plan: None)
    host = ComputeHost.objects.create(name="dl-host", last_heartbeat=timezone.now(), vcpus=4, memory_mb=4096)
    nid = network(admin)["id"]
    subnet(admin, nid, "10.12.0.0/24")
    bound = port(admin, nid, **{"binding:host_id": host.name})
    assert HostNetworkState.objects.filter(host=host).exists()

    holding_state, answered = threading.Event(), {}

    def other_transaction():
        with transaction.atomic():
            HostNetworkState.objects.select_for_update().get(host=host)
            holding_state.set()
            deadline = time.monotonic() + 10
            while lock_waiters() == 0 and time.monotonic() < deadline:  # the request waits for the state
                time.sleep(0.02)
            time.sleep(0.2)
            Port.objects.select_for_update().get(pk=bound["id"])

    def request():
        holding_state.wait(10)
        answered["response"] = call(admin, "PUT", f"/ports/{bound['id']}", {"port": {"admin_state_up": False}})

    assert at_once(other_transaction, request) == []  # the transaction that did not give way went on
    response = answered["response"]
    error = fault(response, 503, "HTTPServiceUnavailable")
    assert "try it again" in error["message"]
    assert response["Retry-After"] == "1"
    assert Port.objects.get(pk=bound["id"]).admin_state_up is True
    # Sent again, it is carried out.
    again = call(admin, "PUT", f"/ports/{bound['id']}", {"port": {"admin_state_up": False}})
    assert again.status_code == 200, again.content
    assert Port.objects.get(pk=bound["id"]).admin_state_up is False
