"""The metadata service's pure parts: one rendering for the config drive and the service, the EC2 tree,
and the host's signature over a guest's request."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import time

import pytest

from compute_tasks import metadata_content, signing
from compute_tasks.rpc import InjectedFile, InstanceMetadata

MD = InstanceMetadata(
    uuid="3f0c7d1e-0000-4000-8000-000000000001",
    name="web one",
    hostname="web-one",
    project_id="p1",
    availability_zone="az1",
    meta={"role": "web"},
    public_keys={"k2": "ssh-ed25519 BBBB", "k1": "ssh-ed25519 AAAA"},
)
GUEST = metadata_content.Guest(
    metadata=MD, user_data=b"#cloud-config\n", local_ipv4="10.0.0.5", instance_type="m1.tiny", ami_id="ami-1234abcd"
)


def text(path: str) -> str | None:
    found = metadata_content.answer(GUEST, path)
    return None if found is None else found[0].decode()


def test_the_service_and_the_config_drive_serve_the_same_files():
    files = metadata_content.openstack_files(MD, b"#cloud-config\n")
    for path, body in files.items():
        assert metadata_content.answer(GUEST, "/" + path)[0] == body
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert meta["uuid"] == MD.uuid and meta["public_keys"] == {"k1": "ssh-ed25519 AAAA", "k2": "ssh-ed25519 BBBB"}
    assert "openstack/2013-10-17/network_data.json" not in files  # network data since 2015-10-15
    assert text("/openstack/latest") == "meta_data.json\nnetwork_data.json\nuser_data\nvendor_data.json"
    assert text("/openstack") == "2013-10-17\n2015-10-15\nlatest"
    assert metadata_content.answer(GUEST, "/openstack/latest/meta_data.json")[1] == "application/json"


def test_personality_files_are_listed_in_meta_data_and_served_under_content():
    motd, script = b"welcome\n", bytes(range(256))
    md = dataclasses.replace(
        MD,
        files=[
            InjectedFile(path="/etc/motd", contents=base64.b64encode(motd).decode()),
            InjectedFile(path="/usr/local/bin/run", contents=base64.b64encode(script).decode()),
        ],
    )
    files = metadata_content.openstack_files(md, None)
    for version in metadata_content.OPENSTACK_VERSIONS:
        meta = json.loads(files[f"openstack/{version}/meta_data.json"])
        assert meta["files"] == [
            {"path": "/etc/motd", "content_path": "/content/0000"},
            {"path": "/usr/local/bin/run", "content_path": "/content/0001"},
        ]
    assert (files["openstack/content/0000"], files["openstack/content/0001"]) == (motd, script)
    guest = metadata_content.Guest(md, None, "10.0.0.5", "m1.tiny", "")
    assert metadata_content.answer(guest, "/openstack/content/0001") == (script, "application/octet-stream")
    assert metadata_content.answer(guest, "/openstack/content/0002") is None
    assert metadata_content.answer(guest, "/openstack/content") is None  # no listing, as in Nova
    assert b"content" not in metadata_content.answer(guest, "/openstack")[0]


def test_a_server_without_personality_has_no_files_key():
    meta = json.loads(metadata_content.openstack_files(MD, None)["openstack/latest/meta_data.json"])
    assert "files" not in meta
    assert not any(path.startswith("openstack/content/") for path in metadata_content.openstack_files(MD, None))


def test_file_contents_are_decoded_as_the_api_accepted_them():
    assert metadata_content.file_contents(InjectedFile(path="/x", contents="aGVs\nbG8=")) == b"hello"
    with pytest.raises(binascii.Error):
        metadata_content.file_contents(InjectedFile(path="/x", contents="This is a test file."))


def test_ec2_basics():
    assert text("/latest/meta-data/instance-id") == MD.uuid
    assert text("/2009-04-04/meta-data/local-ipv4") == "10.0.0.5"
    assert text("/latest/meta-data/placement/availability-zone") == "az1"
    assert text("/latest/meta-data/public-keys/") == "0=k1\n1=k2"
    assert text("/latest/meta-data/public-keys/1/openssh-key") == "ssh-ed25519 BBBB\n"
    assert text("/latest/meta-data/public-keys/0") == "openssh-key"
    assert "placement/" in text("/latest/meta-data/").split("\n")
    assert text("/latest/user-data") == "#cloud-config\n"
    assert text("/latest") == "meta-data/\nuser-data"
    assert "openstack" in text("/").split("\n")


@pytest.mark.parametrize(
    "path",
    ["/nope", "/latest/meta-data/nope", "/latest/meta-data/instance-id/x", "/openstack/1999/meta_data.json",
     "/openstack/latest/meta_data.json/x", "/latest/other"],
)  # fmt: skip
def test_unknown_paths_are_none(path):
    assert metadata_content.answer(GUEST, path) is None


def test_no_user_data_is_not_found():
    guest = metadata_content.Guest(MD, None, "10.0.0.5", "m1.tiny", "")
    assert metadata_content.answer(guest, "/openstack/latest/user_data") is None
    assert metadata_content.answer(guest, "/latest/user-data") is None
    assert b"user_data" not in metadata_content.answer(guest, "/openstack/latest/")[0]


def test_the_signature_covers_method_path_network_and_address():
    key = signing.new_private_key()
    signer = signing.Signer("hv1", key)
    args = {"method": "GET", "path": "/latest/meta-data/", "network_id": "n1", "address": "10.0.0.5"}
    headers = metadata_content.signed_headers(signer, **args)
    assert headers[metadata_content.NETWORK_HEADER] == "n1" and headers[metadata_content.ADDRESS_HEADER] == "10.0.0.5"
    auth = json.loads(base64.b64decode(headers[metadata_content.AUTH_HEADER]))

    def check(max_age=metadata_content.MAX_AGE_SECONDS, **changed):
        body = metadata_content.request_body(**{**args, **changed})
        return signing.verify(
            metadata_content.SIGNED_TASK, signing.CONTROL_PLANE, body, auth, {"hv1": key.public_key()}.get,
            max_age=max_age,
        )  # fmt: skip

    assert check().sender == "hv1"
    for changed in ({"path": "/latest/user-data"}, {"network_id": "n2"}, {"address": "10.0.0.6"}, {"method": "POST"}):
        with pytest.raises(signing.Refused) as refused:
            check(**changed)
        assert refused.value.reason == signing.BAD_SIGNATURE
    old = metadata_content.signed_headers(signer, **args, now=time.time() - 60)
    auth = json.loads(base64.b64decode(old[metadata_content.AUTH_HEADER]))
    with pytest.raises(signing.Refused) as refused:
        check()
    assert refused.value.reason == signing.STALE
