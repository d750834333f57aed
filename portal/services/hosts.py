"""What heartbeats say about hosts, and what they say about the power of their instances."""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from compute_tasks import rpc
from portal.models import ComputeHost, HostCredential, HostNetworkState, Instance, MessageRefusal, Migration
from portal.selectors.rows import prepared_cursor
from portal.states import PowerState, VmState

from . import host_trust, lifecycle, network_sync

log = logging.getLogger(__name__)

_OFF = {PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.NOSTATE}
_IDLE_VM_STATES = (VmState.ACTIVE, VmState.STOPPED)


def host_heartbeat(*, beat: rpc.Heartbeat, signed_at: float) -> int | None:
    """Record an enrolled host's heartbeat, then sync its instances' power. Returns the host's id, or
    None for a beat that changed nothing.

    Only the host's own row changes, and only for a beat signed after the newest one believed: an older
    one (a replay, or one overtaken in the queue) changes nothing. A host nobody enrolled has no row and
    gets none. Each write is one statement that locks the host's row alone, so a beat never holds that
    lock while it waits for another table.

    A beat writes only what changed: when the host's resources are those already recorded (nearly every
    beat), one statement moves the beat's time and checks, in its own ``WHERE``, that they still are; the
    full row is written only when something differs."""
    now = timezone.now()
    mine = ComputeHost.objects.filter(name=beat.host, last_beat_signed_at__lt=signed_at)
    resources = _resources(beat)
    strays, removals = _stray_domains(beat)
    beat_fields = {
        "last_heartbeat": now,
        "last_beat_signed_at": signed_at,
        "uptime": beat.uptime[:255],
        "cpu_used_percent": _percent_or_none(beat.cpu_used_percent),
        "memory_used_mb": _mb_or_none(beat.memory_used_mb),
        "orphan_domains": list(beat.unknown_domains) + strays,
    }
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
    host_id = ComputeHost.objects.values_list("pk", flat=True).get(name=beat.host)
    _remove_strays(beat.host, removals)
    idle = _idle_instances(host_id, beat).values_list("pk", "uuid", "power_state")
    _sync_power_states(host_id, beat, [(pk, str(uuid), power) for pk, uuid, power in idle])
    state = HostNetworkState.objects.filter(host_id=host_id).values_list("generation", "applied_generation").first()
    network_sync.resend_if_behind(host_id, state, beat.network_generation)
    return host_id


