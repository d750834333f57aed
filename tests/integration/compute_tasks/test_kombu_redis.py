"""kombu's Redis transport as the cloud runs it (compute_tasks/kombu_redis.py), against a real Redis: a
channel publishes and acknowledges through one Redis client, and takes a new one with a new pool."""

from __future__ import annotations

import os

import pytest
import redis
from kombu import Connection, Exchange, Queue

import compute_tasks.kombu_redis  # noqa: F401 - what every process of the cloud imports

pytestmark = pytest.mark.integration

BROKER = os.environ.get("COMPUTE_TEST_BROKER_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
def clients_made(monkeypatch):
    made = []
    original = redis.Redis.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    return made


def test_a_channel_publishes_and_acknowledges_through_one_client(clients_made):
    queue = Queue("kombu-clients-test", Exchange("kombu-clients-test"), routing_key="kombu-clients-test")
    with Connection(BROKER) as connection:
        channel = connection.channel()
        queue(channel).declare()
        queue(channel).purge()
        producer = connection.Producer(channel)
        before = len(clients_made)
        for number in range(20):
            producer.publish({"n": number}, exchange=queue.exchange, routing_key="kombu-clients-test")
        received = []
        for _ in range(20):
            message = queue(channel).get(no_ack=False)
            received.append(message.payload["n"])
            message.ack()
        assert received == list(range(20))
        assert len(clients_made) - before <= 1

        # A new pool (kombu drops its pools when the connection is lost): a client of the new pool.
        shared = channel._cloud_client
        channel._pool = None
        producer.publish({"n": 20}, exchange=queue.exchange, routing_key="kombu-clients-test")
        assert channel._cloud_client is not shared
        assert channel._cloud_client.connection_pool is channel.pool
        message = queue(channel).get(no_ack=False)
        assert message.payload == {"n": 20}
        message.ack()
        queue(channel).delete()
