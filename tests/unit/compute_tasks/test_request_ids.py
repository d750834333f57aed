"""Request ids: what a log line shows, what a message carries (signed), and what a worker believes."""

import logging
import types

import pytest
from celery import Celery

from compute_tasks import request_ids, rpc, signing

pytestmark = pytest.mark.unit

REQ = "req-0b6c5f0e-8d0a-4f5e-9a55-3f4f2f8f0a11"
OTHER = "req-7d1f4a66-1c3b-4b9e-8f0e-2a0b7c9d5e42"


@pytest.fixture
def working_for():
    tokens = []

    def use(request_id):
        tokens.append(request_ids.use(request_id))

    yield use
    for token in reversed(tokens):
        request_ids.reset(token)


def record() -> logging.LogRecord:
    return logging.LogRecord("portal.services.instances", logging.INFO, __file__, 1, "booted", None, None)


def test_a_log_record_names_the_request_or_shows_a_dash(working_for):
    outside = record()
    request_ids.RequestIdFilter().filter(outside)
    assert outside.request_id == "-"
    working_for(REQ)
    inside = record()
    assert request_ids.RequestIdFilter().filter(inside)
    assert inside.request_id == REQ
    assert f"[{REQ}]" in logging.Formatter(request_ids.LOG_FORMAT).format(inside)


@pytest.mark.parametrize("forged", ["req-1\nINFO forged line", "anything", REQ.upper(), f"{REQ}x", 42])
def test_only_an_id_of_the_apis_shape_is_worked_for(working_for, forged):
    working_for(forged)
    assert request_ids.current() is None
    assert request_ids.of_message({"_request_id": forged, "request_id": forged}) is None


def test_a_message_names_the_senders_request_before_its_own_field():
    assert request_ids.of_message({"_request_id": REQ, "request_id": OTHER}) == REQ
    assert request_ids.of_message({"request_id": OTHER}) == OTHER
    assert request_ids.of_message({"instance_uuid": "x"}) is None
    assert request_ids.of_message(["not", "a", "dict"]) is None


class Broker:
    def __init__(self):
        self.sent = []
        self.declares = []
        self.conf = types.SimpleNamespace(broker_url="memory://one")

    def send_task(self, name, args, queue, expires=None, declare=None, **_options):
        self.sent.append((name, queue, args[0], args[1]))
        self.declares.append(declare)


@pytest.fixture
def broker(monkeypatch):
    key = signing.new_private_key()
    sent = Broker()
    monkeypatch.setattr(rpc, "current_app", sent)
    monkeypatch.setattr(rpc, "_signer", lambda: signing.Signer("hv1", key))
    sent.verify = lambda name, queue, body, auth: signing.verify(name, queue, body, auth, {"hv1": key.public_key()}.get)
    return sent


def test_a_message_carries_the_request_its_sender_works_for_signed(broker, working_for):
    working_for(REQ)
    rpc.migration_progress(rpc.MigrationProgress(migration_id=7, host="hv1"))
    name, queue, body, auth = broker.sent[0]
    assert body["_request_id"] == REQ
    assert broker.verify(name, queue, body, auth).sender == "hv1"
    # The id is part of what is signed: one rewritten on the way is refused.
    with pytest.raises(signing.Refused) as refused:
        broker.verify(name, queue, {**body, "_request_id": OTHER}, auth)
    assert refused.value.reason == signing.BAD_SIGNATURE


def test_a_message_about_a_request_carries_that_request(broker, working_for):
    working_for(OTHER)
    rpc.schedule_and_build(rpc.ScheduleRequest(instance_uuid="u", request_id=REQ))
    assert broker.sent[0][2]["_request_id"] == REQ


def test_a_message_outside_any_request_carries_none(broker):
    rpc.migration_progress(rpc.MigrationProgress(migration_id=7, host="hv1"))
    assert "_request_id" not in broker.sent[0][2]


def test_a_task_works_for_its_messages_request_only_while_it_handles_it(working_for):
    working_for(OTHER)
    with request_ids.working_for(REQ):
        assert request_ids.current() == REQ
    assert request_ids.current() == OTHER
    with pytest.raises(RuntimeError), request_ids.working_for(REQ):
        raise RuntimeError("the handler failed")
    assert request_ids.current() == OTHER


def test_celerys_line_about_how_a_task_ended_names_its_request():
    app = Celery("request-ids-test", set_as_current=False)
    after = {}

    @app.task(name="test.handle")
    def handle():
        with request_ids.working_for(REQ):
            pass
        # Celery writes its line about the outcome here, after the task's code: still this request's.
        line = record()
        request_ids.RequestIdFilter().filter(line)
        after["request_id"] = line.request_id

    handle.apply()
    assert after["request_id"] == REQ
    assert request_ids.current() is None
    outside = record()
    request_ids.RequestIdFilter().filter(outside)
    assert outside.request_id == "-"


def test_celerys_handlers_get_the_filter_once():
    logger = logging.Logger("celery-test")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    request_ids._filter_celery_handlers(logger=logger)
    request_ids._filter_celery_handlers(logger=logger)
    assert [type(f) for f in handler.filters] == [request_ids.RequestIdFilter]


def test_a_queue_is_declared_with_the_first_message_a_process_sends_to_it_on_each_broker(broker, monkeypatch):
    monkeypatch.setattr(rpc, "_declared", set())
    ref = rpc.InstanceRef(instance_uuid="u", domain_name="d")
    rpc.start_instance("hv1", ref)
    rpc.start_instance("hv1", ref)
    rpc.start_instance("hv2", ref)
    broker.conf.broker_url = "memory://two"  # another broker (a RabbitMQ vhost) has none of them yet
    rpc.start_instance("hv1", ref)
    # None: Celery declares the message's queue; []: nothing to declare.
    assert broker.declares == [None, [], None, None]
