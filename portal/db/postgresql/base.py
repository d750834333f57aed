"""Django's PostgreSQL backend, except that timestamps are read by psycopg's compiled loader and an
idle connection's health check needs no round trip.

Django reads every ``timestamptz`` through a Python subclass of psycopg's pure-Python loader, to give each
value the connection's time zone: a page of a thousand servers parses four thousand timestamps that way.
Where the project runs (``TIME_ZONE = "UTC"``, ``USE_TZ``) Django sets the connection's ``TimeZone`` to
UTC, and psycopg's compiled loader then gives the same values, ``datetime.UTC`` included, so
that loader takes the place of Django's. Without psycopg's C extension, or in another time zone, this
backend is Django's.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every request (or task)
that reuses a connection: a round trip, and about a tenth of the CPU of a small read. Between two
requests the server sends an idle connection nothing unless it is ending the session (a restart, an
administrator's ``pg_terminate_backend``: an error message, then the socket's end), so a socket with
nothing to read is a connection that is still there; one with something to read gets Django's check.

Settings select this backend in place of Django's.
"""

from __future__ import annotations

import datetime
import select
from functools import lru_cache

from django.db.backends.postgresql import base
from psycopg import adapt, adapters
from psycopg.pq import Format
from psycopg.types.datetime import TimestamptzLoader as PythonTimestamptzLoader

_COMPILED = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)
COMPILED_TIMESTAMPS = _COMPILED is not None and _COMPILED is not PythonTimestamptzLoader


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        if COMPILED_TIMESTAMPS and self.timezone is datetime.UTC:
            params["context"] = _with_compiled_loader(params["context"])
        return params

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        poller = select.poll()
        try:
            poller.register(connection.fileno(), select.POLLIN)
            pending = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not pending or super().is_usable()


class UtcTimestamptzLoader:
    """Makes psycopg's compiled loader (a final class). Registered in its place so that psycopg reads each
    value in C, with no Python call, and ``timezone`` is what Django's cursors check before they would
    register their own loader."""

    format = Format.TEXT
    timezone = datetime.UTC

    def __new__(cls, oid: int, context=None):
        return _COMPILED(oid, context)


@lru_cache
def _with_compiled_loader(template: adapt.AdaptersMap) -> adapt.AdaptersMap:
    context = adapt.AdaptersMap(template)
    context.register_loader("timestamptz", UtcTimestamptzLoader)
    return context