def host_heartbeat_unchanged(*, beat: rpc.Heartbeat, signed_at: float, public_key: str) -> int | None:
    """The common beat, in one statement: a host whose resources are those recorded, signed with
    ``public_key``, which must still be the host's active credential. Returns the host's id, or None when
    the beat was not recorded (resources changed, a stale beat, a key no longer active, an unknown host,
    or a database other than PostgreSQL): the caller then believes the message afresh and records it with
    ``host_heartbeat``, which says why it is refused, if it is.

    The statement moves the beat's time (as ``host_heartbeat`` does when nothing else changed), and
    returns what the rest of the beat needs to read: the host's idle instances' power states and its
    network state. The key check in its ``WHERE`` is what lets the caller verify the signature with a
    key remembered from an earlier message rather than read again: a revoked key matches nothing."""
    if connection.vendor != "postgresql":
        return None
    strays, removals = _stray_domains(beat)
    now = timezone.now()
    params = {
        **{
            name: json.dumps(value) if isinstance(value, dict | list) else value
            for name, value in _resources(beat).items()
        },
        "name": beat.host,
        "now": now,
        "signed_at": signed_at,
        "uptime": beat.uptime[:255],
        "cpu_used_percent": _percent_or_none(beat.cpu_used_percent),
        "memory_used_mb": _mb_or_none(beat.memory_used_mb),
        "orphan_domains": json.dumps(list(beat.unknown_domains) + strays),
        "public_key": public_key,
        "sent_at": datetime.fromtimestamp(beat.sent_at, tz=UTC),
        "idle_states": list(_IDLE_VM_STATES),
    }
    with prepared_cursor(connection) as cursor:
        cursor.execute(_unchanged_beat_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    host_id, generation, applied_generation, idle = row
    _remove_strays(beat.host, removals)
    _sync_power_states(host_id, beat, [(pk, str(uuid), power) for pk, uuid, power in idle or ()])
    state = None if generation is None else (generation, applied_generation)
    network_sync.resend_if_behind(host_id, state, beat.network_generation)
    return host_id


@functools.cache
def _unchanged_beat_sql() -> str:
    """``host_heartbeat_unchanged``'s statement: the update of the beat's fields where everything else is
    as recorded and the key is active, then the host's network state and idle instances (id, uuid, power)."""
    hosts, credentials = ComputeHost._meta.db_table, HostCredential._meta.db_table
    states, instances = HostNetworkState._meta.db_table, Instance._meta.db_table
    jsons = {"volume_connector", "physical_networks"}
    same = " AND ".join(
        f"h.{name} = %({name})s::jsonb" if name in jsons else f"h.{name} = %({name})s" for name in _RESOURCE_FIELDS
    )
    return f"""
        WITH beat AS (
            UPDATE {hosts} AS h SET last_heartbeat = %(now)s, last_beat_signed_at = %(signed_at)s,
                uptime = %(uptime)s, cpu_used_percent = %(cpu_used_percent)s, memory_used_mb = %(memory_used_mb)s,
                orphan_domains = %(orphan_domains)s::jsonb
            WHERE h.name = %(name)s AND h.last_beat_signed_at < %(signed_at)s AND {same}
                AND EXISTS (SELECT 1 FROM {credentials} AS c
                            WHERE c.host_id = h.id AND c.revoked_at IS NULL AND c.public_key = %(public_key)s)
            RETURNING h.id
        )
        SELECT beat.id, s.generation, s.applied_generation,
            ARRAY(SELECT ARRAY[i.id::text, i.uuid::text, i.power_state::text] FROM {instances} AS i
                  WHERE i.host_id = beat.id AND i.task_state IS NULL AND i.vm_state = ANY(%(idle_states)s)
                  AND i.updated_at < %(sent_at)s)
        FROM beat LEFT JOIN {states} AS s ON s.host_id = beat.id
    """  # noqa: S608 - names from the models, values as parameters


_RESOURCE_FIELDS = (
    "vcpus",
    "memory_mb",
    "disk_gb",
    "hypervisor_type",
    "hypervisor_version",
    "cpu_arch",
    "volume_connector",
    "tunnel_address",
    "physical_networks",
)


def _resources(beat: rpc.Heartbeat) -> dict:
    """What a beat says of the host's resources, as its row holds them (``_RESOURCE_FIELDS``)."""
    return {
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


def _percent_or_none(value: object) -> float | None:
    """A host's word on its CPU use, kept only when it is a percentage."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        return None
    return float(value)


def _mb_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        return None
    return value


def _stray_domains(beat: rpc.Heartbeat) -> tuple[list[str], list[str]]:
    """Domains of ours the host should not have, and the instances among them to remove from it.

    Of instances the cloud does not know (listed, never touched: they may belong to another cloud sharing
    the hypervisor), of deleted instances, and of instances that live elsewhere (a build whose lease
    ended, a rescheduled attempt). The last two are removed, as Nova's ``running_deleted_instance_action
    = reap`` does; they stay listed until gone. Only reads: the removals are sent once the beat is
    believed (``_remove_strays``).
    """
    sent_at = datetime.fromtimestamp(beat.sent_at, tz=UTC)
    reported = {d.instance_uuid for d in beat.domains}
    if not reported:
        return [], []
    # A move in progress has the guest (or what the source keeps of it) on both of its hosts. Read in the
    # same statement as the instances: a move that ends between two reads would show the instance still
    # on its source and no longer moving, and the guest that just arrived would be removed.
    moving = Migration.objects.filter(
        Q(source_host__name=beat.host) | Q(dest_host__name=beat.host),
        status__in=Migration.ACTIVE_STATUSES,
        instance=OuterRef("pk"),
    )
    known = {
        str(row["uuid"]): row
        for row in Instance.objects.filter(uuid__in=list(reported))
        .annotate(moving=Exists(moving))
        .values("uuid", "vm_state", "updated_at", "host__name", "moving")
    }
    strays, removals = [], []
    for instance_uuid in sorted(reported):
        row = known.get(instance_uuid)
        if row is None:
            strays.append(f"instance-{instance_uuid}")
            continue
        if row["moving"]:
            continue
        elsewhere = row["vm_state"] == VmState.DELETED or row["host__name"] != beat.host
        if elsewhere and row["updated_at"] < sent_at:
            strays.append(f"instance-{instance_uuid}")
            removals.append(instance_uuid)
    return strays, removals


def _remove_strays(host: str, instance_uuids: list[str]) -> None:
    for instance_uuid in instance_uuids:
        ref = rpc.InstanceRef(instance_uuid=instance_uuid, domain_name=f"instance-{instance_uuid}")
        transaction.on_commit(lambda r=ref: rpc.terminate_instance(host, r), robust=True)
        log.warning("Host %s still has a domain for instance %s, which is not there: removing it", host, instance_uuid)


def _idle_instances(host_id: int, beat: rpc.Heartbeat):
    """The host's instances no task is running on, unchanged since the beat was composed: a report about
    a task that finished after it cannot be overwritten by the stale picture."""
    return Instance.objects.filter(
        host_id=host_id,
        task_state__isnull=True,
        vm_state__in=_IDLE_VM_STATES,
        updated_at__lt=datetime.fromtimestamp(beat.sent_at, tz=UTC),
    )


def _sync_power_states(host_id: int, beat: rpc.Heartbeat, idle: list[tuple[int, str, int]]) -> None:
    """Idle instances follow what the hypervisor says: a VM that stopped behind our back is SHUTOFF.

    ``idle`` is the host's idle instances' (id, uuid, power state), as read with the beat: nearly every
    beat finds every one as it was recorded, and whole rows are read only for the instances that differ.
    """
    reported = {d.instance_uuid: d.power_state for d in beat.domains}
    differing = [
        int(pk)
        for pk, instance_uuid, power_state in idle
        if reported.get(instance_uuid, PowerState.NOSTATE) != int(power_state)
    ]
    for instance in _idle_instances(host_id, beat).filter(pk__in=differing) if differing else ():
        power = reported.get(str(instance.uuid), PowerState.NOSTATE)
        if power == instance.power_state:
            continue
        fields = {"power_state": power}
        if instance.vm_state == VmState.ACTIVE and power in _OFF:
            fields["vm_state"] = VmState.STOPPED
        with transaction.atomic():
            if lifecycle.compare_and_swap(instance, expected_task_states=[None], **fields) and "vm_state" in fields:
                lifecycle.record_current_event(
                    instance,
                    "",
                    "sync_power_state",
                    host=beat.host,
                    details=f"power state {power} reported by the host",
                )
                log.info("Instance %s found powered off on %s", instance.uuid, beat.host)
