"""Two changes to kombu's Redis transport (5.7): a guard around one failure that kills a worker when the
broker restarts, and one Redis client per channel where kombu made one per command.

The guard.

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

The client. kombu makes a new ``redis.Redis`` for every command it sends outside its event loop: every
message published, every acknowledgement of a finished task. redis-py builds some two hundred response
callbacks for each new client: an eighth of the CPU of the conductor's consuming process, and a part of
every other Celery process of the cloud (the API publishing, the hosts' workers reporting). A channel now
keeps the client it made while its connection pool is the same: redis-py's clients are safe to share
between threads, each command taking a connection from the pool and giving it back.

The control plane (``portal.celery``) and the compute worker import this module.
"""

from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def _conn_or_acquire(self, client=None):
    if client:
        yield client
        return
    pool = self.pool  # a new pool after a reconnection; the guard above raises for a closed channel
    shared = self.__dict__.get("_cloud_client")
    if shared is None or shared.connection_pool is not pool:
        shared = self._cloud_client = self._create_client()
    yield shared


if not getattr(redis_transport.Channel.conn_or_acquire, "_cloud_shared", False):
    _conn_or_acquire._cloud_shared = True  # type: ignore[attr-defined]
    redis_transport.Channel.conn_or_acquire = _conn_or_acquire
