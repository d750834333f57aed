"""The project's PostgreSQL backend (``portal/db/postgresql``) against the real server: timestamps read
by psycopg's compiled loader are what Django's would give, an idle connection's health check sends
nothing yet still finds a connection the server ended, and the statements the project builds once are
prepared while Django's are not."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.db.utils import ConnectionHandler

from portal.db.postgresql.base import COMPILED_TIMESTAMPS
from tests.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def other():
    """A second connection to the test database, through the same backend."""
    handler = ConnectionHandler({"default": dict(connection.settings_dict)})
    wrapper = handler["default"]
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def last_query(pid: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row[0] if row else None


def test_timestamps_are_read_in_utc_by_the_compiled_loader():
    assert connection.vendor == "postgresql" and COMPILED_TIMESTAMPS
    with connection.cursor() as cursor:
        cursor.execute("SELECT '2026-01-01 10:00:00.123456+05'::timestamptz, NULL::timestamptz")
        value, missing = cursor.fetchone()
        loader = cursor.cursor._tx.get_loader(cursor.description[0].type_code, 0)
    assert value == datetime.datetime(2026, 1, 1, 5, 0, 0, 123456, tzinfo=datetime.UTC)
    assert value.tzinfo is datetime.UTC  # what Django's own loader gives
    assert missing is None
    assert type(loader).__module__.startswith("psycopg_binary")


def test_the_check_of_an_idle_connection_sends_nothing(other):
    with other.cursor() as cursor:
        cursor.execute("SELECT 'the last query'")
    pid = other.connection.info.backend_pid
    assert other.is_usable()
    assert last_query(pid) == "SELECT 'the last query'"  # Django's check would have sent SELECT 1


def test_a_connection_the_server_ended_is_found_and_replaced(other):
    pid = other.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: last_query(pid) is None, 10, message="the backend's end")
    assert not other.is_usable()
    other.health_check_enabled, other.health_check_done = True, False
    other.close_if_health_check_failed()
    assert other.connection is None
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def prepared_statements(wrapper) -> list[str]:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_a_compiled_query_is_prepared_on_its_second_run_and_django_queries_never():
    """The queries whose SQL is built once per process are planned once per connection."""
    from portal.models import Flavor
    from portal.selectors.rows import CompiledQuery

    query = CompiledQuery(lambda _shape, *, flavorid: Flavor.objects.filter(flavorid=flavorid).values_list("name"))
    for _ in range(3):
        list(Flavor.objects.filter(name="m1.tiny").values_list("pk"))
    query.rows("one", flavorid="none")
    assert not [s for s in prepared_statements(connection) if "portal_flavor" in s]
    query.rows("one", flavorid="none")
    prepared = [s for s in prepared_statements(connection) if "portal_flavor" in s]
    assert len(prepared) == 1 and '"flavorid" = $1' in prepared[0], prepared
    for flavorid in ("a", "b", "c"):
        assert query.rows("one", flavorid=flavorid) == []
    assert len([s for s in prepared_statements(connection) if "portal_flavor" in s]) == 1
