import os
import subprocess
from pathlib import Path

import pytest

from tests.libvirt_hosts import LibvirtHosts, start_compute_on
from tests.processes import Cluster, free_port, purge_broker

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_demo_image.sh"
IMAGE_DIR = REPO_ROOT / "var" / "images"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
SYSTEM_HOST = "systemhost"
# Two hypervisors, each on its own libvirtd and loopback address.
# The loopback addresses of the two hosts: 127.0.0.21 and .22, or from TEST_LIBVIRT_FIRST_ADDRESS on, so
# that two test runs on one machine do not share them.
_FIRST = int(os.environ.get("TEST_LIBVIRT_FIRST_ADDRESS", "21"))
TWO_HOSTS = {"mhost-1": f"127.0.0.{_FIRST}", "mhost-2": f"127.0.0.{_FIRST + 1}"}


@pytest.fixture(scope="session")
def demo_image() -> Path:
    """The demo image, built by the project's script when missing or older than the script."""
    subprocess.run([str(BUILD_SCRIPT), str(IMAGE_DIR)], check=True, timeout=600)
    return IMAGE_DIR / "demo.qcow2"


@pytest.fixture(scope="module")
def qemu_cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """Conductor, a compute host on qemu:///system and the console proxy, around the live API."""
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("qemu-cluster"))
    cluster.proxy_port = free_port()
    cluster.proxy_origin = f"http://127.0.0.1:{cluster.proxy_port}"
    cluster.env["CONSOLE_PROXY_BASE_URL"] = f"{cluster.proxy_origin}/vnc_lite.html"
    cluster.start_conductor()
    cluster.start_compute(SYSTEM_HOST, uri="qemu:///system")
    cluster.start_consoleproxy(cluster.proxy_port, allowed_origins=cluster.proxy_origin)
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


@pytest.fixture(scope="module")
def two_host_cluster(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """Conductor, two compute hosts (``TWO_HOSTS``), each on a private libvirtd with its own state directory,
    and one console proxy for both, around the live API. ``cluster.libvirt_hosts`` are the libvirtds."""
    purge_broker()
    work_dir = tmp_path_factory.mktemp("two-hosts")
    cluster = Cluster(live_server.url, work_dir)
    cluster.libvirt_hosts = LibvirtHosts(work_dir / "libvirt")
    cluster.proxy_port = free_port()
    cluster.proxy_origin = f"http://127.0.0.1:{cluster.proxy_port}"
    cluster.env["CONSOLE_PROXY_BASE_URL"] = f"{cluster.proxy_origin}/vnc_lite.html"
    try:
        cluster.start_conductor()
        for name, address in TWO_HOSTS.items():
            start_compute_on(cluster, name, cluster.libvirt_hosts.start(name, address))
        cluster.start_consoleproxy(cluster.proxy_port, allowed_origins=cluster.proxy_origin)
        yield cluster
    finally:
        with django_db_blocker.unblock():
            cluster.stop()
        cluster.libvirt_hosts.stop()
