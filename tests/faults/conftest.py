import subprocess

import pytest

from portal.models import Role
from tests.factories import FlavorFactory, MembershipFactory
from tests.images import public_image
from tests.processes import close_other_sessions, purge_broker

from .harness import api_session


@pytest.fixture
def tenant(transactional_db):
    """A member of a fresh project, with the tiny flavor and a real (empty) qcow2 image to boot."""
    membership = MembershipFactory(role=Role.MEMBER)
    FlavorFactory(flavorid="1", name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1)
    membership.session = api_session(membership)
    return membership


@pytest.fixture
def admin_session(transactional_db):
    membership = MembershipFactory(role=Role.ADMIN)
    return api_session(membership)


@pytest.fixture
def image(tenant, tmp_path):
    path = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return public_image(project=tenant.project, path=path, name="small")


@pytest.fixture
def faults(transactional_db, request, tmp_path):
    """Collects the clusters and brokers a test makes; stops them all, and prints their logs on failure."""
    started = []
    yield started
    report = getattr(request.node, "rep_call", None)
    for thing in reversed(started):
        if report is not None and report.failed and hasattr(thing, "logs"):
            print(thing.logs())
        if hasattr(thing, "remove"):
            thing.remove()
        else:
            thing.stop()
    close_other_sessions()
    purge_broker()
