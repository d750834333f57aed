"""Behind the cloud's back, on a real hypervisor (qemu:///system, the demo guest):

- ``virsh destroy`` of a running server: it shows SHUTOFF after the host's next heartbeat;
- a domain the cloud did not make (``virsh define``): admins see it in ``GET /os-orphan-domains``
  (members get 403), and it disappears from the list once it is undefined.
"""

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.images import public_image
from tests.processes import wait_for_host, wait_until

from .harness import FaultCluster, boot, broker_for, server, wait_status

pytestmark = pytest.mark.system

HOST = "qemufaulthost"
REPO_ROOT = Path(__file__).resolve().parents[2]
VIRSH = ["virsh", "-q", "-c", "qemu:///system"]


@pytest.fixture
def demo_image(tenant):
    path = REPO_ROOT / "var" / "images" / "demo.qcow2"
    subprocess.run([str(REPO_ROOT / "scripts" / "build_demo_image.sh"), str(path.parent)], check=True, timeout=600)
    return public_image(project=tenant.project, path=path, name="demo")


@pytest.fixture
def qemu_cluster(faults, tmp_path):
    cluster = FaultCluster(tmp_path, broker_url=broker_for("redis", tmp_path, faults))
    faults.append(cluster)
    cluster.start()
    cluster.start_compute(HOST, uri="qemu:///system", heartbeat=2.0)
    wait_for_host(HOST, timeout=90)
    return cluster


def test_virsh_destroy_shows_shutoff_after_the_next_heartbeat(qemu_cluster, tenant, demo_image):
    cluster = qemu_cluster
    server_id = boot(cluster, tenant.session, demo_image, name="behind-its-back")
    try:
        wait_status(cluster, tenant.session, server_id, "ACTIVE", timeout=180)
        domain = f"instance-{server_id}"
        subprocess.run([*VIRSH, "destroy", domain], check=True, capture_output=True, timeout=60)
        destroyed_at = time.monotonic()
        wait_status(cluster, tenant.session, server_id, "SHUTOFF", timeout=30)
        noticed = time.monotonic() - destroyed_at
        body = server(cluster, tenant.session, server_id)
        assert body["OS-EXT-STS:power_state"] == 4 and body["OS-EXT-STS:task_state"] is None
        assert noticed <= 2.0 * 2 + 5, noticed  # within a heartbeat or two
        print(f"virsh destroy noticed after {noticed:.1f}s")
    finally:
        tenant.session.delete(f"{cluster.api_url}/compute/v2.1/servers/{server_id}", timeout=60)
        wait_until(lambda: server(cluster, tenant.session, server_id)["status"] == "DELETED", 60, message="deletion")


def test_a_domain_the_cloud_did_not_make_is_an_orphan_for_admins(qemu_cluster, tenant, admin_session, tmp_path):
    cluster = qemu_cluster
    name = f"orphan-{uuid.uuid4().hex[:8]}"
    xml = tmp_path / "orphan.xml"
    xml.write_text(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    url = f"{cluster.api_url}/compute/v2.1/os-orphan-domains"
    subprocess.run([*VIRSH, "define", str(xml)], check=True, capture_output=True, timeout=60)
    try:

        def listed():
            response = admin_session.get(url, params={"host": HOST}, timeout=30)
            assert response.status_code == 200, response.text
            return [o for o in response.json()["orphan_domains"] if o["domain"] == name]

        found = wait_until(listed, 30, message=f"{name} reported as an orphan")
        assert found[0]["host"] == HOST and found[0]["reported_at"]
        refused = tenant.session.get(url, timeout=30)
        assert refused.status_code == 403 and "forbidden" in refused.json()
    finally:
        subprocess.run([*VIRSH, "undefine", name], capture_output=True, timeout=60)
    wait_until(lambda: not listed(), 30, message=f"{name} gone from the orphans")
