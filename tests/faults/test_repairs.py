"""The repair mechanisms the fault tests rely on, one by one against the database: the reaper's resend
of lost scheduling requests (bounded), the heartbeat's strays, and a late build report for an instance
that no longer waits for it."""

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from compute_tasks import rpc
from portal.models import ComputeHost, Instance, InstanceAction, InstanceActionEvent
from portal.services import hosts, reaper, scheduling
from tests.factories import InstanceFactory

pytestmark = pytest.mark.integration


def waiting_instance(age: float = 120, **fields) -> Instance:
    instance = InstanceFactory(
        vm_state="building",
        task_state="scheduling",
        task_deadline=timezone.now() + timedelta(seconds=60),
        **fields,
    )
    action = InstanceAction.objects.create(instance=instance, action="create", request_id=f"req-{uuid.uuid4()}")
    event = InstanceActionEvent.objects.create(action=action, event="api_create", result="Success")
    past = timezone.now() - timedelta(seconds=age)
    Instance.objects.filter(pk=instance.pk).update(updated_at=past)
    InstanceActionEvent.objects.filter(pk=event.pk).update(start_time=past)
    return instance


def resends(instance) -> int:
    return InstanceActionEvent.objects.filter(action__instance=instance, event=reaper.RESEND_EVENT).count()


def test_a_lost_scheduling_request_is_sent_again_a_bounded_number_of_times(
    db, settings, django_capture_on_commit_callbacks
):
    settings.CLOUD = {**settings.CLOUD, "SCHEDULING_RESEND_AFTER": 30, "SCHEDULING_MAX_RESENDS": 2}
    lost = waiting_instance(age=120)
    fresh = waiting_instance(age=5)
    expired = waiting_instance(age=120)
    Instance.objects.filter(pk=expired.pk).update(task_deadline=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks() as sent:
        assert reaper.resend_lost_schedules() == 1
    assert len(sent) == 1 and (resends(lost), resends(fresh), resends(expired)) == (1, 0, 0)

    # Not again until RESEND_AFTER passed since the last send; then once more, then never.
    assert reaper.resend_lost_schedules() == 0
    for _ in range(3):
        InstanceActionEvent.objects.filter(action__instance=lost).update(
            start_time=timezone.now() - timedelta(seconds=60)
        )
        Instance.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(seconds=60))
        reaper.resend_lost_schedules()
    assert resends(lost) == 2


def test_one_resend_per_multiple_create_request(db, django_capture_on_commit_callbacks):
    first = waiting_instance(reservation_id="r-batch", launch_index=0)
    waiting_instance(reservation_id="r-batch", launch_index=1, project=first.project)
    with django_capture_on_commit_callbacks() as sent:
        assert reaper.resend_lost_schedules() == 1
    assert len(sent) == 1


def beat(host: str, domains: list[str], unknown=()) -> rpc.Heartbeat:
    return rpc.Heartbeat(
        host=host,
        sent_at=time.time(),
        vcpus=4,
        memory_mb=4096,
        disk_gb=10,
        hypervisor_type="QEMU",
        hypervisor_version=1,
        cpu_arch="x86_64",
        domains=[rpc.DomainState(instance_uuid=d, power_state=1) for d in domains],
        unknown_domains=list(unknown),
    )


def test_heartbeat_lists_strays_and_asks_the_host_to_remove_ours(db, django_capture_on_commit_callbacks):
    host = ComputeHost.objects.create(name="h1", last_heartbeat=timezone.now())
    live = InstanceFactory(host=host, vm_state="active")
    deleted = InstanceFactory(host=host, vm_state="deleted")
    reaped = InstanceFactory(host=None, vm_state="error")
    stranger = str(uuid.uuid4())  # a domain of ours the database does not know: another cloud's
    Instance.objects.filter(pk__in=[deleted.pk, reaped.pk]).update(updated_at=timezone.now() - timedelta(seconds=5))

    with django_capture_on_commit_callbacks() as sent:
        hosts.host_heartbeat(
            beat=beat("h1", [str(live.uuid), str(deleted.uuid), str(reaped.uuid), stranger], unknown=["notours"]),
            signed_at=time.time(),
        )
    orphans = ComputeHost.objects.get(name="h1").orphan_domains
    assert sorted(orphans) == sorted(
        ["notours", f"instance-{deleted.uuid}", f"instance-{reaped.uuid}", f"instance-{stranger}"]
    )
    assert len(sent) == 2  # terminates for the deleted and the reaped instance, never for the stranger's


def test_a_late_build_report_of_a_reaped_instance_removes_the_domain(db, django_capture_on_commit_callbacks):
    ComputeHost.objects.create(name="h2", last_heartbeat=timezone.now())
    instance = InstanceFactory(host=None, vm_state="error")
    report = rpc.InstanceBuilt(
        instance_uuid=str(instance.uuid), host="h2", request_id="", power_state=1, vnc_host=None, vnc_port=None
    )
    with django_capture_on_commit_callbacks() as sent:
        scheduling.instance_built(report=report)
    instance.refresh_from_db()
    assert instance.vm_state == "error" and len(sent) == 1


def test_orphan_domains_are_for_admins(admin, member):
    ComputeHost.objects.create(name="h3", last_heartbeat=timezone.now(), orphan_domains=["b", "a"])
    response = admin.client.get("/compute/v2.1/os-orphan-domains?host=h3")
    assert response.status_code == 200
    assert [(o["host"], o["domain"]) for o in response.json()["orphan_domains"]] == [("h3", "a"), ("h3", "b")]
    assert member.client.get("/compute/v2.1/os-orphan-domains").status_code == 403
