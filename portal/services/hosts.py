"""What heartbeats say about hosts, and what they say about the power of their instances."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compute_tasks import rpc
from portal.models import ComputeHost, Instance, MessageRefusal, Migration
from portal.states import PowerState, VmState

from . import host_trust, lifecycle, network_sync

log = logging.getLogger(__name__)

_OFF = {PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.NOSTATE}


def host_heartbeat(*, beat: rpc.Heartbeat, signed_at: float) -> ComputeHost | None:
    """Record an enrolled host's heartbeat, then sync its instances' power.

    Only the host's own row changes, and only for a beat signed after the newest one believed: an older
    one (a replay, or one overtaken in the queue) changes nothing. A host nobody enrolled has no row and
    gets none. Each write is one statement that locks the host's row alone, so a beat never holds that
    lock while it waits for another table.

    A beat writes only what changed: when the host's resources are those already recorded (nearly every
    beat), one statement moves the beat's time and checks, in its own ``WHERE``, that they still are; the
    full row is written only when something differs. The orphan list is written only when it changed."""
    now = timezone.now()
    mine = ComputeHost.objects.filter(name=beat.host, last_beat_signed_at__lt=signed_at)
    resources = {
        "vcpus": beat.vcpus,
        "memory_mb": beat.memory_mb,
        "disk_gb": beat.disk_gb,
        "hypervisor_type": beat.hypervisor_type,
        "hypervisor_version": beat.hypervisor_version,
        "cpu_arch": beat.cpu_arch,
        "volume_connector": dict(beat.volume_connector or {}),
        "tunnel_address": beat.tunnel_address[:64],
        "physical_networks": sorted(str(n)[:64] for n in beat.physical_networks or ()),
    }
    beat_fields = {"last_heartbeat": now, "last_beat_signed_at": signed_at, "uptime": beat.uptime[:255]}
    fresh = mine.filter(**resources).update(**beat_fields) or mine.update(**beat_fields, **resources)
    if not fresh:
        known = ComputeHost.objects.filter(name=beat.host).exists()
        host_trust.message_refused(
            sender=beat.host,
            task=rpc.HEARTBEAT,
            reason=MessageRefusal.Reason.REPLAY if known else MessageRefusal.Reason.UNKNOWN_SENDER,
            detail=f"a heartbeat signed at {signed_at:.3f}, not after the newest believed"
            if known
            else "a heartbeat of a host with no row",
        )
        return None
    host = ComputeHost.objects.only("pk", "name", "orphan_domains").get(name=beat.host)
    orphans = list(beat.unknown_domains) + _stray_domains(beat)
    if orphans != host.orphan_domains:
        ComputeHost.objects.filter(pk=host.pk).update(orphan_domains=orphans)
    _sync_power_states(host, beat)
    network_sync.host_behind(host, beat.network_generation)
    return host


def _stray_domains(beat: rpc.Heartbeat) -> list[str]:
    """Domains of ours the host should not have: of instances the cloud does not know (listed, never
    touched: they may belong to another cloud sharing the hypervisor), of deleted instances, and of
    instances that live elsewhere (a build whose lease ended, a rescheduled attempt). The last two are
    removed, as Nova's ``running_deleted_instance_action = reap`` does; they stay listed until gone.
    """
    sent_at = datetime.fromtimestamp(beat.sent_at, tz=UTC)
    reported = {d.instance_uuid for d in beat.domains}
    if not reported:
        return []
    known = {
        str(row["uuid"]): row
        for row in Instance.objects.filter(uuid__in=list(reported)).values(
            "uuid", "vm_state", "updated_at", "host__name"
        )
    }
    # A move in progress has the guest (or what the source keeps of it) on both of its hosts.
    moving = {
        str(value)
        for value in Migration.objects.filter(
            Q(source_host__name=beat.host) | Q(dest_host__name=beat.host),
            status__in=Migration.ACTIVE_STATUSES,
            instance__uuid__in=list(reported),
        ).values_list("instance__uuid", flat=True)
    }
    strays = []
    for instance_uuid in sorted(reported - moving):
        row = known.get(instance_uuid)
        if row is None:
            strays.append(f"instance-{instance_uuid}")
            continue
        elsewhere = row["vm_state"] == VmState.DELETED or row["host__name"] != beat.host
        if elsewhere and row["updated_at"] < sent_at:
            strays.append(f"instance-{instance_uuid}")
            ref = rpc.InstanceRef(instance_uuid=instance_uuid, domain_name=f"instance-{instance_uuid}")
            transaction.on_commit(lambda r=ref: rpc.terminate_instance(beat.host, r), robust=True)
            log.warning(
                "Host %s still has a domain for instance %s, which is not there: removing it", beat.host, instance_uuid
            )
    return strays


def _sync_power_states(host: ComputeHost, beat: rpc.Heartbeat) -> None:
    """Idle instances follow what the hypervisor says: a VM that stopped behind our back is SHUTOFF.

    Only instances unchanged since the heartbeat was composed are touched, so a report about a task
    that finished after it cannot be overwritten by the stale picture.
    """
    sent_at = datetime.fromtimestamp(beat.sent_at, tz=UTC)
    reported = {d.instance_uuid: d.power_state for d in beat.domains}
    idle = Instance.objects.filter(
        host=host,
        task_state__isnull=True,
        vm_state__in=[VmState.ACTIVE, VmState.STOPPED],
        updated_at__lt=sent_at,
    )
    # Nearly every beat finds every idle instance as it was recorded: read the power states alone, and
    # whole rows only for the instances that differ.
    differing = [
        pk
        for pk, instance_uuid, power_state in idle.values_list("pk", "uuid", "power_state")
        if reported.get(str(instance_uuid), PowerState.NOSTATE) != power_state
    ]
    for instance in idle.filter(pk__in=differing) if differing else ():
        power = reported.get(str(instance.uuid), PowerState.NOSTATE)
        if power == instance.power_state:
            continue
        fields = {"power_state": power}
        if instance.vm_state == VmState.ACTIVE and power in _OFF:
            fields["vm_state"] = VmState.STOPPED
        with transaction.atomic():
            if lifecycle.compare_and_swap(instance, expected_task_states=[None], **fields) and "vm_state" in fields:
                lifecycle.record_event(
                    lifecycle.current_action(instance),
                    "sync_power_state",
                    host=host.name,
                    details=f"power state {power} reported by the host",
                )
                log.info("Instance %s found powered off on %s", instance.uuid, host.name)
