"""How many messages wait in the Celery queues, asked of the broker with a short timeout.

Redis keeps a queue as a list per priority step (kombu's layout: the queue's name, then the name with a
separator and the step for each step above 0): one pipeline of LLENs answers for every queue at once.
RabbitMQ answers a passive declare of each queue with its message count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from kombu import Connection
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not answer within the timeout."""


def queue_lengths(broker_url: str, queues: Sequence[str], *, timeout: float) -> dict[str, int]:
    """Messages waiting in each of ``queues`` (0 for a queue the broker does not know). Raises
    ``BrokerUnavailable`` when the broker cannot be asked within about ``timeout`` seconds."""
    scheme = urlsplit(broker_url).scheme
    if scheme in ("redis", "rediss"):
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    else:
        options = {"read_timeout": timeout, "write_timeout": timeout}
    try:
        with Connection(broker_url, connect_timeout=timeout, transport_options=options) as connection:
            if connection.transport.driver_type == "redis":
                return _redis_lengths(connection.default_channel, queues)
            return _declared_lengths(connection, queues, deadline=time.monotonic() + timeout)
    except (OSError, KombuError, RedisError) as exc:
        raise BrokerUnavailable(f"the broker did not answer: {exc.__class__.__name__}") from exc


def _redis_lengths(channel, queues: Sequence[str]) -> dict[str, int]:
    pipeline = channel.client.pipeline(transaction=False)
    steps = list(channel.priority_steps)
    for queue in queues:
        for step in steps:
            pipeline.llen(f"{queue}{channel.sep}{step}" if step else queue)
    lengths = pipeline.execute()
    return {queue: sum(lengths[i * len(steps) : (i + 1) * len(steps)]) for i, queue in enumerate(queues)}


def _declared_lengths(connection, queues: Sequence[str], *, deadline: float) -> dict[str, int]:
    lengths: dict[str, int] = {}
    channel = connection.channel()
    try:
        for queue in queues:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"the broker answered for {len(lengths)} of {len(queues)} queues in time")
            try:
                lengths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:
                # Not declared (no worker ever consumed it): empty. The broker closed the channel over it.
                lengths[queue] = 0
                channel = connection.channel()
    finally:
        channel.close()
    return lengths
