"""Two conductor tasks that lock the same rows in the other order deadlock on PostgreSQL, which ends one
of them: that one runs again (``retrying_deadlocks``) and both finish. The project's own writers take
their locks in one order (a network's ports, then its hosts' network state); this is what is left if two
ever do not."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

from portal.conductor.tasks import retrying_deadlocks
from portal.models import ComputeHost

pytestmark = pytest.mark.integration


def crossed(first: int, second: int, started: threading.Barrier, wait: float, calls: list) -> None:
    """Lock ``first``, then, once the other thread holds its own, ``second``."""
    calls.append(first)
    with transaction.atomic():
        ComputeHost.objects.select_for_update().get(pk=first)
        if len(calls) <= 2:  # the first attempts meet; a run again takes the locks at once
            started.wait(10)
            time.sleep(wait)
        ComputeHost.objects.filter(pk=second).update(vcpus=first)


@pytest.mark.parametrize("retrying", [True, False])
def test_the_task_chosen_to_give_way_runs_again(transactional_db, retrying):
    a = ComputeHost.objects.create(name="lock-a").pk
    b = ComputeHost.objects.create(name="lock-b").pk
    started = threading.Barrier(2)
    calls: list[int] = []
    errors: list[Exception] = []

    def run(first, second, wait, wrapped):
        try:
            # The one that waits first is the one PostgreSQL's deadlock check (after deadlock_timeout) ends.
            call = lambda: crossed(first, second, started, wait, calls)  # noqa: E731
            retrying_deadlocks(call, what="test") if wrapped else call()
        except OperationalError as exc:
            errors.append(exc)
        finally:
            connection.close()

    victim = threading.Thread(target=run, args=(a, b, 0.0, retrying))
    other = threading.Thread(target=run, args=(b, a, 0.3, False))
    victim.start()
    other.start()
    victim.join(30)
    other.join(30)

    if retrying:
        assert errors == []
        assert calls.count(a) == 2  # ended once by the deadlock, then done
        assert ComputeHost.objects.get(pk=b).vcpus == a and ComputeHost.objects.get(pk=a).vcpus == b
    else:
        assert len(errors) == 1 and "deadlock detected" in str(errors[0])
