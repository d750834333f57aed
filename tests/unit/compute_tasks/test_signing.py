"""Signed messages: what a signature binds, and every way a forged or replayed one is told apart."""

import time

import pytest

from compute_tasks import signing

pytestmark = pytest.mark.unit

BODY = {"instance_uuid": "7f6c1f5e-0000-4000-8000-000000000001", "host": "hv1", "power_state": 1}


@pytest.fixture
def hv1():
    return signing.new_private_key()


def known(**keys):
    return {name: key.public_key() for name, key in keys.items()}.get


def test_a_signed_message_names_its_sender(hv1):
    auth = signing.Signer("hv1", hv1).sign("conductor.instance_built", "conductor", BODY)
    verified = signing.verify("conductor.instance_built", "conductor", BODY, auth, known(hv1=hv1))
    assert verified.sender == "hv1"
    assert verified.nonce == auth["nonce"]


@pytest.mark.parametrize(
    ("task", "recipient", "body", "reason"),
    [
        ("conductor.instance_built", "conductor", {**BODY, "power_state": 4}, signing.BAD_SIGNATURE),
        ("conductor.action_done", "conductor", BODY, signing.BAD_SIGNATURE),  # re-labelled as another task
        ("conductor.instance_built", "compute.hv2", BODY, signing.MISADDRESSED),  # put on another queue
    ],
)
def test_a_signature_binds_body_task_and_recipient(hv1, task, recipient, body, reason):
    auth = signing.Signer("hv1", hv1).sign("conductor.instance_built", "conductor", BODY)
    with pytest.raises(signing.Refused) as refused:
        signing.verify(task, recipient, body, auth, known(hv1=hv1))
    assert refused.value.reason == reason


def test_a_recipient_rewritten_with_the_message_breaks_the_signature(hv1):
    auth = signing.Signer("hv1", hv1).sign("compute.stop_instance", "compute.hv1", BODY)
    with pytest.raises(signing.Refused) as refused:
        signing.verify(
            "compute.stop_instance", "compute.hv2", BODY, {**auth, "recipient": "compute.hv2"}, known(hv1=hv1)
        )
    assert refused.value.reason == signing.BAD_SIGNATURE


def test_a_sender_cannot_claim_another_name(hv1):
    hv2 = signing.new_private_key()
    auth = signing.Signer("hv2", hv1).sign("conductor.heartbeat", "conductor", BODY)  # hv1's key, hv2's name
    with pytest.raises(signing.Refused) as refused:
        signing.verify("conductor.heartbeat", "conductor", BODY, auth, known(hv1=hv1, hv2=hv2))
    assert refused.value.reason == signing.BAD_SIGNATURE


def test_unknown_and_unsigned_senders_are_refused(hv1):
    auth = signing.Signer("intruder", signing.new_private_key()).sign("conductor.heartbeat", "conductor", BODY)
    with pytest.raises(signing.Refused) as unknown:
        signing.verify("conductor.heartbeat", "conductor", BODY, auth, known(hv1=hv1))
    assert unknown.value.reason == signing.UNKNOWN_SENDER
    for auth in (None, {}, {"sender": "hv1", "sig": "!!"}, "a string"):
        with pytest.raises(signing.Refused):
            signing.verify("conductor.heartbeat", "conductor", BODY, auth, known(hv1=hv1))


@pytest.mark.parametrize("offset", [-signing.MAX_AGE_SECONDS - 5, signing.MAX_CLOCK_SKEW_SECONDS + 5])
def test_old_and_future_messages_are_refused(hv1, offset):
    auth = signing.Signer("hv1", hv1).sign("conductor.heartbeat", "conductor", BODY, now=time.time() + offset)
    with pytest.raises(signing.Refused) as refused:
        signing.verify("conductor.heartbeat", "conductor", BODY, auth, known(hv1=hv1))
    assert refused.value.reason == signing.STALE


def test_the_nonce_store_remembers_across_restarts(tmp_path):
    store = signing.NonceStore(tmp_path / "nonces.sqlite3")
    assert not store.seen("n1")
    store.remember("n1")
    store.close()
    again = signing.NonceStore(tmp_path / "nonces.sqlite3")
    assert again.seen("n1") and not again.seen("n2")
    assert (tmp_path / "nonces.sqlite3").stat().st_mode & 0o777 == 0o600


def test_credentials_are_private_and_round_trip(tmp_path, hv1):
    control = signing.new_private_key()
    path = tmp_path / "credentials.json"
    signing.HostCredentials.write(path, keys={"hv1": hv1}, control_plane_public_key=signing.encode_public(control))
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = signing.HostCredentials.load(path)
    auth = loaded.signer("hv1").sign("conductor.heartbeat", "conductor", BODY)
    assert signing.verify("conductor.heartbeat", "conductor", BODY, auth, known(hv1=hv1)).sender == "hv1"
    assert signing.encode_public(loaded.control_plane) == signing.encode_public(control)
