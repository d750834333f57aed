"""A guard around one failure of kombu's Redis transport (5.7) that kills a worker when the broker restarts.

When a worker loses its Redis connection while it holds unacknowledged messages (every task here is
acknowledged late), kombu goes on using the channel of the dropped connection: closing it tries to put
those messages back on their queue, and the task that was running acknowledges its message when it
ends. Both reach for the transport the channel no longer has and raise ``AttributeError``, which is
not a connection error, so Celery treats it as unrecoverable and the worker exits instead of
reconnecting (seen by tests/faults/test_broker_restart.py).

The guard makes a channel without a connection raise Redis's ``ConnectionError`` instead, which kombu
and Celery already handle: the restore and the acknowledgement are given up with a log line, the
messages stay in Redis's unacknowledged set (kombu restores them after the visibility timeout; every
task is idempotent), and the worker reconnects. The control plane does not wait for that: its reaper
sends lost scheduling requests again and ends tasks whose lease ran out.

Both the conductor (``portal.celery``) and the compute worker import this module.
"""

from __future__ import annotations

from kombu.transport import redis as redis_transport
from redis.exceptions import ConnectionError as RedisConnectionError

_original_connparams = redis_transport.Channel._connparams


def _connparams(self, asynchronous=False):
    transport = self.connection
    if transport is None or getattr(transport, "client", None) is None:
        raise RedisConnectionError("the broker connection of this channel is closed")
    return _original_connparams(self, asynchronous=asynchronous)


if not getattr(redis_transport.Channel._connparams, "_cloud_guard", False):
    _connparams._cloud_guard = True  # type: ignore[attr-defined]
    redis_transport.Channel._connparams = _connparams
