import pytest
from django.test import Client

from portal.models import ComputeHost, Role
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory, MembershipFactory


class PortalUser:
    """A user with a role in a project, signed in to the portal through Django's test client."""

    def __init__(self, role: str = Role.MEMBER, project=None):
        kwargs = {"role": role}
        if project is not None:
            kwargs["project"] = project
        self.membership = MembershipFactory(**kwargs)
        self.user = self.membership.user
        self.project = self.membership.project
        self.client = Client()
        self.client.force_login(self.user)

    def instance(self, **fields):
        return InstanceFactory(project=self.project, user=self.user, **fields)


@pytest.fixture
def portal_member(db):
    return PortalUser(Role.MEMBER)


@pytest.fixture
def portal_reader(db, portal_member):
    return PortalUser(Role.READER, project=portal_member.project)


@pytest.fixture
def portal_admin(db):
    return PortalUser(Role.ADMIN)


@pytest.fixture
def host(db):
    return ComputeHost.objects.create(name="node1", vcpus=8, memory_mb=16384, disk_gb=100)


@pytest.fixture
def flavor(db):
    return FlavorFactory(flavorid="42", name="m1.small", vcpus=2, memory_mb=1024, root_gb=1)


@pytest.fixture
def image(db):
    return ImageFactory(name="cirros", size=1024)


@pytest.fixture
def image_dir(settings, tmp_path):
    """A fresh image store for this test (the modules that upload use it for every test)."""
    directory = tmp_path / "images"
    directory.mkdir()
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": directory}
    return directory


@pytest.fixture(autouse=True)
def no_connections_left(request, django_db_blocker):
    """A test with a live server (streams still sleeping in its threads keep their connections) leaves
    no other session on the test database, which must stay droppable."""
    yield
    if "live_server" not in request.fixturenames:
        return
    from tests.processes import close_other_sessions

    with django_db_blocker.unblock():
        close_other_sessions()
