"""One grep follows a boot through every process: the API (under gunicorn), the conductor and the compute
worker all write the request's id on their lines about it, and the instance action carries it."""

import re
import subprocess

import pytest

from portal.models import InstanceAction
from tests.http import ApiUser
from tests.images import public_image
from tests.processes import Cluster, free_port, purge_broker, wait_for_host, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, tmp_path_factory):
    """The API under gunicorn (its own log; the hosts download images from it too), a conductor and one
    compute host on libvirt's test driver."""
    purge_broker()
    port = free_port()
    cluster = Cluster(f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("cluster"))
    cluster.start_api(port)
    cluster.start_conductor()
    cluster.start_compute("testhost1")
    yield cluster
    with django_db_blocker.unblock():
        cluster.stop()


def lines_with(text: str, log: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def test_a_boots_request_id_is_in_every_process_that_worked_on_it(cluster, transactional_db, tiny_flavor, tmp_path):
    wait_for_host("testhost1", timeout=60)
    user = ApiUser(cluster.api_url)
    path = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    image = public_image(project=user.ctx.project, path=path, name="small")

    body = {"server": {"name": "traced", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}
    response = user.post("/servers", body, headers={"X-Openstack-Request-Id": "req-chosen-by-the-client"})
    assert response.status_code == 202, response.text
    request_id = response.headers["X-Openstack-Request-Id"]
    assert re.fullmatch(r"req-[0-9a-f-]{36}", request_id)
    assert response.headers["X-Compute-Request-Id"] == request_id
    server_id = response.json()["server"]["id"]
    wait_until(lambda: user.server(server_id)["status"] == "ACTIVE", 60, message=f"{server_id} ACTIVE")

    action = InstanceAction.objects.get(instance__uuid=server_id, action="create")
    assert action.request_id == request_id
    tag = f"[{request_id}]"
    # The API's line about the request itself.
    api = lines_with(tag, cluster.processes["api"].output())
    assert any('"POST /compute/v2.1/servers" status: 202' in line for line in api), api
    # The host's download of the image for the build is another request of the API's, which names the boot.
    download = [
        line for line in cluster.processes["api"].output().splitlines() if f"/internal/images/{image.id}/" in line
    ]
    assert any(f"global_request_id: {request_id}" in line and "status: 200" in line for line in download), download
    # The conductor placed the server, then took the host's report of the build, both for this request.
    conductor = lines_with(tag, cluster.processes["conductor"].output())
    assert any("conductor.schedule_and_build" in line and "succeeded" in line for line in conductor), conductor
    assert any("conductor.instance_built" in line and "succeeded" in line for line in conductor), conductor
    # The host built it.
    compute = lines_with(tag, cluster.processes["compute-testhost1"].output())
    assert any(f"instance {server_id} built as domain" in line for line in compute), compute
    assert any("compute.build_and_run_instance" in line and "succeeded" in line for line in compute), compute
    # Lines about no request show a dash, not another request's id: the host's next task names its own.
    assert lines_with("[-]", cluster.processes["compute-testhost1"].output())

    # The next request is another id, and the workers' lines about it are its own.
    response = user.post(f"/servers/{server_id}/action", {"os-stop": None})
    assert response.status_code == 202, response.text
    stop_id = response.headers["X-Openstack-Request-Id"]
    assert stop_id != request_id
    wait_until(lambda: user.server(server_id)["status"] == "SHUTOFF", 60, message=f"{server_id} SHUTOFF")
    assert InstanceAction.objects.get(instance__uuid=server_id, action="stop").request_id == stop_id
    stopped = lines_with(f"[{stop_id}]", cluster.processes["compute-testhost1"].output())
    assert any("compute.stop_instance" in line and "succeeded" in line for line in stopped), stopped
    assert not any(
        "compute.stop_instance" in line for line in lines_with(tag, cluster.processes["compute-testhost1"].output())
    )
