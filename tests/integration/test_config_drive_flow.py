"""The config drive through the real API, broker, conductor and a compute worker on libvirt's test
driver: the server's metadata, key pair and user data reach the ISO its domain mounts, and a rebuild
with new user data (2.57) makes the drive anew. The ISO is read back with isoinfo."""

import base64
import json
import subprocess

import pytest

from tests.processes import wait_for_host, wait_until

pytestmark = pytest.mark.integration

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl drive@test"


@pytest.fixture
def host_up(cluster, transactional_db):
    wait_for_host("testhost1")


def iso_file(iso, path: str) -> bytes:
    return subprocess.run(["isoinfo", "-R", "-i", str(iso), "-x", path], capture_output=True, check=True).stdout


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_metadata_keys_and_user_data_reach_the_drive(cluster, host_up, api_user, tiny_flavor, small_image):
    keypair = api_user.post("/os-keypairs", {"keypair": {"name": "laptop", "public_key": KEY}})
    assert keypair.status_code == 201, keypair.text  # 201 from 2.2
    body = {
        "server": {
            "name": "Drive Test",
            "imageRef": str(small_image.id),
            "flavorRef": "1",
            "networks": "auto",
            "key_name": "laptop",
            "metadata": {"role": "db"},
            "user_data": encoded("#!/bin/sh\necho first\n"),
        }
    }
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 30, message="ACTIVE")

    iso = cluster.instance_dir("testhost1", server_id) / "disk.config"
    meta = json.loads(iso_file(iso, "/openstack/latest/meta_data.json"))
    assert meta["uuid"] == server_id
    assert (meta["name"], meta["hostname"]) == ("Drive Test", "drive-test")
    assert meta["project_id"] == api_user.membership.project.pk
    assert meta["meta"] == {"role": "db"} and meta["public_keys"] == {"laptop": KEY}
    assert meta["availability_zone"] == api_user.server(server_id)["OS-EXT-AZ:availability_zone"]
    assert iso_file(iso, "/openstack/latest/user_data") == b"#!/bin/sh\necho first\n"
    assert api_user.server(server_id)["config_drive"] == "True"

    api_user.session.headers["OpenStack-API-Version"] = "compute 2.57"
    rebuilt = api_user.post(
        f"/servers/{server_id}/action",
        {"rebuild": {"imageRef": str(small_image.id), "user_data": encoded("#!/bin/sh\necho second\n")}},
    )
    assert rebuilt.status_code == 202, rebuilt.text
    wait_until(
        lambda: api_user.server(server_id)["OS-EXT-STS:task_state"] is None and iso.exists(), 30, message="rebuild"
    )
    assert iso_file(iso, "/openstack/latest/user_data") == b"#!/bin/sh\necho second\n"

    assert api_user.delete(f"/servers/{server_id}").status_code == 204
    wait_until(lambda: not iso.parent.exists(), 30, message="the instance directory to go")
