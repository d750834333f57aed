"""PostgreSQL's "give way": a transaction it ended to break a deadlock or a serialization conflict."""

from __future__ import annotations

from django.db import OperationalError
from psycopg import errors as pg_errors


def gave_way(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL ended the transaction to let a concurrent one through: nothing the
    transaction did was kept, and the same work may be tried again."""
    return isinstance(exc, OperationalError) and isinstance(
        exc.__cause__, pg_errors.DeadlockDetected | pg_errors.SerializationFailure
    )
