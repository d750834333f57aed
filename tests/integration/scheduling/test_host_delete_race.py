"""Deleting a host while boots are being placed on it, on PostgreSQL: the delete and the claims meet at
the host's row lock, so either a server lands and the delete is refused, or the host goes and the boots
find no host; never a server on a deleted host."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from portal.models import ComputeHost, Instance
from portal.services import scheduling
from portal.services.compute_hosts import HostInUse, compute_host_delete
from portal.states import VmState

from .conftest import in_thread, make_host, new_ctx

pytestmark = pytest.mark.integration

BOOTS = 24


@pytest.mark.parametrize("after", [0, 1, 8])
def test_a_host_deleted_while_boots_land_on_it_never_keeps_a_server(clean_broker, boot, after):
    """The delete is tried once ``after`` servers have landed, while the other boots go on."""
    host = make_host("doomed")
    ctx = new_ctx()
    instances = [boot(ctx, name=f"race-{index}") for index in range(BOOTS)]
    ids = [i.pk for i in instances]
    start = threading.Barrier(BOOTS + 1)
    outcome = []

    @in_thread
    def place(instance):
        start.wait()
        scheduling.schedule_and_build(instance_uuid=str(instance.uuid))

    @in_thread
    def retire():
        start.wait()
        while Instance.objects.filter(pk__in=ids, host=host).count() < after:
            time.sleep(0.001)
        try:
            compute_host_delete(host=host)
            outcome.append("deleted")
        except HostInUse:
            outcome.append("refused")

    with ThreadPoolExecutor(BOOTS + 1) as pool:
        for future in [pool.submit(place, instance) for instance in instances] + [pool.submit(retire)]:
            future.result()

    on_host = Instance.objects.filter(host=host).exclude(vm_state=VmState.DELETED).count()
    deleted = ComputeHost._base_manager.get(pk=host.pk).deleted_at is not None
    assert deleted != (on_host > 0), (outcome, on_host)
    if after:
        assert outcome == ["refused"]
    # The boots that came after the delete have no host, and failed.
    unplaced = Instance.objects.filter(pk__in=ids, host__isnull=True)
    assert all(i.vm_state == VmState.ERROR for i in unplaced)
    assert on_host + unplaced.count() == BOOTS
