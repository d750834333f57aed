"""The conductor's heartbeat task: a beat of unchanged resources, signed with the key the host's previous
beat was believed with, is recorded in one statement that checks the key is still the host's active one;
anything else is believed afresh and recorded in full, or refused."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute_tasks import rpc, signing
from portal.conductor.tasks import heartbeat
from portal.models import ComputeHost, HostNetworkState, MessageRefusal
from portal.services import host_trust
from portal.states import PowerState, VmState
from tests.factories import InstanceFactory

from .beats import heartbeat as host_beat

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

HOST = "beat-statement"


def beat(**changes) -> dict:
    return host_beat(
        HOST,
        **{
            "volume_connector": {"host": HOST, "initiator": "iqn.2004-10.com.example:beat"},
            "physical_networks": ["public"],
            **changes,
        },
    ).to_dict()


def send(key, message: dict, *, signed_at: float | None = None) -> None:
    heartbeat(message, signing.Signer(HOST, key).sign(rpc.HEARTBEAT, rpc.CONDUCTOR_QUEUE, message, now=signed_at))


def refusals(reason: str) -> int:
    row = MessageRefusal.objects.filter(sender=HOST, task=rpc.HEARTBEAT, reason=reason).first()
    return row.count if row else 0


@pytest.fixture
def key():
    _host, key = host_trust.host_enroll(name=HOST)
    send(key, beat())  # believed afresh: the first beat records everything, and the key is remembered
    return key


def test_an_unchanged_beat_is_one_statement(key):
    before = ComputeHost.objects.get(name=HOST)
    with CaptureQueriesContext(connection) as queries:
        send(key, beat(uptime=" 12:00:10 up 4 min"))
    assert len(queries) == 1, [q["sql"] for q in queries]
    after = ComputeHost.objects.get(name=HOST)
    assert after.last_heartbeat > before.last_heartbeat and after.uptime == " 12:00:10 up 4 min"


def test_a_revoked_key_is_not_believed_although_remembered(key):
    host_trust.host_credentials_revoke(host=ComputeHost.objects.get(name=HOST))
    before = ComputeHost.objects.values().get(name=HOST)
    refused = refusals(MessageRefusal.Reason.UNKNOWN_SENDER)
    send(key, beat())
    assert ComputeHost.objects.values().get(name=HOST) == before
    assert refusals(MessageRefusal.Reason.UNKNOWN_SENDER) == refused + 1


def test_a_new_key_is_believed_and_the_old_one_no_longer(key):
    old = key
    new = signing.new_private_key()
    host_trust.host_enroll_many(names=[HOST], public_keys={HOST: signing.encode_public(new)})
    send(new, beat(uptime="new key"))
    assert ComputeHost.objects.get(name=HOST).uptime == "new key"
    send(old, beat(uptime="old key"))
    assert ComputeHost.objects.get(name=HOST).uptime == "new key"


def test_a_stale_beat_is_refused(key):
    send(key, beat(), signed_at=time.time() + 60)
    refused = refusals(MessageRefusal.Reason.REPLAY)
    send(key, beat(uptime="stale"))
    assert ComputeHost.objects.get(name=HOST).uptime != "stale"
    assert refusals(MessageRefusal.Reason.REPLAY) == refused + 1


def test_a_changed_resource_is_recorded(key):
    send(key, beat(vcpus=16, physical_networks=["public", "lab"]))
    row = ComputeHost.objects.get(name=HOST)
    assert (row.vcpus, row.physical_networks) == (16, ["lab", "public"])


def test_a_beat_about_another_host_is_refused(key):
    refused = refusals(MessageRefusal.Reason.NOT_ITS_OWN)
    other = ComputeHost.objects.create(name="beat-other")
    send(key, beat(host=other.name))
    assert ComputeHost.objects.get(pk=other.pk).last_heartbeat is None
    assert refusals(MessageRefusal.Reason.NOT_ITS_OWN) == refused + 1


def test_power_states_orphans_and_the_network_plan_follow_the_beat(key, monkeypatch):
    host = ComputeHost.objects.get(name=HOST)
    running = InstanceFactory(host=host, vm_state=VmState.ACTIVE, power_state=PowerState.RUNNING)
    gone = InstanceFactory(host=host, vm_state=VmState.ACTIVE, power_state=PowerState.RUNNING)
    HostNetworkState.objects.create(host=host, generation=3, applied_generation=3)
    plans = []
    monkeypatch.setattr(rpc, "apply_network_state", lambda name, plan: plans.append((name, plan.generation)))
    domains = [{"instance_uuid": str(running.uuid), "power_state": PowerState.RUNNING}]
    send(key, beat(sent_at=time.time() + 1, domains=domains, unknown_domains=["theirs"], network_generation=2))
    assert running.__class__.objects.get(pk=running.pk).power_state == PowerState.RUNNING
    gone_row = gone.__class__.objects.get(pk=gone.pk)
    assert (gone_row.vm_state, gone_row.power_state) == (VmState.STOPPED, PowerState.NOSTATE)
    assert ComputeHost.objects.get(pk=host.pk).orphan_domains == ["theirs"]
    assert plans == [(HOST, 3)]
    send(key, beat(sent_at=time.time() + 2, domains=domains, network_generation=3))
    assert ComputeHost.objects.get(pk=host.pk).orphan_domains == []
    assert plans == [(HOST, 3)]


def forget_keys(monkeypatch, *, loaded_at: float) -> None:
    """This process as a conductor process that remembers no key, having read them all at ``loaded_at``."""
    monkeypatch.setattr(host_trust, "_remembered_keys", {})
    monkeypatch.setattr(host_trust, "_remembered_all_at", [loaded_at])


def test_a_process_that_never_met_the_host_reads_every_key_at_once(key, monkeypatch):
    forget_keys(monkeypatch, loaded_at=time.monotonic() - host_trust.REMEMBER_ALL_EVERY)
    _other, other_key = host_trust.host_enroll(name="beat-statement-2")
    with CaptureQueriesContext(connection) as queries:
        send(key, beat(uptime="first beat this process sees"))
    # The keys of every host, then the one statement; not the full check.
    assert len(queries) == 2, [q["sql"] for q in queries]
    assert ComputeHost.objects.get(name=HOST).uptime == "first beat this process sees"
    assert set(host_trust._remembered_keys) >= {HOST, "beat-statement-2"}


def test_keys_are_read_at_once_no_more_often_than_the_interval(key, monkeypatch):
    forget_keys(monkeypatch, loaded_at=time.monotonic())  # just read, and this host was not among them
    with CaptureQueriesContext(connection) as queries:
        send(key, beat(uptime="full check"))
    assert not any('revoked_at" IS NULL AND' in q["sql"] and "deleted_at" in q["sql"] for q in queries)
    assert len(queries) > 2  # believed afresh, through the full check
    assert ComputeHost.objects.get(name=HOST).uptime == "full check"


def test_a_revoked_key_read_at_once_is_not_believed(key, monkeypatch):
    host_trust.host_credentials_revoke(host=ComputeHost.objects.get(name=HOST))
    forget_keys(monkeypatch, loaded_at=time.monotonic() - host_trust.REMEMBER_ALL_EVERY)
    before = ComputeHost.objects.values().get(name=HOST)
    send(key, beat(uptime="revoked"))
    assert ComputeHost.objects.values().get(name=HOST) == before
    assert HOST not in host_trust._remembered_keys
