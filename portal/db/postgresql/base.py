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

``prepared_cursor()`` is a cursor whose parameters are bound by the server (Django's cursors write them
into the SQL text), so that psycopg prepares a statement the second time a connection runs it
(``PREPARED_AFTER``), and PostgreSQL stops planning it on every run (after five runs with plans of their
own, it keeps one generic plan unless that costs more). The queries whose SQL the project builds once per
process (``portal.selectors.rows``) run this way: planning was most of PostgreSQL's CPU for the reads a
boot makes (a server with its host, flavor, user and image: 0.8 ms at the least to plan, half that to
run). Django's own cursors stay as they are. Nothing here sits behind a pooler that would lose a
connection's prepared statements (PgBouncer in transaction mode).

Settings select this backend in place of Django's.
"""

from __future__ import annotations

import datetime
import select
from functools import lru_cache

from django.db.backends.postgresql import base, operations
from psycopg import adapt, adapters, errors
from psycopg.pq import Format
from psycopg.types.datetime import TimestamptzLoader as PythonTimestamptzLoader

_COMPILED = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)
COMPILED_TIMESTAMPS = _COMPILED is not None and _COMPILED is not PythonTimestamptzLoader


# Runs of one statement on a connection, by a prepared cursor, before psycopg prepares it (on the next).
PREPARED_AFTER = 1


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        """A prepared cursor's query as Django's cursors would have sent it, for Django's query log (debug
        pages, tests that count queries): psycopg keeps only its text with placeholders."""
        if isinstance(cursor, base.ServerBindingCursor):
            try:
                return self.compose_sql(sql, params)
            except errors.DataError:
                return None
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_connection_params(self) -> dict:
        prepare_threshold = self.settings_dict["OPTIONS"].get("prepare_threshold", PREPARED_AFTER)
        params = super().get_connection_params()
        if COMPILED_TIMESTAMPS and self.timezone is datetime.UTC:
            params["context"] = _with_compiled_loader(params["context"])
        # Only server-side binding cursors prepare (``prepared_cursor``); Django's never do.
        params["prepare_threshold"] = prepare_threshold
        return params

    def prepared_cursor(self):
        """A cursor, wrapped as Django wraps its own (errors, query logging), that binds its parameters on
        the server: psycopg prepares what it runs once the connection has run it ``PREPARED_AFTER``
        times before."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            cursor = base.ServerBindingCursor(self.connection)
            return self._prepare_cursor(cursor)

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
