"""Hosts, projects and boots for the scheduling tests, made through the models and the create service."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from portal.auth.context import RequestContext
from portal.models import ComputeHost, Instance, QuotaLimit, Role
from portal.services import instances as instance_services
from portal.services import scheduling
from portal.states import VmState
from tests.factories import FlavorFactory, ImageFactory, MembershipFactory
from tests.processes import close_other_sessions, purge_broker

UNLIMITED = ("instances", "cores", "ram", "server_group_members")


def make_host(name: str, *, vcpus: int = 64, memory_mb: int = 65536, disk_gb: int = 1000, **fields) -> ComputeHost:
    """A host whose heartbeat counts as fresh for the whole test (a heartbeat from the future is up)."""
    fields.setdefault("last_heartbeat", timezone.now() + timedelta(hours=1))
    return ComputeHost.objects.create(name=name, vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb, **fields)


def new_ctx(role: str = Role.MEMBER) -> RequestContext:
    membership = MembershipFactory(role=role)
    for resource in UNLIMITED:
        QuotaLimit.objects.create(project=membership.project, resource=resource, hard_limit=-1)
    return RequestContext(user=membership.user, project=membership.project, role=role)


def usage_by_host() -> dict[str, dict[str, int]]:
    """What the committed claims hold on each host, as any other reader sees it."""
    totals: dict[str, dict[str, int]] = {}
    rows = Instance.objects.filter(host__isnull=False).exclude(vm_state=VmState.DELETED)
    for name, vcpus, memory_mb, group_id in rows.values_list("host__name", "vcpus", "memory_mb", "server_group_id"):
        entry = totals.setdefault(name, {"count": 0, "vcpus": 0, "memory_mb": 0, "groups": {}})
        entry["count"] += 1
        entry["vcpus"] += vcpus
        entry["memory_mb"] += memory_mb
        if group_id:
            entry["groups"][group_id] = entry["groups"].get(group_id, 0) + 1
    return totals


@pytest.fixture
def clean_broker(transactional_db):
    """Builds the claims send go to the test broker, where no host consumes them; start and end empty."""
    purge_broker()
    yield
    purge_broker()
    close_other_sessions()


@pytest.fixture
def ctx(transactional_db):
    return new_ctx()


@pytest.fixture
def flavor(transactional_db):
    return FlavorFactory(vcpus=1, memory_mb=512, root_gb=1)


@pytest.fixture
def image(transactional_db):
    return ImageFactory()


@pytest.fixture
def boot(flavor, image):
    def create(ctx: RequestContext, name: str = "vm", **kwargs) -> Instance:
        kwargs.setdefault("flavor", flavor)
        kwargs.setdefault("image", image)
        kwargs.setdefault("networks", "none")
        placement = {key: kwargs.pop(key) for key in ("reservation_id", "launch_index") if key in kwargs}
        spec = instance_services.ServerSpec(name=name, **kwargs)
        return instance_services.instance_create(ctx=ctx, spec=spec, **placement)

    return create


def in_thread(fn):
    """Run ``fn`` and close this thread's database connection, so the test database can be dropped."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return run


def at_once(*calls) -> list[BaseException]:
    """Runs each call in a thread of its own, with its own database connection: what they raised."""
    errors: list[BaseException] = []

    def run(call):
        try:
            in_thread(call)()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def schedule(instance):
    """Place ``instance`` as the conductor would; the host chosen, the row refreshed."""
    host = scheduling.schedule_and_build(instance_uuid=str(instance.uuid))
    instance.refresh_from_db()
    return host


def fault(instance):
    return instance.faults.first()
