import subprocess

import pytest

from tests.images import public_image
from tests.processes import Cluster, purge_broker


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory, request):
    """Conductor and one compute host on libvirt's test driver, around the live API server."""
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("cluster"))
    cluster.start_conductor()
    cluster.start_compute("testhost1")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture
def small_image(api_user, tmp_path):
    """A real (empty) qcow2 image in the image service."""
    path = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return public_image(project=api_user.ctx.project, path=path, name="small")
