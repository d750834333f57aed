"""Enrolling compute hosts: ``manage.py host_enroll`` writes a host's credentials, re-keying revokes the old
key, and a revoked key is never believed or enrolled again."""

import json

import pytest
from django.core.management import CommandError, call_command

from compute_tasks import signing
from portal.models import ComputeHost, HostCredential
from portal.services import host_trust

pytestmark = pytest.mark.integration


def test_enrolling_writes_private_credentials_and_makes_the_host(db, tmp_path):
    path = tmp_path / "hv1.json"
    call_command("host_enroll", "hv1", "--console-address", "192.0.2.7", "--output", str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    credentials = signing.HostCredentials.load(path)
    host = ComputeHost.objects.get(name="hv1")
    assert (host.enabled, host.console_address, host.last_heartbeat) == (True, "192.0.2.7", None)
    # The file holds the private half of the key the cloud believes, and the control plane's public key.
    assert signing.encode_public(credentials.keys["hv1"]) == HostCredential.objects.get(host=host).public_key
    assert signing.encode_public(credentials.control_plane) == host_trust.control_plane_public_key()
    assert "private" not in json.dumps(list(HostCredential.objects.values()), default=str)


def test_enrolling_again_revokes_the_old_key(db, tmp_path):
    call_command("host_enroll", "hv1", "--output", str(tmp_path / "first.json"))
    first = signing.HostCredentials.load(tmp_path / "first.json").keys["hv1"]
    call_command("host_enroll", "hv1", "--output", str(tmp_path / "second.json"))
    second = signing.HostCredentials.load(tmp_path / "second.json").keys["hv1"]
    believed = host_trust.public_key_of("hv1")
    assert signing.encode_public(believed) == signing.encode_public(second) != signing.encode_public(first)
    assert HostCredential.objects.filter(host__name="hv1", revoked_at__isnull=False).count() == 1

    with pytest.raises(ValueError, match="enrolled before"):
        host_trust.host_enroll_many(names=["hv1"], public_keys={"hv1": signing.encode_public(first)})
    with pytest.raises(ValueError, match="enrolled before"):  # nor may another host take it
        host_trust.host_enroll_many(names=["hv2"], public_keys={"hv2": signing.encode_public(second)})


def test_revoking_and_ranges(db, tmp_path):
    call_command("host_enroll", "sim-[1-3]", "--output", str(tmp_path / "fleet.json"))
    assert sorted(signing.HostCredentials.load(tmp_path / "fleet.json").keys) == ["sim-1", "sim-2", "sim-3"]
    call_command("host_enroll", "sim-2", "--revoke")
    assert host_trust.public_key_of("sim-2") is None and host_trust.public_key_of("sim-1") is not None
    with pytest.raises(CommandError, match="no host"):
        call_command("host_enroll", "nobody", "--revoke")
    with pytest.raises(CommandError, match="--output"):
        call_command("host_enroll", "hv9")
