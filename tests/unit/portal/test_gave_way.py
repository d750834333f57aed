"""Telling PostgreSQL's "give way" (a deadlock, a serialization failure) from its other errors, and what
each API answers for it: 503 with Retry-After in its own envelope, never a 500."""

import pytest
from django.db import DatabaseError, OperationalError
from psycopg import errors as pg_errors

from portal.api.errors import openstack_exception_handler
from portal.api.identity.errors import identity_exception_handler
from portal.db.contention import gave_way

pytestmark = pytest.mark.unit


def database_error(cause: BaseException, kind: type[DatabaseError] = OperationalError) -> DatabaseError:
    """What Django raises for ``cause``: its own class, with the driver's error as the cause."""
    try:
        raise kind(str(cause)) from cause
    except DatabaseError as exc:
        return exc


@pytest.mark.parametrize("cause", [pg_errors.DeadlockDetected("deadlock detected"), pg_errors.SerializationFailure()])
def test_a_deadlock_or_a_serialization_failure_gave_way(cause):
    assert gave_way(database_error(cause))


@pytest.mark.parametrize(
    "error",
    [
        database_error(pg_errors.LockNotAvailable()),
        database_error(pg_errors.QueryCanceled()),
        database_error(pg_errors.DeadlockDetected(), kind=DatabaseError),  # not Django's OperationalError
        OperationalError("no cause"),
        pg_errors.DeadlockDetected(),  # the driver's own, not through Django
    ],
)
def test_other_errors_did_not(error):
    assert not gave_way(error)


class View:
    pass


def test_the_identity_api_answers_503_with_retry_after():
    response = identity_exception_handler(database_error(pg_errors.DeadlockDetected()), {"view": View()})
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.data["error"]["code"] == 503 and "try it again" in response.data["error"]["message"]


def test_the_compute_api_answers_503_with_retry_after():
    response = openstack_exception_handler(database_error(pg_errors.SerializationFailure()), {"view": View()})
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.data["serviceUnavailable"]["code"] == 503
