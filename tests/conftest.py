import base64

import pytest
from pytest_django.plugin import blocking_manager_key
from rest_framework.test import APIClient

from compute_tasks import request_ids
from portal.models import Role

from .cinder_service import cinder, cinder_settings  # noqa: F401 (fixtures: a real Cinder for the session)
from .factories import FlavorFactory, MembershipFactory
from .http import ApiUser
from .keystone import keystone, keystone_settings  # noqa: F401 (fixtures: a real Keystone for the session)
from .processes import allow_database_access, enroll_again, mark_test_run, reap_orphans


def pytest_configure(config):
    _flush_retrying_deadlocks()
    reaped = reap_orphans()
    if reaped:
        print(f"killed {len(reaped)} processes left behind by an earlier test run: {reaped}")
    mark_test_run()
    # Clusters started by fixtures of any scope enroll their hosts in the test database.
    allow_database_access(config.stash[blocking_manager_key])


def _flush_retrying_deadlocks() -> None:
    """A test's database flush (``TRUNCATE`` of every table) runs while a module's cloud keeps working: a
    heartbeat that holds one table and writes another can deadlock with it, and PostgreSQL may end the
    flush. The flush then runs again, as a conductor task does (``retrying_deadlocks``): the deadlock is
    the harness's own, a cloud never truncates. Django's ``flush`` reports the database's error as the
    cause of a ``CommandError``: the retry is given that error."""
    from django.core.management.base import CommandError
    from django.db import DatabaseError
    from django.test import TransactionTestCase

    teardown = TransactionTestCase._fixture_teardown

    def flush(self):
        try:
            return teardown(self)
        except CommandError as exc:
            if isinstance(exc.__cause__, DatabaseError):
                raise exc.__cause__  # noqa: B904 ("from" would replace its own cause, the deadlock)
            raise

    def retrying(self):
        from portal.conductor.tasks import retrying_deadlocks

        return retrying_deadlocks(lambda: flush(self), what="a test's database flush")

    TransactionTestCase._fixture_teardown = retrying


@pytest.fixture(autouse=True)
def _no_request_after_the_test():
    """After each test this thread works for no request. A request ends when the server closes its
    answer (``request_finished``); a test that calls the application in its own thread and never closes
    an answer (a WSGI client, a streamed answer read only in part) would leave its request current for
    the tests after it."""
    yield
    request_ids.use(None)


@pytest.fixture(autouse=True)
def _enrolled_hosts():
    """The live test hosts' enrollments, which each test's database flush forgets, are made again."""
    enroll_again()


def basic_auth(username: str, password: str = "secret") -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Caller:
    """A user with a role in a project, and an API client authenticated as them."""

    def __init__(self, role: str = Role.MEMBER, project=None):
        kwargs = {"role": role}
        if project is not None:
            kwargs["project"] = project
        self.membership = MembershipFactory(**kwargs)
        self.user = self.membership.user
        self.project = self.membership.project
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=basic_auth(self.user.username))


@pytest.fixture
def member(db):
    return Caller(Role.MEMBER)


@pytest.fixture
def reader(db, member):
    return Caller(Role.READER, project=member.project)


@pytest.fixture
def admin(db):
    return Caller(Role.ADMIN)


@pytest.fixture
def stranger(db):
    """A member of another project."""
    return Caller(Role.MEMBER)


@pytest.fixture
def api_user(transactional_db, live_server):
    return ApiUser(live_server.url)


@pytest.fixture
def tiny_flavor(transactional_db):
    return FlavorFactory(flavorid="1", name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (fixtures read ``rep_call``), and a failing test carries the
    logs of every service it used: any fixture value with a ``logs()`` (the cloud's processes, Keystone,
    Cinder) adds a section, so a failure explains itself without a rerun."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
    if not report.failed:
        return
    seen = set()
    for name, value in getattr(item, "funcargs", {}).items():
        logs = getattr(value, "logs", None)
        if not callable(logs) or id(value) in seen:
            continue
        seen.add(id(value))
        try:
            text = logs()
        except Exception as exc:  # a log that cannot be read must not hide the failure itself
            text = f"(could not read the logs: {exc!r})"
        report.sections.append((f"logs of {name} ({type(value).__name__})", text))
