"""An instance locked for a change (``Instance.objects.for_change``, what every service that changes an
instance takes) on the real PostgreSQL: two changes of one instance wait for each other, while a row that
refers to it (an action the API records, whose foreign key PostgreSQL checks) does not wait for either."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, transaction
from psycopg import errors as pg_errors

from portal.models import Instance, InstanceAction
from portal.services import lifecycle
from tests.factories import InstanceFactory
from tests.integration.scheduling.conftest import at_once, new_ctx

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def locked_while(instance: Instance, other) -> list[BaseException]:
    """Run ``other`` (within a 2 s lock timeout, on its own connection) while another transaction holds
    ``instance`` locked for a change: what it raised."""
    held, done = threading.Event(), threading.Event()
    raised: list[BaseException] = []

    def holder():
        with transaction.atomic():
            Instance.objects.for_change().get(pk=instance.pk)
            held.set()
            done.wait(10)

    def meanwhile():
        try:
            assert held.wait(10)
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '2s'")
                other()
        except BaseException as exc:
            raised.append(exc)
        finally:
            done.set()

    assert at_once(holder, meanwhile) == []
    return raised


def test_an_action_is_recorded_while_its_instance_is_locked_for_a_change():
    ctx = new_ctx()
    instance = InstanceFactory(project=ctx.project, user=ctx.user)

    raised = locked_while(instance, lambda: lifecycle.action_record(instance=instance, action="lock", ctx=ctx))

    assert raised == []
    assert InstanceAction.objects.filter(instance=instance, action="lock").count() == 1


def test_a_second_change_of_the_instance_waits_for_the_first():
    ctx = new_ctx()
    instance = InstanceFactory(project=ctx.project, user=ctx.user)

    raised = locked_while(instance, lambda: Instance.objects.for_change().get(pk=instance.pk))

    assert len(raised) == 1 and isinstance(raised[0], OperationalError), raised
    assert isinstance(raised[0].__cause__, pg_errors.LockNotAvailable), raised[0]
