"""Django's PostgreSQL backend, except that timestamps are read by psycopg's compiled loader.

Django reads every ``timestamptz`` through a Python subclass of psycopg's pure-Python loader, to give each
value the connection's time zone: a page of a thousand servers parses four thousand timestamps that way.
Where the project runs (``TIME_ZONE = "UTC"``, ``USE_TZ``) Django sets the connection's ``TimeZone`` to
UTC, and psycopg's compiled loader then gives the same values, ``datetime.UTC`` included, so
that loader takes the place of Django's. Without psycopg's C extension, or in another time zone, this
backend is Django's. Settings select it in place of Django's.
"""

from __future__ import annotations

import datetime
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
