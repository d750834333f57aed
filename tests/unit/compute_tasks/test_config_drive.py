"""The config drive: what goes on it, and the ISO a host makes of it (read back with isoinfo)."""

import base64
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from compute_tasks.drivers.base import DriverError
from compute_tasks.drivers.config_drive import LABEL, drive_files, write_config_drive
from compute_tasks.rpc import BuildRequest, InjectedFile, InstanceMetadata
from tests.unit.compute_tasks.test_compute_domain_xml import make_request, parse, render

pytestmark = pytest.mark.unit

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"


def request_with(user_data: str | None = "#!/bin/sh\necho hello\n", **metadata) -> BuildRequest:
    fields = {
        "uuid": str(uuid.uuid4()),
        "name": "Web <1>",
        "hostname": "web-1",
        "project_id": "5a2c8fd6be5245e395b15b3e71e976f5",
        "availability_zone": "nova",
        "launch_index": 2,
        "meta": {"role": "web", "quote": "\"'<&>"},
        "public_keys": {"laptop": KEY},
    }
    fields.update(metadata)
    encoded = base64.b64encode(user_data.encode()).decode() if user_data is not None else None
    return make_request(user_data=encoded, metadata=InstanceMetadata(**fields))


def test_meta_data_and_user_data_in_the_openstack_layout():
    request = request_with()
    files = drive_files(request)

    assert sorted(files) == [
        "openstack/2013-10-17/meta_data.json",
        "openstack/2013-10-17/user_data",
        "openstack/2013-10-17/vendor_data.json",
        "openstack/2015-10-15/meta_data.json",
        "openstack/2015-10-15/network_data.json",
        "openstack/2015-10-15/user_data",
        "openstack/2015-10-15/vendor_data.json",
        "openstack/latest/meta_data.json",
        "openstack/latest/network_data.json",
        "openstack/latest/user_data",
        "openstack/latest/vendor_data.json",
    ]
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert meta["uuid"] == request.metadata.uuid
    assert (meta["name"], meta["hostname"], meta["availability_zone"]) == ("Web <1>", "web-1", "nova")
    assert meta["project_id"] == "5a2c8fd6be5245e395b15b3e71e976f5" and meta["launch_index"] == 2
    assert meta["meta"] == {"role": "web", "quote": "\"'<&>"}
    assert meta["public_keys"] == {"laptop": KEY}
    assert meta["keys"] == [{"name": "laptop", "type": "ssh", "data": KEY}]
    assert files["openstack/latest/user_data"] == b"#!/bin/sh\necho hello\n"  # decoded, byte for byte


def test_network_data_is_what_the_control_plane_sent_and_empty_without_ports():
    network = {
        "links": [{"id": "tapabc", "type": "bridge", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": 1450}],
        "networks": [{"id": "network0", "type": "ipv4", "link": "tapabc", "ip_address": "10.0.0.5"}],
        "services": [{"type": "dns", "address": "10.0.0.2"}],
    }
    with_ports = drive_files(request_with(network_data=network))
    assert json.loads(with_ports["openstack/latest/network_data.json"]) == network
    assert json.loads(with_ports["openstack/2015-10-15/network_data.json"]) == network
    without = json.loads(drive_files(request_with())["openstack/latest/network_data.json"])
    assert without == {"links": [], "networks": [], "services": []}


def test_no_user_data_no_user_data_file_and_no_metadata_no_drive():
    assert not [path for path in drive_files(request_with(None)) if path.endswith("user_data")]
    with pytest.raises(ValueError):
        drive_files(make_request())
    with pytest.raises(DriverError, match="not base64"):
        drive_files(BuildRequest(**{**request_with().__dict__, "user_data": "!!not base64!!"}))
    with pytest.raises(DriverError, match="personality file is not base64"):
        drive_files(request_with(files=[InjectedFile(path="/etc/motd", contents="This is a test file.")]))


def test_the_iso_has_the_label_and_the_files(tmp_path: Path):
    assert shutil.which("isoinfo"), "isoinfo comes with genisoimage: run scripts/bootstrap.sh"
    binary_user_data = '#cloud-config\nruncmd: ["echo ünïcode"]\n'
    motd = "Welcome to ünïcode\n".encode()
    request = request_with(
        binary_user_data, files=[InjectedFile(path="/etc/motd", contents=base64.b64encode(motd).decode())]
    )

    iso = write_config_drive(request, tmp_path / "disk.config")

    header = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    assert f"Volume id: {LABEL}" in header
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(iso)], capture_output=True, text=True, check=True)
    assert "/openstack/latest/meta_data.json" in listing.stdout.splitlines()
    extracted = subprocess.run(
        ["isoinfo", "-R", "-i", str(iso), "-x", "/openstack/latest/user_data"], capture_output=True, check=True
    ).stdout
    assert extracted == binary_user_data.encode()
    meta = subprocess.run(
        ["isoinfo", "-R", "-i", str(iso), "-x", "/openstack/latest/meta_data.json"], capture_output=True, check=True
    ).stdout
    assert json.loads(meta)["hostname"] == "web-1"
    assert json.loads(meta)["files"] == [{"path": "/etc/motd", "content_path": "/content/0000"}]
    content = subprocess.run(
        ["isoinfo", "-R", "-i", str(iso), "-x", "/openstack/content/0000"], capture_output=True, check=True
    ).stdout
    assert content == motd  # the personality file, byte for byte where meta_data.json says it is
    assert [p.name for p in tmp_path.iterdir()] == ["disk.config"]  # nothing staged is left beside it


def test_the_domain_gets_a_read_only_cdrom_only_with_a_drive():
    request = request_with()
    root = parse(render(request, config_drive_path=Path("/state/instances/x/disk.config")))

    (cdrom,) = root.findall("./devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == "/state/instances/x/disk.config"
    assert (cdrom.find("target").get("dev"), cdrom.find("target").get("bus")) == ("hdd", "ide")
    assert cdrom.find("readonly") is not None
    assert parse(render(request)).findall("./devices/disk[@device='cdrom']") == []
