"""The control plane's metadata endpoint: a guest's request, forwarded and signed by the host it runs on,
is answered with that guest's metadata only; anything not proven is refused."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from compute_tasks import metadata_content, signing
from portal.models import IPAllocation, MessageRefusal, Network, Port, Subnet
from portal.services import host_trust
from tests.factories import InstanceFactory

pytestmark = pytest.mark.integration

URL = "/internal/metadata"


@pytest.fixture
def cloud(db):
    hv1, key1 = host_trust.host_enroll(name="hv1")
    hv2, key2 = host_trust.host_enroll(name="hv2")
    network = Network.objects.create(name="net", segmentation_id=1001)
    subnet = Subnet.objects.create(network=network, cidr="10.247.5.0/24", gateway_ip="10.247.5.1")
    user_data = b"#!/bin/sh\necho hello from a1\n"
    a1 = InstanceFactory(
        name="a1",
        host=hv1,
        user_data=base64.b64encode(user_data).decode(),
        key_name="k",
        key_data="ssh-ed25519 AAAA a1",
        metadata={"role": "web"},
        personality=[{"path": "/etc/motd", "contents": base64.b64encode(b"hello a1\n").decode()}],
    )
    a2 = InstanceFactory(name="a2", host=hv2)

    def port_of(instance, host, address, mac):
        port = Port.objects.create(
            network=network, mac_address=mac, device_id=str(instance.uuid), device_owner="compute:nova", host=host
        )
        IPAllocation.objects.create(port=port, subnet=subnet, ip_address=address)
        return port

    port_of(a1, hv1, "10.247.5.11", "fa:16:3e:00:00:11")
    port_of(a2, hv2, "10.247.5.12", "fa:16:3e:00:00:12")
    return {
        "network": str(network.id),
        "signers": {"hv1": signing.Signer("hv1", key1), "hv2": signing.Signer("hv2", key2)},
        "a1": a1,
        "a2": a2,
        "user_data": user_data,
    }


def ask(client, cloud, path, *, host="hv1", address="10.247.5.11", signer=None, headers=None, network=None):
    network = network or cloud["network"]
    signed = headers or metadata_content.signed_headers(
        signer or cloud["signers"][host], method="GET", path=path, network_id=network, address=address
    )
    return client.get(URL + path, headers=signed)


def refusals(reason):
    return sum(MessageRefusal.objects.filter(task="metadata", reason=reason).values_list("count", flat=True))


def test_a_guest_reads_its_own_metadata(client, cloud):
    a1 = cloud["a1"]
    response = ask(client, cloud, "/openstack/latest/meta_data.json")
    assert response.status_code == 200, response.content
    meta = json.loads(response.content)
    assert (meta["uuid"], meta["name"], meta["meta"]) == (str(a1.uuid), "a1", {"role": "web"})
    assert meta["public_keys"] == {"k": "ssh-ed25519 AAAA a1"}
    assert ask(client, cloud, "/openstack/latest/user_data").content == cloud["user_data"]
    assert json.loads(ask(client, cloud, "/openstack/latest/vendor_data.json").content) == {}
    assert "links" in json.loads(ask(client, cloud, "/openstack/latest/network_data.json").content)
    listing = ask(client, cloud, "/openstack/latest/").content.decode().split("\n")
    assert listing == ["meta_data.json", "network_data.json", "user_data", "vendor_data.json"]
    assert "latest" in ask(client, cloud, "/openstack/").content.decode().split("\n")
    # EC2 style.
    ec2 = "/latest/meta-data/"
    assert ask(client, cloud, ec2 + "instance-id").content.decode() == str(a1.uuid)
    assert ask(client, cloud, ec2 + "local-ipv4").content.decode() == "10.247.5.11"
    assert ask(client, cloud, ec2 + "hostname").content.decode() == "a1"
    assert ask(client, cloud, ec2 + "instance-type").content.decode() == a1.flavor_name
    assert ask(client, cloud, ec2 + "ami-id").content.decode() == f"ami-{a1.image_id.hex[:8]}"
    assert ask(client, cloud, ec2 + "placement/availability-zone").status_code == 200
    assert ask(client, cloud, ec2 + "public-keys/").content.decode() == "0=k"
    assert ask(client, cloud, ec2 + "public-keys/0/openssh-key").content.decode() == "ssh-ed25519 AAAA a1\n"
    names = ask(client, cloud, ec2).content.decode().split("\n")
    assert {"instance-id", "local-ipv4", "placement/", "public-keys/", "ami-id", "instance-type"} <= set(names)
    assert ask(client, cloud, "/latest/user-data").content == cloud["user_data"]
    assert ask(client, cloud, "/openstack/latest/nothing.json").status_code == 404
    # The other guest, asked for by its own host, gets its own; it has no user data.
    meta2 = json.loads(
        ask(client, cloud, "/openstack/latest/meta_data.json", host="hv2", address="10.247.5.12").content
    )
    assert meta2["uuid"] == str(cloud["a2"].uuid)
    assert ask(client, cloud, "/openstack/latest/user_data", host="hv2", address="10.247.5.12").status_code == 404
    assert ask(client, cloud, "/latest/user-data", host="hv2", address="10.247.5.12").status_code == 404


def test_a_guest_reads_its_personality_files(client, cloud):
    meta = json.loads(ask(client, cloud, "/openstack/latest/meta_data.json").content)
    assert meta["files"] == [{"path": "/etc/motd", "content_path": "/content/0000"}]
    response = ask(client, cloud, "/openstack/content/0000")
    assert (response.status_code, response.content) == (200, b"hello a1\n")
    # The other guest has none, and cannot read a1's.
    other = {"host": "hv2", "address": "10.247.5.12"}
    assert "files" not in json.loads(ask(client, cloud, "/openstack/latest/meta_data.json", **other).content)
    assert ask(client, cloud, "/openstack/content/0000", **other).status_code == 404


def test_a_forged_signature_is_refused(client, cloud):
    forger = signing.Signer("hv1", signing.new_private_key())  # claims to be hv1, holds another key
    response = ask(client, cloud, "/openstack/latest/meta_data.json", signer=forger)
    assert response.status_code == 403
    assert "uuid" not in response.content.decode()
    assert refusals(signing.BAD_SIGNATURE) == 1
    # Unsigned, or signed for another path than the one asked.
    assert client.get(URL + "/openstack/latest/meta_data.json").status_code == 403
    other = metadata_content.signed_headers(
        cloud["signers"]["hv1"], method="GET", path="/latest/meta-data/", network_id=cloud["network"],
        address="10.247.5.11",
    )  # fmt: skip
    assert client.get(URL + "/openstack/latest/user_data", headers=other).status_code == 403


def test_a_host_cannot_ask_for_a_guest_placed_on_another(client, cloud):
    # hv2's key, properly used, for a1's address: a1's port is bound to hv1.
    response = ask(client, cloud, "/openstack/latest/meta_data.json", host="hv2", address="10.247.5.11")
    assert response.status_code == 403
    assert str(cloud["a1"].uuid) not in response.content.decode()
    assert refusals(MessageRefusal.Reason.NOT_ITS_OWN) == 1


def test_a_replayed_request_is_refused(client, cloud):
    headers = metadata_content.signed_headers(
        cloud["signers"]["hv1"], method="GET", path="/latest/meta-data/instance-id", network_id=cloud["network"],
        address="10.247.5.11",
    )  # fmt: skip
    assert ask(client, cloud, "/latest/meta-data/instance-id", headers=headers).status_code == 200
    again = ask(client, cloud, "/latest/meta-data/instance-id", headers=headers)
    assert again.status_code == 403
    assert refusals(MessageRefusal.Reason.REPLAY) == 1
    # An old signature is refused too, though never used.
    old = metadata_content.signed_headers(
        cloud["signers"]["hv1"], method="GET", path="/latest/meta-data/instance-id", network_id=cloud["network"],
        address="10.247.5.11", now=time.time() - metadata_content.MAX_AGE_SECONDS - 5,
    )  # fmt: skip
    assert ask(client, cloud, "/latest/meta-data/instance-id", headers=old).status_code == 403
    assert refusals(signing.STALE) == 1


def test_unknown_address_or_network_is_not_found(client, cloud):
    assert ask(client, cloud, "/openstack/latest/meta_data.json", address="10.247.5.99").status_code == 404
    response = ask(client, cloud, "/openstack/latest/meta_data.json", network=str(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404
    # What a host signs but is no address or network at all is as unknown.
    assert ask(client, cloud, "/openstack/latest/meta_data.json", address="not an address").status_code == 404
    assert ask(client, cloud, "/openstack/latest/meta_data.json", network="not-a-uuid").status_code == 404


def test_a_revoked_host_is_not_believed(client, cloud):
    from portal.models import ComputeHost

    host_trust.host_credentials_revoke(host=ComputeHost.objects.get(name="hv1"))
    assert ask(client, cloud, "/openstack/latest/meta_data.json").status_code == 403
    assert refusals(signing.UNKNOWN_SENDER) == 1


def test_only_reads(client, cloud):
    response = client.post(URL + "/openstack/latest/meta_data.json")
    assert response.status_code == 405
