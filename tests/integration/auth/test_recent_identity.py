"""A password (HTTP Basic) caller of the compute API is not re-read from the database on every request:
its user, project and role are kept for ``IDENTITY['PRINCIPAL_CACHE_TTL']`` seconds, a change made in this
process counts at once, and one made behind its back within that time."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.models import Membership
from portal.services.projects_admin import membership_remove

pytestmark = pytest.mark.django_db

SERVERS = "/compute/v2.1/servers"


def identity_queries(queries) -> list[str]:
    sources = ('FROM "auth_user"', 'FROM "portal_membership"', 'FROM "portal_project"')
    return [q["sql"] for q in queries.captured_queries if any(source in q["sql"] for source in sources)]


def test_a_polling_password_caller_costs_no_identity_query(member):
    assert member.client.get(SERVERS).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert member.client.get(SERVERS).status_code == 200
    assert identity_queries(queries) == []


def test_a_membership_removed_here_counts_at_once(member):
    assert member.client.get(SERVERS).status_code == 200
    membership_remove(membership=member.membership)
    assert member.client.get(SERVERS).status_code == 403


def test_a_change_behind_the_process_back_counts_once_the_reading_is_old(member, settings):
    settings.IDENTITY = {**settings.IDENTITY, "PRINCIPAL_CACHE_TTL": 1}
    assert member.client.get(SERVERS).status_code == 200
    Membership.objects.filter(pk=member.membership.pk).delete()  # another process's admin
    get_user_model().objects.filter(pk=member.user.pk).update(is_active=False)
    time.sleep(1.1)
    assert member.client.get(SERVERS).status_code in (401, 403)
