import subprocess

import pytest

from portal.services.images import image_create, image_upload
from tests.cinder_service import keystone_cinder  # noqa: F401 (fixture)
from tests.openstack_cli import builtin_cli_cloud, cli, cli_cloud, cli_identity, identity_cli_cloud  # noqa: F401 (fixtures)
from tests.processes import wait_for_host

HOST = "testhost1"


@pytest.fixture
def host_up(cluster, transactional_db):
    wait_for_host(HOST)
    return HOST


@pytest.fixture
def demo_image(transactional_db, tmp_path_factory):
    """A public qcow2 image named ``demo``, as `make demo` uploads one (empty here: test:///default boots nothing)."""
    path = tmp_path_factory.mktemp("images") / "demo.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    image = image_create(ctx=None, name="demo", disk_format="qcow2", container_format="bare", visibility="public")
    with path.open("rb") as stream:
        image_upload(image=image, stream=stream)
    image.refresh_from_db()
    return image


def pytest_generate_tests(metafunc):
    """CLI tests run against the cloud's built-in identity, but for modules that name the identities they
    need in ``CLI_IDENTITIES`` and tests marked ``with_identities``: the CLI behaves alike with either once
    it holds a token, so images and quotas and a server's create, list, show and delete run with both to
    prove a real Keystone works end to end, and the volume module with Keystone alone, as Cinder needs it."""
    if "cli_identity" in metafunc.fixturenames:
        identities = getattr(metafunc.function, "cli_identities", None) or getattr(
            metafunc.module, "CLI_IDENTITIES", ("builtin",)
        )
        metafunc.parametrize("cli_identity", identities, scope="module")
