"""The conductor keeps its PostgreSQL connection from one task to the next (``CONN_MAX_AGE``), and
replaces one that broke (``CONN_HEALTH_CHECKS``), against a real worker process and the real broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.db import connection
from django.utils import timezone

from portal.models import FailedSignIn
from tests.processes import Cluster, database_url, purge_broker, wait_until

pytestmark = pytest.mark.integration

APPLICATION = "conductor-connections-test"


@pytest.fixture(scope="module")
def conductor(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("connections"))
    # Named, so that the worker's backends can be told from the test's own.
    cluster.env["DATABASE_URL"] = f"{database_url()}?application_name={APPLICATION}"
    cluster.start_conductor(concurrency=1)
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


def worker_backends() -> set[tuple[int, object]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [APPLICATION],
        )
        return set(cursor.fetchall())


def run_purge() -> None:
    """One task that needs the database, sent as beat sends it; returns once the worker has done it."""
    FailedSignIn.objects.create(username="someone", address="192.0.2.1", at=timezone.now() - timedelta(days=2))
    current_app.send_task("conductor.purge_failed_sign_ins", queue="conductor")
    wait_until(lambda: not FailedSignIn.objects.exists(), 30, message="the worker's purge")


def test_a_connection_serves_many_tasks(conductor, transactional_db):
    run_purge()
    first = wait_until(worker_backends, 10, message="the worker's backend")
    for _ in range(5):
        run_purge()
    assert worker_backends() == first  # the same backend, started once, served every task


def test_a_broken_connection_is_replaced(conductor, transactional_db):
    run_purge()
    before = wait_until(worker_backends, 10, message="the worker's backend")
    with connection.cursor() as cursor:
        for pid, _started in before:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    run_purge()  # the health check finds the dead connection and the task runs on a new one
    after = wait_until(worker_backends, 10, message="a new backend")
    assert after and not (after & before)
    assert "Traceback" not in conductor.logs()
